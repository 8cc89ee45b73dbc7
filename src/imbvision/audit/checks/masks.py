"""Checks: a mask is a second, independent label.

An object outlined on a negative, or an empty mask on a positive, means one
of the two is wrong (:class:`MaskLabelCheck`). And a drawn mask is evidence
for "positive": :class:`MaskedPositiveGuard`, run last, never suggests
relabelling such an image blindly.
"""

from __future__ import annotations

from .base import AuditContext, Check

__all__ = ["MaskLabelCheck", "MaskedPositiveGuard"]


class MaskLabelCheck(Check):
    """Flag images whose mask contradicts their label (no section of its own: counts are in ``counts.masks``)."""

    def run(self, ctx: AuditContext) -> None:
        for i, st in enumerate(ctx.files.mask_state):
            if st == "object" and ctx.y[i] == 0:
                ctx.flag(i, "its mask outlines an object but it is labelled negative", 2)
            elif st == "empty" and ctx.y[i] == 1:
                ctx.flag(i, "its mask is empty but it is labelled positive", 2)


class MaskedPositiveGuard(Check):
    """Downgrade "relabel" to "review" for positives whose mask outlines an object."""

    def run(self, ctx: AuditContext) -> None:
        for i, st in enumerate(ctx.files.mask_state):
            if st == "object" and ctx.y[i] == 1 and ctx.strength[i] == 3:
                ctx.strength[i] = 2
                ctx.reasons[i].append("its mask outlines an object: look before relabelling")
