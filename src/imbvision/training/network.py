"""The fine-tune network and its prediction path: below :mod:`imbvision.model`, above the backbones.

The network is the backbone's pooled features followed by ``nn.Linear(F, 1)``;
the input normalisation lives inside the network, so a batch of uint8 images
goes in as it is. :func:`rebuild_network` makes it again from a saved bundle's
description and arrays, :func:`predict_images` scores images with it.
Optimiser parameter groups and the learning-rate schedule sit here too: they
are properties of this network, shared by the training loop.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import BundleError, ConfigError

__all__ = [
    "FinetuneNet", "build_network", "apply_unfreeze", "set_train_mode", "param_groups", "lr_factor",
    "rebuild_network", "predict_images",
]


class FinetuneNet(nn.Module):
    """Backbone (pooled features) + ``nn.Linear(num_features, 1)``; returns logits ``(N,)``.

    Takes uint8 ``(N, 3, H, W)`` images (or floats in [0, 1]) and applies the
    backbone's normalisation itself, so callers never handle it.
    """

    def __init__(self, backbone: nn.Module, num_features: int,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(num_features, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 255.0 if x.dtype == torch.uint8 else 1.0
        x = x.to(self.mean.dtype) / scale
        x = (x - self.mean) / self.std
        return self.head(self.backbone(x)).squeeze(1)


def build_network(backbone: Any) -> FinetuneNet:
    """Wrap a :class:`~imbvision.backbones.Backbone` into a :class:`FinetuneNet`."""
    return FinetuneNet(backbone.model, backbone.num_features, backbone.mean, backbone.std)


def _block_container(model: nn.Module) -> tuple[str, nn.Module] | None:
    for name in ("blocks", "stages", "layers"):
        m = getattr(model, name, None)
        if isinstance(m, (nn.Sequential, nn.ModuleList)) and len(m) > 0:
            return name, m
    return None


def apply_unfreeze(net: FinetuneNet, unfreeze: str | int, backbone_name: str = "backbone") -> dict[str, int]:
    """Set ``requires_grad`` by stage; returns trainable / total parameter counts.

    ``"all"`` trains everything. An integer K trains the head, the last K
    blocks of the backbone (``model.blocks[-K:]`` for timm EfficientNets, also
    ``stages``/``layers``) and every top-level module after them
    (``conv_head``, ``bn2``); ``0`` is a linear probe.
    """
    u = str(unfreeze)
    if u == "all":
        net.requires_grad_(True)
    else:
        if not u.isdigit():
            raise ConfigError(f"--unfreeze {u!r} invalid; use 'all' or a number of last blocks (0 = head only)")
        k = int(u)
        net.backbone.requires_grad_(False)
        if k > 0:
            found = _block_container(net.backbone)
            if found is None:
                raise ConfigError(
                    f"--unfreeze {k}: backbone {backbone_name!r} has no 'blocks', 'stages' or 'layers' "
                    "sequence to unfreeze by stage; use --unfreeze all or 0"
                )
            cname, blocks = found
            if k > len(blocks):
                raise ConfigError(
                    f"--unfreeze {k} exceeds the {len(blocks)} blocks of {backbone_name!r}; "
                    f"use 0..{len(blocks)} or 'all'"
                )
            for b in list(blocks)[-k:]:
                b.requires_grad_(True)
            after = False
            for name, child in net.backbone.named_children():
                if after:
                    child.requires_grad_(True)
                after = after or name == cname
        net.head.requires_grad_(True)
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {"trainable_params": int(trainable), "total_params": int(total)}


def set_train_mode(net: nn.Module) -> None:
    """``train()``, then every module whose parameters are all frozen back to ``eval()``.

    Frozen BatchNorm layers keep their running statistics, and frozen stages
    run without dropout / drop-path.
    """
    net.train()
    for m in net.modules():
        params = list(m.parameters())
        if params and not any(p.requires_grad for p in params):
            m.eval()


def param_groups(net: FinetuneNet, lr: float, head_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Backbone at ``lr``, head at ``head_lr``; no weight decay on biases and norm weights."""
    groups = []
    for part, mod, base in (("backbone", net.backbone, lr), ("head", net.head, head_lr)):
        decay = [p for p in mod.parameters() if p.requires_grad and p.ndim > 1]
        plain = [p for p in mod.parameters() if p.requires_grad and p.ndim <= 1]
        if decay:
            groups.append({"params": decay, "lr": base, "weight_decay": weight_decay, "name": f"{part}"})
        if plain:
            groups.append({"params": plain, "lr": base, "weight_decay": 0.0, "name": f"{part}-no-decay"})
    return groups


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 1 % at ``total``."""
    w = min(1.0, (step + 1) / max(1, warmup))
    c = 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))
    return w * c



def architecture_weights(name: str, weights: str | None) -> str | None:
    """Weights argument that rebuilds the architecture without a download or the original file.

    The saved arrays replace every weight, so random init suffices, except for
    registered backbones whose embedded weights also set layer options (the
    embedded EfficientNet-Lite0 uses BatchNorm eps 1e-3): those are rebuilt as trained.
    """
    from ..backbones.registry import _BACKBONES

    if weights is None and name in _BACKBONES:
        return None
    return "none"


def rebuild_network(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> FinetuneNet:
    """The fine-tuned network of a bundle, in ``eval()`` mode, from its description and ``net.*`` arrays.

    Raises
    ------
    BundleError
        The arrays do not fit the backbone named in ``meta``.
    """
    from ..backbones import create_backbone

    b = meta["backbone"]
    bb = create_backbone(b["name"], weights=architecture_weights(b["name"], b.get("weights")))
    net = build_network(bb)
    sd = {k[4:]: torch.from_numpy(np.asarray(v)) for k, v in arrays.items() if k.startswith("net.")}
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise BundleError(f"fine-tuned weights do not fit backbone {b['name']!r}: {exc}") from None
    return net.eval()


def predict_images(net: nn.Module, images: Sequence[np.ndarray], image_size: int, *,
                   batch_size: int = 32) -> np.ndarray:
    """Raw positive probabilities ``(N,)`` float64 of ``net`` for uint8 ``(H, W, 3)`` images, on the CPU.

    Each whole image is resized to ``image_size`` square (no crop), as in training.
    """
    from ..backbones.embed import preprocess

    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(np.stack([preprocess(np.asarray(a), image_size)[0]
                                           for a in images[s:s + batch_size]]))
            out.append(torch.sigmoid(net(x).float()).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)
