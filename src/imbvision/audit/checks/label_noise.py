"""Check: minority label noise -- confident learning both ways, k-NN disagreement, isolation.

Confident learning (Northcutt, Jiang & Chuang, JAIR 2021) on the out-of-fold
probabilities, a prior-corrected neighbour vote, and isolation among minority
clusters combine into one suspect score; the check only ranks and explains
(``suspects.csv``), it never deletes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _signals as sig
from .base import WORD as _WORD
from .base import AuditContext, Learned, LearnedCheck

__all__ = ["LabelNoiseCheck", "LIST_SCORE", "REVIEW_SCORE", "RELABEL_SCORE", "KNN_VOTE"]

#: Listing and action rules of the noise audit (measured on Magnetic-tile with injected
#: flips, benchmarks/audit_noise.py): an image is listed in suspects.csv when it has a
#: confident-learning or neighbour flag, is isolated, has a conflicting duplicate, or its
#: score reaches LIST_SCORE; it is suggested for review from REVIEW_SCORE (or any flag)
#: and for relabelling when a flag agrees with a score of at least RELABEL_SCORE
#: (about 8 in 10 of those were real flips there).
LIST_SCORE, REVIEW_SCORE, RELABEL_SCORE = 0.5, 0.6, 0.7
KNN_VOTE = 0.8


class LabelNoiseCheck(LearnedCheck):
    """Suspect scores and reasons (section ``label_noise``; arrays in ``ctx.outputs``)."""

    name = "label_noise"

    def compute(self, ctx: AuditContext, learned: Learned) -> dict[str, Any]:
        X, y, n, minority = ctx.X, ctx.y, ctx.n, ctx.minority
        idx, oof, k_eff = learned.idx, learned.oof, learned.k
        share = sig.other_share(y, idx)
        bal = sig.balanced_other_prob(y, idx)
        is_min = y == minority
        p_oof = oof.p1
        cl, thresholds = sig.confident_flags(y, p_oof)
        iso = sig.minority_isolation(X[is_min])
        isolated = np.zeros(n, dtype=bool)
        isolated[np.flatnonzero(is_min)] = iso.isolated
        p_other = np.where(y == 1, 1.0 - p_oof, p_oof)
        scores = sig.combine_score(p_other, bal, isolated)
        # surrounded by the other class: most of the k neighbours carry the other label
        # AND more of them than the class sizes alone explain (prior-corrected vote >= 0.8).
        # The raw share alone flags half of a hard minority (hardness, not noise); the
        # vote alone flags a majority image with one minority neighbour under heavy imbalance.
        knn_flag = (share > 0.5) & (bal >= KNN_VOTE)
        signals = {"p_other": p_other, "knn_other_share": share, "knn_other_vote": bal, "isolated": isolated,
                   "confident_learning": cl, "knn_flag": knn_flag}
        sizes = np.zeros(n, dtype=np.int64)
        sizes[np.flatnonzero(is_min)] = np.bincount(iso.cluster)[iso.cluster]
        for i in range(n):
            lab = int(y[i])
            oth = 1 - lab
            n_oth = int(round(share[i] * k_eff))
            if not (cl[i] or knn_flag[i] or isolated[i] or ctx.flags[i] or scores[i] >= LIST_SCORE):
                continue
            if cl[i] and oth == 0:
                why = [f"out-of-fold P({_WORD[1]})={p_oof[i]:.2f}, so P({_WORD[0]})={1 - p_oof[i]:.2f} "
                       f">= t_{_WORD[0]}={thresholds[0]:.2f}"]
            elif cl[i]:
                why = [f"out-of-fold P({_WORD[1]})={p_oof[i]:.2f} >= t_{_WORD[1]}={thresholds[1]:.2f}"]
            else:
                why = [f"out-of-fold P({_WORD[1]})={p_oof[i]:.2f}"]
            why.append(f"{n_oth}/{k_eff} neighbours {_WORD[oth]}")
            if isolated[i]:
                why.append(f"isolated (no other {_WORD[lab]} within cosine distance {iso.threshold:.3f})"
                           if sizes[i] == 1 else
                           f"isolated (in a group of {sizes[i]} {_WORD[lab]}s apart from the others)")
            if (cl[i] or knn_flag[i]) and scores[i] >= RELABEL_SCORE:
                level = 3
            elif cl[i] or knn_flag[i] or scores[i] >= REVIEW_SCORE:
                level = 2
            else:
                level = 1
            ctx.flag(i, why, level, first=True)
        per_direction = {
            f"labelled_{_WORD[c]}_looks_{_WORD[1 - c]}": int((cl & (y == c)).sum()) for c in (1, 0)
        }
        noise = {
            "method": ("confident learning (Northcutt et al., JAIR 2021) on out-of-fold probabilities, both "
                       "directions; k-NN label disagreement; isolation among minority clusters"),
            "thresholds": {f"t_{_WORD[j]}": thresholds[j] for j in (0, 1)},
            "confident_learning_flags": int(cl.sum()),
            "confident_learning_by_direction": per_direction,
            "minority_surrounded_by_majority": int((knn_flag & is_min).sum()),
            "majority_surrounded_by_minority": int((knn_flag & ~is_min).sum()),
            "minority_isolated": int(isolated.sum()),
            "minority_clusters": {
                "method": ("single-linkage clustering (DBSCAN with min_samples=1: connected components), cosine "
                           "distance, cut at median + 3 MAD of the nearest-minority-neighbour distance; clusters "
                           "of <= max(1, 1%) members are 'isolated'"),
                "cut_distance": iso.threshold,
                "clusters": len(iso.sizes),
                "largest_sizes": iso.sizes[:10],
                "singletons": int(sum(s == 1 for s in iso.sizes)),
            },
            "score": ("weighted mean: 0.6 x out-of-fold P(other class) + 0.3 x prior-corrected neighbour vote for "
                      "the other class + 0.1 x isolated"),
            "neighbour_flag": (f"more than half of the k={k_eff} neighbours carry the other label and the "
                               f"prior-corrected vote for the other label is >= {KNN_VOTE:g}"),
            "listing": (f"listed when flagged (confident learning, neighbours, isolation, conflicting duplicate) "
                        f"or score >= {LIST_SCORE:g}"),
            "actions": (f"relabel: a confident-learning or neighbour flag and score >= {RELABEL_SCORE:g}; review: any "
                        f"such flag, a conflicting duplicate, or score >= {REVIEW_SCORE:g}; keep: weaker evidence "
                        "(isolation alone is as often a rare genuine variant)"),
            "suspects": int(ctx.flags.sum()),
            "never_deletes": ("the audit only ranks; nothing is deleted or relabelled until you fill the decision "
                              "column of suspects.csv and run apply_review, which writes a new manifest"),
        }
        if ctx.dataset.groups is not None and oof.splitter != "StratifiedGroupKFold":
            ctx.notes.append("cross-validation could not split by group; images of one group may appear in training "
                         "and held-out folds, which makes out-of-fold probabilities optimistic")
        ctx.outputs.update(scores=scores, p_oof=p_oof, cl=cl, signals=signals, idx=idx)
        return noise
