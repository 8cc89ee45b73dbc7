"""Frozen feature extractors (offline EfficientNet-Lite0, any timm model) and cached embedding."""

from .registry import Backbone, create_backbone, list_backbones, load_efficientnet_lite0
from .embed import Embeddings, embed_dataset, embed_arrays

__all__ = ["Backbone", "create_backbone", "list_backbones", "load_efficientnet_lite0",
           "Embeddings", "embed_dataset", "embed_arrays"]
