"""Check: the imbalance in numbers -- class counts, ratio, always-negative accuracy, groups, masks."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from ...data.records import Dataset
from .base import WORD as _WORD
from .base import AuditContext, Check

__all__ = ["CountsCheck"]


def _counts(dataset: Dataset, y: np.ndarray) -> dict[str, Any]:
    n = len(y)
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    minority = 1 if n1 <= n0 else 0
    n_min, n_maj = min(n1, n0), max(n1, n0)
    out: dict[str, Any] = {
        "images": n,
        "positive": n1,
        "negative": n0,
        "positive_name": dataset.positive_name,
        "negative_name": dataset.negative_name,
        "positive_rate": n1 / n,
        "minority_class": _WORD[minority] if n1 != n0 else "none (balanced)",
        "imbalance_ratio": (n_maj / n_min) if n_min else None,
        "imbalance_ratio_text": (f"{n_maj / n_min:.1f} : 1" if n_min else "infinite: one class has no image"),
        "always_negative_accuracy": n0 / n,
        "always_negative_note": (
            f"a model that always answers 'negative' is {100 * n0 / n:.1f}% accurate and finds no positive: "
            "judge models by average precision / recall at a fixed precision, not accuracy"
        ),
        "per_class_name": dict(sorted(Counter(r.class_name or _WORD[r.label] for r in dataset).items())),
    }
    groups = dataset.groups
    if groups is not None:
        per_group: dict[str, list[int]] = defaultdict(list)
        for g, lab in zip(groups, y):
            per_group[str(g)].append(int(lab))
        sizes = np.array([len(v) for v in per_group.values()])
        out["groups"] = {
            "groups": len(per_group),
            "images_per_group": {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())},
            "groups_with_positive": int(sum(any(v) for v in per_group.values())),
            "groups_negative_only": int(sum(not any(v) for v in per_group.values())),
            "groups_mixed": int(sum(any(v) and not all(v) for v in per_group.values())),
            "largest": [
                {"group": g, "images": len(v), "positive": int(sum(v))}
                for g, v in sorted(per_group.items(), key=lambda kv: -len(kv[1]))[:10]
            ],
        }
    return out


def _mask_counts(states: list[str | None], y: np.ndarray) -> dict[str, int]:
    st = np.array([s or "" for s in states], dtype=object)
    return {
        "with_mask": int((st != "").sum()),
        "empty": int((st == "empty").sum()),
        "object": int((st == "object").sum()),
        "unreadable": int((st == "unreadable").sum()),
        "negative_with_object": int(((st == "object") & (y == 0)).sum()),
        "positive_with_empty_mask": int(((st == "empty") & (y == 1)).sum()),
    }


class CountsCheck(Check):
    """Counts per class and group, and what the masks say (``audit.json`` section ``counts``)."""

    name = "counts"

    def run(self, ctx: AuditContext) -> dict[str, Any]:
        counts = _counts(ctx.dataset, ctx.y)
        counts["masks"] = _mask_counts(ctx.files.mask_state, ctx.y)
        return counts
