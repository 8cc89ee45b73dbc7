"""Check: exact and near duplicates, their label conflicts and split leaks (``duplicates.csv``).

The detector is :func:`imbvision.data.duplicates.find_duplicates`, the one that
also keeps duplicates on one side of every training split, and the sets listed
are its groups (near links grown strongest first, no group of look-alikes over
:data:`~imbvision.data.duplicates.MAX_NEAR_SET` images). A near pair whose link
was cut (``linked`` false: a chain of look-alikes, not one picture twice) is
listed but makes no label-conflict suspect.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...data.duplicates import find_duplicates
from ...data.records import Dataset
from .base import WORD as _WORD
from .base import AuditContext, Check

__all__ = ["DuplicatesCheck"]


def _duplicates(dataset: Dataset, X: np.ndarray, y: np.ndarray, shas: list[str | None], phs: list[int | None],
                split: np.ndarray | None, hash_threshold: int, cosine_threshold: float, grouping: Any = None,
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of ``duplicates.csv`` and their summary, from the one detector
    (:func:`imbvision.data.duplicates.find_duplicates`) that splits use too."""
    groups = dataset.groups
    rows: list[dict[str, Any]] = []
    Z = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)

    def row(kind: str, set_id: int, a: int, b: int, ham: int | None, cos: float | None = None,
            linked: bool = True) -> dict[str, Any]:
        ra, rb = dataset[a], dataset[b]
        return {
            "kind": kind, "set": set_id, "a": a, "b": b,
            "path_a": str(ra.path), "path_b": str(rb.path),
            "label_a": int(y[a]), "label_b": int(y[b]),
            "hamming": "" if ham is None else int(ham),
            "cosine": round(float(Z[a] @ Z[b]) if cos is None or not np.isfinite(cos) else float(cos), 5),
            "linked": bool(linked),
            "label_conflict": bool(y[a] != y[b]),
            "split_a": "" if split is None else split[a], "split_b": "" if split is None else split[b],
            "split_leak": bool(split is not None and split[a] != split[b]),
            "group_a": "" if ra.group is None else ra.group, "group_b": "" if rb.group is None else rb.group,
        }

    found = find_duplicates(shas, phs, X if grouping is None else grouping, hash_threshold=hash_threshold,
                            cosine_threshold=cosine_threshold)
    # exact: same bytes. Each set is listed as (first member, other member) pairs,
    # which shows every label conflict and split leak a set holds. Set ids are the split groups'.
    exact_sets = found.exact
    for members in exact_sets:
        for m in members[1:]:
            rows.append(row("exact", int(found.set_id[members[0]]), members[0], m,
                            0 if phs[members[0]] is not None else None, 1.0))
    near = found.near
    for (a, b, h), cos, kept in zip(near, found.cosine, found.linked):
        # a cut link: the two images are in different groups (or none): set of a, then of b
        rows.append(row("near", int(found.set_id[a]) or int(found.set_id[b]), a, b, h, cos, bool(kept)))
    near_pairs = len(near)
    roots = sorted({int(found.set_id[a]) for a, _, _ in near if found.set_id[a]}
                   - {int(found.set_id[s[0]]) for s in exact_sets})

    exact_rows = [r for r in rows if r["kind"] == "exact"]
    near_rows = [r for r in rows if r["kind"] == "near"]
    minority = 1 if int((y == 1).sum()) <= int((y == 0).sum()) else 0
    redundant_min = sum(sum(1 for m in s[1:] if y[m] == minority) for s in exact_sets)
    summary: dict[str, Any] = {
        "exact_sets": len(exact_sets),
        "exact_redundant_images": int(sum(len(s) - 1 for s in exact_sets)),
        "exact_sets_label_conflict": int(sum(len({int(y[m]) for m in s}) > 1 for s in exact_sets)),
        "near_pairs": near_pairs,
        "near_sets": len(roots),
        "near_pairs_label_conflict": int(sum(r["label_conflict"] and r["linked"] for r in near_rows)),
        "near_links_cut": found.links_cut,
        "largest_set": int(np.bincount(found.set_id)[1:].max()) if found.sets else 0,
        "label_conflict_pairs": int(sum(r["label_conflict"] and r["linked"] for r in rows)),
        "minority_unique_images": int((y == minority).sum()) - int(redundant_min),
        "criteria": {
            "exact": "identical file bytes (SHA-256)",
            "near": f"perceptual hash (DCT pHash, 64 bits) within {hash_threshold} bits AND "
                    f"embedding cosine >= {cosine_threshold:g}",
            "sets": (f"the split groups: exact copies always together; near links kept strongest first while a "
                     f"set holds at most {found.max_set} images (a cut link is listed with linked=false and "
                     "makes no label-conflict suspect)"),
        },
    }
    if split is not None:
        summary["split_leak_pairs"] = int(sum(r["split_leak"] for r in rows))
        summary["split_leak_note"] = "a duplicate pair across train/val/test inflates validation and test figures"
    if groups is not None:
        summary["cross_group_pairs"] = int(sum(r["group_a"] != r["group_b"] for r in rows))
        summary["cross_group_note"] = ("duplicates in different groups can land in different splits even with a "
                                       "group-aware split; merge their groups or drop one copy from the manifest")
    summary["pairs_listed"] = len(exact_rows) + len(near_rows)
    if rows and split is None:
        summary["split_note"] = ("keep each duplicate set on one side of any train/val/test split (give the copies "
                                 "one group), or validation and test figures are inflated")
    return rows, summary


class DuplicatesCheck(Check):
    """Duplicate pairs (``ctx.outputs["duplicates"]``); a label conflict makes both images suspects."""

    name = "duplicates"

    def run(self, ctx: AuditContext) -> dict[str, Any]:
        s = ctx.settings
        rows, summary = _duplicates(ctx.dataset, ctx.X, ctx.y, ctx.files.shas, ctx.files.phashes, ctx.split,
                                    s.hash_threshold, s.cosine_threshold, ctx.grouping)
        ctx.outputs["duplicates"] = rows
        y = ctx.y
        # duplicate label conflicts are suspects in their own right (one of the two labels is wrong)
        from ...data.names import display_names

        root_names = dict(zip(range(len(ctx.dataset)), display_names([r.path for r in ctx.dataset.records])))
        for r in rows:
            if r["label_conflict"] and r["linked"]:
                for me, other in ((r["a"], r["b"]), (r["b"], r["a"])):
                    word = "exact" if r["kind"] == "exact" else "near"
                    ctx.flag(me, f"{word} duplicate of {root_names[other]} "
                                 f"labelled {_WORD[int(y[other])]}", 2)
        return summary
