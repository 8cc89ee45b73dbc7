"""Check: exact and near duplicates, their label conflicts and split leaks (``duplicates.csv``).

The detector is :func:`imbvision.data.duplicates.find_duplicates`, the one that
also keeps duplicates on one side of every training split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...data.duplicates import find_duplicates
from ...data.records import Dataset
from .base import WORD as _WORD
from .base import AuditContext, Check

__all__ = ["DuplicatesCheck"]


def _duplicates(dataset: Dataset, X: np.ndarray, y: np.ndarray, shas: list[str | None], phs: list[int | None],
                split: np.ndarray | None, hash_threshold: int, cosine_threshold: float,
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of ``duplicates.csv`` and their summary, from the one detector
    (:func:`imbvision.data.duplicates.find_duplicates`) that splits use too."""
    groups = dataset.groups
    rows: list[dict[str, Any]] = []
    Z = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)

    def row(kind: str, set_id: int, a: int, b: int, ham: int | None) -> dict[str, Any]:
        ra, rb = dataset[a], dataset[b]
        return {
            "kind": kind, "set": set_id, "a": a, "b": b,
            "path_a": str(ra.path), "path_b": str(rb.path),
            "label_a": int(y[a]), "label_b": int(y[b]),
            "hamming": "" if ham is None else int(ham),
            "cosine": round(float(Z[a] @ Z[b]), 5),
            "label_conflict": bool(y[a] != y[b]),
            "split_a": "" if split is None else split[a], "split_b": "" if split is None else split[b],
            "split_leak": bool(split is not None and split[a] != split[b]),
            "group_a": "" if ra.group is None else ra.group, "group_b": "" if rb.group is None else rb.group,
        }

    found = find_duplicates(shas, phs, X, hash_threshold=hash_threshold, cosine_threshold=cosine_threshold)
    # exact: same bytes. Each set is listed as (first member, other member) pairs,
    # which shows every label conflict and split leak a set holds.
    exact_sets = found.exact
    for s_id, members in enumerate(exact_sets, start=1):
        for m in members[1:]:
            rows.append(row("exact", s_id, members[0], m, 0 if phs[members[0]] is not None else None))
    # near: numbered after the exact sets, one id per connected group of near pairs.
    near = found.near
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(y)
    _, comp = connected_components(coo_matrix((np.ones(len(near)), ([a for a, _, _ in near], [b for _, b, _ in near])),
                                              shape=(n, n)), directed=False)
    roots = sorted({int(comp[a]) for a, _, _ in near}, key=lambda c: int(np.flatnonzero(comp == c)[0]))
    near_id = {r: len(exact_sets) + i + 1 for i, r in enumerate(roots)}
    near_pairs = 0
    for a, b, h in near:
        rows.append(row("near", near_id[int(comp[a])], a, b, h))
        near_pairs += 1

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
        "near_pairs_label_conflict": int(sum(r["label_conflict"] for r in near_rows)),
        "label_conflict_pairs": int(sum(r["label_conflict"] for r in rows)),
        "minority_unique_images": int((y == minority).sum()) - int(redundant_min),
        "criteria": {
            "exact": "identical file bytes (SHA-256)",
            "near": f"perceptual hash (DCT pHash, 64 bits) within {hash_threshold} bits AND "
                    f"embedding cosine >= {cosine_threshold:g}",
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
                                    s.hash_threshold, s.cosine_threshold)
        ctx.outputs["duplicates"] = rows
        y = ctx.y
        # duplicate label conflicts are suspects in their own right (one of the two labels is wrong)
        for r in rows:
            if r["label_conflict"]:
                for me, other in ((r["a"], r["b"]), (r["b"], r["a"])):
                    word = "exact" if r["kind"] == "exact" else "near"
                    ctx.flag(me, f"{word} duplicate of {Path(r['path_b'] if me == r['a'] else r['path_a']).name} "
                                 f"labelled {_WORD[int(y[other])]}", 2)
        return summary
