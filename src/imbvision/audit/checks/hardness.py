"""Check: how hard the minority is -- neighbourhood types, Tomek links, cross-validated AP.

Hardness is about information, not numbers (Napierała & Stefanowski 2016;
imbalanced-learn's ``TomekLinks``); the signals live in :mod:`.._signals`.
"""

from __future__ import annotations

from typing import Any

from .. import _signals as sig
from .base import AuditContext, Learned, LearnedCheck

__all__ = ["HardnessCheck"]


class HardnessCheck(LearnedCheck):
    """Neighbour types of the minority, Tomek links and the cross-validated AP (section ``hardness``)."""

    name = "hardness"

    def compute(self, ctx: AuditContext, learned: Learned) -> dict[str, Any]:
        y, n, n_min, minority, repeats = ctx.y, ctx.n, ctx.n_min, ctx.minority, ctx.settings.repeats
        n1 = int((y == 1).sum())
        idx, oof, k_eff = learned.idx, learned.oof, learned.k
        share = sig.other_share(y, idx)
        bal = sig.balanced_other_prob(y, idx)
        tomek = sig.tomek_minority(y, idx[:, 0], minority)
        is_min = y == minority
        mostly = is_min & (share > 0.5)
        hardness = {
            "k": k_eff,
            "minority_mostly_majority_share": float(mostly.sum() / n_min),
            "minority_mostly_majority": int(mostly.sum()),
            "minority_neighbour_types": sig.neighbour_categories(share[is_min]),
            "neighbour_types_rule": "share of other-class neighbours: safe <= 0.2 < borderline <= 0.6 < rare < 1 = outlier "
                                    "(Napierala & Stefanowski 2016)",
            "tomek_links": int(tomek.sum()),
            "cv_average_precision": oof.ap,
            "cv_ap_per_repeat": oof.ap_repeats,
            "cv_ap_note": (f"mean of the {len(oof.ap_repeats)} repeats' out-of-fold AP (each repeat: one head per "
                           "fold; repeat 1 is the grid row of the chosen C). The suspect ranking uses the repeats' "
                           "averaged probabilities, an ensemble that scores higher than any single head, so that "
                           "ensemble's AP is not reported."),
            "cv_ap_chance_level": n1 / n,
            "cv_folds": oof.folds,
            "cv_repeats": repeats,
            "cv_splitter": oof.splitter,
            "cv_head": oof.head,
            "cv_C": oof.C,
            "cv_C_grid": oof.C_grid,
            "note": ("hardness is about information, not numbers: a large imbalance ratio with separable classes is "
                     "easy; a minority that sits among the majority (high 'mostly majority' share, many Tomek links, "
                     "low AP) is hard whatever the ratio. The AP is measured against the current labels, noise included; "
                     "with C='auto' the head's regularisation is chosen on the same folds (by log-loss), so the AP is "
                     "slightly optimistic."),
        }
        return hardness
