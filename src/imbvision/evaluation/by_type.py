"""Average precision per object type (defect type, lesion kind): each type's positives against every negative.

Where positives come in kinds -- the benchmark layout's ``test/<type>/`` folders,
Magnetic-tile's ``MT_Crack``, ``MT_Blowhole``... -- one AP over all positives can
hide a type the model never finds. The AP of a type ranks that type's positives
among all negatives of the same split (scikit-learn's ``average_precision_score``),
so a type's AP is comparable to the overall AP; its chance level is its own
prevalence in that subset.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["ap_by_type", "mean_ap_by_type", "add_type_section"]


def ap_by_type(y: np.ndarray, score: np.ndarray, types: Sequence[str]) -> dict[str, dict[str, Any]] | None:
    """AP of each positive type against all negatives.

    Parameters
    ----------
    y
        ``(n,)`` 0/1 labels.
    score
        ``(n,)`` scores (higher = more likely positive).
    types
        ``(n,)`` type name of each image (ignored for negatives).

    Returns
    -------
    dict or None
        ``{type: {"positives": int, "negatives": int, "ap": float, "chance": float}}`` sorted by type;
        ``None`` when the positives hold fewer than two types or there is no negative (nothing to split by).
    """
    from sklearn.metrics import average_precision_score

    y = np.asarray(y).astype(int)
    s = np.asarray(score, dtype=np.float64)
    t = np.asarray([str(v) for v in types], dtype=object)
    kinds = sorted(set(t[y == 1].tolist()))
    neg = y == 0
    if len(kinds) < 2 or not neg.any():
        return None
    out = {}
    for k in kinds:
        sel = neg | ((y == 1) & (t == k))
        npos = int(((y == 1) & (t == k)).sum())
        out[k] = {"positives": npos, "negatives": int(neg.sum()),
                  "ap": float(average_precision_score(y[sel], s[sel])), "chance": npos / int(sel.sum())}
    return out


def mean_ap_by_type(per_split: Sequence[dict[str, dict[str, Any]] | None]) -> dict[str, dict[str, Any]] | None:
    """Mean over splits of :func:`ap_by_type` (a type missing from a split's test part is left out of its mean)."""
    got = [d for d in per_split if d]
    if not got:
        return None
    kinds = sorted({k for d in got for k in d})
    return {k: {"ap_mean": float(np.mean([d[k]["ap"] for d in got if k in d])),
                "splits": sum(k in d for d in got),
                "positives_per_split": float(np.mean([d[k]["positives"] for d in got if k in d]))} for k in kinds}


def add_type_section(rep: Any, by_strategy: dict[str, dict[str, dict[str, Any]] | None], *, key: str = "ap") -> None:
    """A report table: one row per strategy (or run), one column per type (``key``: ``ap`` or ``ap_mean``)."""
    rows = {name: d for name, d in by_strategy.items() if d}
    if not rows:
        return
    kinds = sorted({k for d in rows.values() for k in d})
    rep.add_heading("Average precision per type")
    rep.add_text("Each type's test positives ranked among all test negatives; a type the model misses shows here "
                 "even when the overall AP looks fine.")
    rep.add_table([{"": name, **{k: ("—" if k not in d else f"{d[k][key]:.3f}") for k in kinds}}
                   for name, d in rows.items()])
