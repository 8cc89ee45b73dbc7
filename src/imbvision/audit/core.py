"""The dataset audit: know the imbalance -- and the minority's label noise -- before training.

The audit reads a :class:`~imbvision.data.Dataset` and one embedding per
image and writes four files, never touching the images themselves:

``audit.json``      every figure, and for each skipped section why it was skipped
``suspects.csv``    images whose label the evidence doubts, ranked, with a blank
                    ``decision`` column for the user (keep | relabel | drop)
``duplicates.csv``  exact and near duplicates, with label conflicts and split leaks
``audit.html``      the same, self-contained, with thumbnails

The point (after the seed question "cluster the minority and delete noisy
images"): removing minority images worsens the imbalance and an isolated
positive is as often a rare genuine variant as a label error, so the audit
only *ranks* and *explains*; :func:`~imbvision.audit.apply_review` then applies
the user's decisions to a *new* manifest.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write, ensure_output_dir, write_json, write_text
from ..data.decode import load_image_array
from ..data.records import Dataset
from ..errors import ConfigError, DataError
from . import _signals as sig
from ._hashing import hamming, phash, sha256_file

__all__ = ["run_audit", "AuditResult", "SUSPECT_COLUMNS", "DUPLICATE_COLUMNS", "MIN_MINORITY"]

#: Columns of ``suspects.csv``.
SUSPECT_COLUMNS = [
    "rank", "path", "label", "class_name", "score", "p_oof", "knn_majority_share",
    "reasons", "suggested_action", "decision",
]
#: Columns of ``duplicates.csv``.
DUPLICATE_COLUMNS = [
    "kind", "set", "path_a", "path_b", "label_a", "label_b", "hamming", "cosine",
    "label_conflict", "split_a", "split_b", "split_leak", "group_a", "group_b",
]
#: Fewer minority samples than this: neighbour statistics, cross-validation and
#: the noise audit are skipped (with the reason written down).
MIN_MINORITY = 3
VALID_SPLITS = ("train", "val", "test")
#: Listing and action rules of the noise audit (measured on Magnetic-tile with injected
#: flips, benchmarks/audit_noise.py): an image is listed in suspects.csv when it has a
#: confident-learning or neighbour flag, is isolated, has a conflicting duplicate, or its
#: score reaches LIST_SCORE; it is suggested for review from REVIEW_SCORE (or any flag)
#: and for relabelling when a flag agrees with a score of at least RELABEL_SCORE
#: (about 8 in 10 of those were real flips there).
LIST_SCORE, REVIEW_SCORE, RELABEL_SCORE = 0.5, 0.6, 0.7
KNN_VOTE = 0.8
_WORD = {1: "positive", 0: "negative"}


@dataclass
class AuditResult:
    """What :func:`run_audit` found; the same content as the files it wrote.

    Attributes
    ----------
    out_dir
        Folder holding ``audit.json``, ``suspects.csv``, ``duplicates.csv``, ``audit.html``.
    summary
        The content of ``audit.json``.
    suspects
        Rows of ``suspects.csv`` (dicts keyed by :data:`SUSPECT_COLUMNS`, plus ``_index``: the
        image's position in the dataset), best first.
    duplicates
        Rows of ``duplicates.csv``.
    scores
        ``(N,)`` suspect score in [0, 1] of every image, or ``None`` when the noise audit was skipped.
    flags
        ``(N,)`` bool: the image is listed in ``suspects.csv``.
    p_oof
        ``(N,)`` out-of-fold P(positive), or ``None``.
    cl_flags
        ``(N,)`` bool: confident-learning disagreement (either direction), or ``None``.
    skipped
        Section name -> why it was not computed.
    signals
        Per-image arrays behind the score (empty when the noise audit was skipped):
        ``p_other`` (out-of-fold probability of the other class), ``knn_other_share``,
        ``knn_other_vote`` (prior-corrected), ``isolated``, ``confident_learning``, ``knn_flag``.
    """

    out_dir: Path
    summary: dict[str, Any]
    suspects: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]
    scores: np.ndarray | None = None
    flags: np.ndarray | None = None
    p_oof: np.ndarray | None = None
    cl_flags: np.ndarray | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    signals: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def json_path(self) -> Path:
        return self.out_dir / "audit.json"

    @property
    def suspects_path(self) -> Path:
        return self.out_dir / "suspects.csv"

    @property
    def duplicates_path(self) -> Path:
        return self.out_dir / "duplicates.csv"

    @property
    def html_path(self) -> Path:
        return self.out_dir / "audit.html"

    def ranking(self) -> np.ndarray:
        """Indices of all images, most suspect first (empty when the noise audit was skipped)."""
        if self.scores is None:
            return np.zeros(0, dtype=np.int64)
        return np.argsort(-self.scores, kind="stable")


# --------------------------------------------------------------------------- validation


def _check_inputs(dataset: Dataset, features: Any, split: Any, k: int, folds: int,
                  hash_threshold: int, cosine_threshold: float) -> tuple[np.ndarray, np.ndarray | None]:
    n = len(dataset)
    if n == 0:
        raise DataError("the dataset has no images; an audit needs at least one")
    X = np.asarray(features)
    if X.ndim != 2:
        raise DataError(f"features must be a 2-D array (N images x D dims); got shape {X.shape}")
    if X.shape[0] != n:
        raise DataError(
            f"features have {X.shape[0]} rows but the dataset has {n} images; "
            "pass one feature row per image, in dataset order"
        )
    if not np.issubdtype(X.dtype, np.number):
        raise DataError(f"features must be numeric; got dtype {X.dtype}")
    X = X.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad.size:
        shown = ", ".join(f"{int(i)} ({dataset[int(i)].path})" for i in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        raise DataError(
            f"features contain NaN or infinite values in {bad.size} row(s): {shown}{more}; "
            "re-embed those images or remove them"
        )
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"k={k!r} is not valid; k must be an integer >= 1 (neighbours per image)")
    if not isinstance(folds, (int, np.integer)) or isinstance(folds, bool) or folds < 2:
        raise ConfigError(f"folds={folds!r} is not valid; folds must be an integer >= 2")
    if not 0 <= hash_threshold <= 64:
        raise ConfigError(f"hash_threshold={hash_threshold!r} is not valid; use 0..64 bits")
    if not 0.0 < cosine_threshold <= 1.0:
        raise ConfigError(f"cosine_threshold={cosine_threshold!r} is not valid; use a value in (0, 1]")
    s = None
    if split is not None:
        s = np.asarray(split, dtype=object).astype(str)
        if s.shape != (n,):
            raise DataError(f"split has {s.size} entries but the dataset has {n} images; give one split per image")
        wrong = sorted(set(s) - set(VALID_SPLITS))
        if wrong:
            raise ConfigError(f"split values {wrong!r} are not valid; valid: {', '.join(VALID_SPLITS)}")
    return X, s


# --------------------------------------------------------------------------- helpers


def _progress_factory(enabled: bool):
    """A ``rich`` progress bar when enabled, else a no-op with the same interface."""
    if enabled:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), transient=True)

    class _Null:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def add_task(self, *a, **k):
            return 0

        def advance(self, *a, **k):
            pass

    return _Null()


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


def _file_pass(dataset: Dataset, progress) -> tuple[list[str | None], list[int | None], list[str | None],
                                                     list[dict[str, str]]]:
    """SHA-256 and perceptual hash of every image, and whether its mask marks anything (read-only).

    Mask states: ``None`` (no mask), ``"empty"``, ``"object"``, ``"unreadable"``.
    """
    from ..data.decode import load_mask
    from ..errors import BadFileError

    shas: list[str | None] = []
    phs: list[int | None] = []
    masks: list[str | None] = []
    problems: list[dict[str, str]] = []
    with progress as bar:
        task = bar.add_task("audit: hashing images", total=len(dataset))
        for rec in dataset:
            sha = ph = None
            try:
                sha = sha256_file(rec.path)
                ph = phash(load_image_array(rec.path))
            except OSError as exc:
                problems.append({"path": str(rec.path), "reason": f"cannot read: {exc.strerror or exc}"})
            except BadFileError as exc:
                problems.append({"path": str(rec.path), "reason": exc.reason})
            state = None
            if rec.mask is not None:
                try:
                    state = "object" if bool(load_mask(rec.mask).any()) else "empty"
                except (OSError, BadFileError) as exc:
                    state = "unreadable"
                    problems.append({"path": str(rec.mask), "reason": f"mask: {getattr(exc, 'reason', exc)}"})
            shas.append(sha)
            phs.append(ph)
            masks.append(state)
            bar.advance(task)
    return shas, phs, masks, problems


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


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.p = list(range(n))

    def find(self, a: int) -> int:
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[max(ra, rb)] = min(ra, rb)


def _duplicates(dataset: Dataset, X: np.ndarray, y: np.ndarray, shas: list[str | None], phs: list[int | None],
                split: np.ndarray | None, hash_threshold: int, cosine_threshold: float,
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    n = len(y)
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

    # exact: same bytes. Each set is listed as (first member, other member) pairs,
    # which shows every label conflict and split leak a set holds.
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(shas):
        if h is not None:
            by_sha[h].append(i)
    exact_sets = [v for v in by_sha.values() if len(v) > 1]
    exact_sets.sort(key=lambda v: v[0])
    exact_of = {}
    for s_id, members in enumerate(exact_sets, start=1):
        for m in members:
            exact_of[m] = s_id
        for m in members[1:]:
            rows.append(row("exact", s_id, members[0], m, 0 if phs[members[0]] is not None else None))

    # near: perceptual hash within hash_threshold bits AND embedding cosine >=
    # cosine_threshold. Candidates come from the embedding (sparse radius
    # search); requiring both keeps textures that look alike to one measure
    # only (uniform backgrounds, tiles of one part) out of the list.
    near_pairs = 0
    uf = _UnionFind(n)
    ph = np.array([p if p is not None else 0 for p in phs], dtype=np.uint64)
    has_ph = np.array([p is not None for p in phs])
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(metric="cosine", algorithm="brute").fit(Z)
    _, neigh = nn.radius_neighbors(Z, radius=1.0 - cosine_threshold + 1e-9, sort_results=False)
    cand_a, cand_b = [], []
    for a, nb in enumerate(neigh):
        nb = nb[nb > a]
        cand_a.append(np.full(nb.size, a, dtype=np.int64))
        cand_b.append(nb.astype(np.int64))
    ca = np.concatenate(cand_a) if cand_a else np.zeros(0, dtype=np.int64)
    cb = np.concatenate(cand_b) if cand_b else np.zeros(0, dtype=np.int64)
    ok = has_ph[ca] & has_ph[cb]
    ca, cb = ca[ok], cb[ok]
    ham = hamming(ph[ca], ph[cb])
    sel = ham <= hash_threshold
    near = [(int(a), int(b), int(h)) for a, b, h in zip(ca[sel], cb[sel], ham[sel])
            if not (a in exact_of and exact_of.get(int(b)) == exact_of[int(a)])]
    for a, b, _ in near:
        uf.union(a, b)
    roots = sorted({uf.find(a) for a, _, _ in near})
    near_id = {r: len(exact_sets) + i + 1 for i, r in enumerate(roots)}
    for a, b, h in sorted(near, key=lambda t: (t[0], t[1])):
        rows.append(row("near", near_id[uf.find(a)], a, b, h))
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


# --------------------------------------------------------------------------- main entry


def run_audit(
    dataset: Dataset,
    features: np.ndarray,
    out_dir: str | Path,
    *,
    k: int = 10,
    seed: int = 0,
    folds: int = 5,
    split: np.ndarray | None = None,
    hash_threshold: int = 6,
    cosine_threshold: float = 0.98,
    C: float | str = "auto",
    repeats: int = 2,
    progress: bool = True,
) -> AuditResult:
    """Audit a dataset's imbalance, duplicates, hardness and minority label noise.

    Reads the image files (for hashes and thumbnails) but never modifies,
    moves or deletes them.

    Parameters
    ----------
    dataset
        The images and their labels.
    features
        ``(N, D)`` embeddings, one row per image in dataset order (e.g.
        ``imbvision.backbones.embed_dataset(dataset).global_``).
    out_dir
        Folder for ``audit.json``, ``suspects.csv``, ``duplicates.csv``, ``audit.html``.
    k
        Neighbours per image for the neighbourhood statistics (clipped to N - 1).
    seed
        Seed of the cross-validation shuffles.
    folds
        Cross-validation folds (reduced to the minority count when it is smaller).
    split
        Optional ``train``/``val``/``test`` per image: duplicates across splits are reported as leaks.
    hash_threshold, cosine_threshold
        Near duplicates: perceptual hashes within ``hash_threshold`` of 64 bits
        and embedding cosine similarity at least ``cosine_threshold``.
    C
        Inverse regularisation of the logistic-regression head, or ``"auto"``
        to pick it from a grid by out-of-fold class-balanced log-loss.
    repeats
        Cross-validation repeats averaged into the out-of-fold probabilities.
    progress
        Show progress bars.

    Returns
    -------
    AuditResult

    Raises
    ------
    DataError
        Features of the wrong shape or with NaN/inf rows; a split of the wrong length.
    ConfigError
        An option out of range, or a split value other than train/val/test.
    """
    from .._limits import check_range
    check_range("seed", seed)
    X, split_arr = _check_inputs(dataset, features, split, k, folds, hash_threshold, cosine_threshold)
    if not (C == "auto" or (isinstance(C, (int, float)) and not isinstance(C, bool) and C > 0)):
        raise ConfigError(f"C={C!r} is not valid; use 'auto' or a positive number")
    if not isinstance(repeats, (int, np.integer)) or isinstance(repeats, bool) or repeats < 1:
        raise ConfigError(f"repeats={repeats!r} is not valid; use an integer >= 1")
    out_dir = ensure_output_dir(out_dir)
    y = dataset.labels.astype(np.int64)
    n = len(y)
    skipped: dict[str, str] = {}
    notes: list[str] = []

    counts = _counts(dataset, y)
    shas, phs, mask_state, problems = _file_pass(dataset, _progress_factory(progress))
    counts["masks"] = _mask_counts(mask_state, y)
    dup_rows, dup_summary = _duplicates(dataset, X, y, shas, phs, split_arr, hash_threshold, cosine_threshold)

    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    minority = 1 if n1 <= n0 else 0
    n_min = min(n1, n0)
    hardness: dict[str, Any] | None = None
    noise: dict[str, Any] | None = None
    scores = p_oof = cl = None
    signals: dict[str, np.ndarray] = {}
    flags = np.zeros(n, dtype=bool)
    reasons: list[list[str]] = [[] for _ in range(n)]
    strength = np.zeros(n, dtype=np.int64)  # 0 none, 1 weak (isolation only), 2 review, 3 relabel

    # duplicate label conflicts are suspects in their own right (one of the two labels is wrong)
    for r in dup_rows:
        if r["label_conflict"]:
            for me, other in ((r["a"], r["b"]), (r["b"], r["a"])):
                word = "exact" if r["kind"] == "exact" else "near"
                reasons[me].append(f"{word} duplicate of {Path(r['path_b'] if me == r['a'] else r['path_a']).name} "
                                   f"labelled {_WORD[int(y[other])]}")
                flags[me] = True
                strength[me] = max(strength[me], 2)

    # a mask is a second, independent label: an object outlined on a negative, or an
    # empty mask on a positive, means one of the two is wrong
    for i, st in enumerate(mask_state):
        if st == "object" and y[i] == 0:
            reasons[i].append("its mask outlines an object but it is labelled negative")
        elif st == "empty" and y[i] == 1:
            reasons[i].append("its mask is empty but it is labelled positive")
        else:
            continue
        flags[i] = True
        strength[i] = max(strength[i], 2)

    if n_min < MIN_MINORITY:
        why = (f"only {n_min} {_WORD[minority]} image(s); neighbour statistics, Tomek links, cross-validated AP "
               f"and the label-noise audit need at least {MIN_MINORITY} -- collect or label more "
               f"{_WORD[minority]} images first")
        skipped["hardness"] = why
        skipped["label_noise"] = why
    else:
        if n_min < folds:
            notes.append(f"folds reduced from {folds} to {n_min}: only {n_min} {_WORD[minority]} images")
        k_eff = int(min(k, n - 1))
        if k_eff < k:
            notes.append(f"k reduced from {k} to {k_eff}: only {n} images")
        with _progress_factory(progress) as bar:
            n_folds = max(2, min(folds, n_min))
            n_c = len(sig.C_GRID) if C == "auto" else 1
            task = bar.add_task("audit: neighbours and cross-validation", total=1 + (n_c + repeats - 1) * n_folds)
            idx, _dist = sig.cosine_neighbours(X, k_eff)
            bar.advance(task)
            oof = sig.oof_probabilities(X, y, folds=folds, seed=seed, groups=dataset.groups, C=C,
                                        repeats=repeats, progress=lambda: bar.advance(task))
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
            if not (cl[i] or knn_flag[i] or isolated[i] or flags[i] or scores[i] >= LIST_SCORE):
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
            reasons[i] = why + reasons[i]
            flags[i] = True
            if (cl[i] or knn_flag[i]) and scores[i] >= RELABEL_SCORE:
                strength[i] = max(strength[i], 3)
            elif cl[i] or knn_flag[i] or scores[i] >= REVIEW_SCORE:
                strength[i] = max(strength[i], 2)
            else:
                strength[i] = max(strength[i], 1)
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
            "suspects": int(flags.sum()),
            "never_deletes": ("the audit only ranks; nothing is deleted or relabelled until you fill the decision "
                              "column of suspects.csv and run apply_review, which writes a new manifest"),
        }
        if dataset.groups is not None and oof.splitter != "StratifiedGroupKFold":
            notes.append("cross-validation could not split by group; images of one group may appear in training "
                         "and held-out folds, which makes out-of-fold probabilities optimistic")
    if n_min < MIN_MINORITY:
        scores = None

    # a drawn mask is evidence for "positive": never suggest relabelling such an image blindly
    for i, st in enumerate(mask_state):
        if st == "object" and y[i] == 1 and strength[i] == 3:
            strength[i] = 2
            reasons[i].append("its mask outlines an object: look before relabelling")

    # suspects table
    order = (np.argsort(-scores, kind="stable") if scores is not None
             else np.arange(n))
    order = [int(i) for i in order if flags[i]]
    action = {1: "keep", 2: "review", 3: "relabel"}
    suspects: list[dict[str, Any]] = []
    maj = 1 - minority
    for rank, i in enumerate(order, start=1):
        rec = dataset[i]
        suspects.append({
            "rank": rank,
            "path": str(rec.path),
            "label": int(y[i]),
            "class_name": rec.class_name,
            "score": "" if scores is None else round(float(scores[i]), 4),
            "p_oof": "" if p_oof is None else round(float(p_oof[i]), 4),
            "knn_majority_share": "" if scores is None else round(float((y[idx[i]] == maj).mean()), 3),
            "reasons": f"labelled {_WORD[int(y[i])]}; " + "; ".join(reasons[i]),
            "suggested_action": action[int(max(strength[i], 1))],
            "decision": "",
            "_index": i,
        })

    summary: dict[str, Any] = {
        "audit_version": 1,
        "source": dataset.source,
        "settings": {"k": k, "seed": seed, "folds": folds, "hash_threshold": hash_threshold,
                     "cosine_threshold": cosine_threshold, "C": C, "repeats": repeats,
                     "feature_dims": int(X.shape[1]), "split_given": split_arr is not None},
        "counts": counts,
        "duplicates": dup_summary,
        "hardness": hardness if hardness is not None else {"skipped": skipped["hardness"]},
        "label_noise": noise if noise is not None else {"skipped": skipped["label_noise"]},
        "suspects": len(suspects),
        "suggested_actions": dict(Counter(s["suggested_action"] for s in suspects)),
        "unreadable_images": problems,
        "skipped": skipped,
        "notes": notes,
        "files": {"json": "audit.json", "suspects": "suspects.csv", "duplicates": "duplicates.csv",
                  "html": "audit.html"},
    }

    _write_csv(out_dir / "suspects.csv", SUSPECT_COLUMNS, suspects)
    _write_csv(out_dir / "duplicates.csv", DUPLICATE_COLUMNS, dup_rows)
    write_json(out_dir / "audit.json", summary)
    from ._report import render_html

    write_text(out_dir / "audit.html", render_html(summary, suspects, dup_rows, dataset))
    return AuditResult(
        out_dir=out_dir, summary=summary, suspects=suspects, duplicates=dup_rows, scores=scores,
        flags=flags, p_oof=p_oof, cl_flags=cl, skipped=skipped, signals=signals,
    )


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("true" if r.get(c) is True else "false" if r.get(c) is False else r.get(c, ""))
                    for c in columns})
    with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
