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

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._csv import write_csv
from .._io import ensure_output_dir, write_json, write_text
from ..data.records import Dataset
from ..errors import ConfigError, DataError
from .checks import (CHECKS, KNN_VOTE, LIST_SCORE, MIN_MINORITY, RELABEL_SCORE, REVIEW_SCORE,  # noqa: F401
                     AuditContext, AuditSettings)
from ._report import review_command
from .checks.base import WORD

__all__ = ["run_audit", "AuditResult", "SUSPECT_COLUMNS", "DUPLICATE_COLUMNS", "MIN_MINORITY"]

#: Columns of ``suspects.csv``.
SUSPECT_COLUMNS = [
    "rank", "path", "label", "class_name", "score", "p_oof", "knn_majority_share",
    "reasons", "suggested_action", "decision",
]
#: Columns of ``duplicates.csv``.
DUPLICATE_COLUMNS = [
    "kind", "set", "path_a", "path_b", "label_a", "label_b", "hamming", "cosine", "linked",
    "label_conflict", "split_a", "split_b", "split_leak", "group_a", "group_b",
]
VALID_SPLITS = ("train", "val", "test")
_WORD = WORD

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
    data_arg: str | None = None,
    grouping: Any = None,
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
    data_arg
        The ``--data`` text the user gave (e.g. ``demo:300``); the review command on the
        page and on the terminal repeats it (default: the dataset's source).
    grouping
        What near duplicates are judged on (default: ``features``): ``(N, D)`` embeddings or
        ``embed(indices)``; the CLI passes the split grouping's fixed representation, so the
        audit's duplicate sets and label conflicts are the groups every split keeps together.

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
    settings = AuditSettings(k=k, seed=seed, folds=folds, hash_threshold=hash_threshold,
                             cosine_threshold=cosine_threshold, C=C, repeats=repeats, progress=progress)
    ctx = AuditContext(dataset, X, split_arr, settings, grouping=grouping)
    sections = {}
    for check in CHECKS:  # each signal in its own module (imbvision.audit.checks); this function only orchestrates
        section = check.run(ctx)
        if check.name is not None:
            sections[check.name] = section
    y, n, minority = ctx.y, ctx.n, ctx.minority
    flags, reasons, strength = ctx.flags, ctx.reasons, ctx.strength
    scores, p_oof, cl = ctx.outputs.get("scores"), ctx.outputs.get("p_oof"), ctx.outputs.get("cl")
    idx, signals = ctx.outputs.get("idx"), ctx.outputs.get("signals", {})
    dup_rows = ctx.outputs["duplicates"]

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
        **sections,
        "suspects": len(suspects),
        "suggested_actions": dict(Counter(s["suggested_action"] for s in suspects)),
        "review_command": review_command(data_arg or dataset.source or "SOURCE", out_dir / "suspects.csv"),
        "unreadable_images": ctx.files.problems,
        "skipped": ctx.skipped,
        "notes": ctx.notes,
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
        flags=flags, p_oof=p_oof, cl_flags=cl, skipped=ctx.skipped, signals=signals,
    )


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    def cell(v: Any) -> Any:
        return "true" if v is True else "false" if v is False else ("" if v is None else v)

    write_csv(path, columns, ([cell(r.get(c, "")) for c in columns] for r in rows))
