"""Frozen feature extractors (offline EfficientNet-Lite0, any timm model) and cached embedding.

The names below are imported on first use (PEP 562), so ``imbvision.backbones.offline`` (the
embedded backbones as plain data) is read without importing torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["Backbone", "create_backbone", "list_backbones", "load_efficientnet_lite0",
           "Embeddings", "embed_dataset", "embed_arrays"]

_WHERE = {"Backbone": "registry", "create_backbone": "registry", "list_backbones": "registry",
          "load_efficientnet_lite0": "registry", "Embeddings": "embed", "embed_dataset": "embed",
          "embed_arrays": "embed"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
