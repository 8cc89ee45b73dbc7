"""The audit's check protocol: one signal per module, a shared context, evidence per image.

As in cleanlab's ``datalab/internal/issue_manager``: each check is a small
class with a ``name`` (its section of ``audit.json``) and ``run(ctx)``, which
returns that section (or ``None``) and records per-image evidence through
:meth:`AuditContext.flag`. :func:`imbvision.audit.run_audit` only builds the
context, runs :data:`imbvision.audit.checks.CHECKS` in order and writes files.
Work that several checks need (one pass over the files; neighbours and
out-of-fold probabilities) is computed once, lazily, on the context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..._digest import sha256_file
from ..._progress import progress_bar
from ...data.records import Dataset
from ..._text import plural

__all__ = ["AuditSettings", "AuditContext", "Check", "LearnedCheck", "FilePass", "Learned", "WORD", "MIN_MINORITY"]

WORD = {1: "positive", 0: "negative"}
#: Fewer minority samples than this: neighbour statistics, cross-validation and
#: the noise audit are skipped (with the reason written down).
MIN_MINORITY = 3


@dataclass(frozen=True)
class AuditSettings:
    """The options of :func:`~imbvision.audit.run_audit` (already validated)."""

    k: int = 10
    seed: int = 0
    folds: int = 5
    hash_threshold: int = 6
    cosine_threshold: float = 0.98
    C: float | str = "auto"
    repeats: int = 2
    progress: bool = False


@dataclass
class FilePass:
    """Per image: SHA-256, perceptual hash, mask state (None/empty/object/unreadable); unreadable files."""

    shas: list[str | None]
    phashes: list[int | None]
    mask_state: list[str | None]
    problems: list[dict[str, str]]


@dataclass
class Learned:
    """Neighbours and out-of-fold probabilities, shared by the hardness and label-noise checks."""

    k: int
    idx: np.ndarray
    oof: Any


@dataclass
class AuditContext:
    """What every check reads, and the per-image evidence they add to."""

    dataset: Dataset
    X: np.ndarray
    split: np.ndarray | None
    settings: AuditSettings
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    #: What near duplicates are judged on: ``(N, D)`` embeddings or ``embed(indices)``
    #: (:func:`~imbvision.data.duplicates.find_duplicates`); ``None``: ``X``. Pass the split
    #: grouping's representation (``training.prepare.duplicate_features``) and the audit's sets
    #: are the groups every split keeps together.
    grouping: Any = None

    def __post_init__(self) -> None:
        self.y = self.dataset.labels.astype(np.int64)
        n = len(self.y)
        self.flags = np.zeros(n, dtype=bool)
        self.reasons: list[list[str]] = [[] for _ in range(n)]
        self.strength = np.zeros(n, dtype=np.int64)  # 0 none, 1 weak (isolation only), 2 review, 3 relabel

    # -- evidence ---------------------------------------------------------------------------
    def flag(self, i: int, reason: str | list[str] | None, level: int, *, first: bool = False) -> None:
        """List image ``i`` as a suspect with ``reason`` (prepended when ``first``) at least at ``level``."""
        add = [] if reason is None else [reason] if isinstance(reason, str) else list(reason)
        self.reasons[i] = add + self.reasons[i] if first else self.reasons[i] + add
        self.flags[i] = True
        self.strength[i] = max(self.strength[i], level)

    # -- class sizes ------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def minority(self) -> int:
        return 1 if int((self.y == 1).sum()) <= int((self.y == 0).sum()) else 0

    @property
    def n_min(self) -> int:
        return int(min((self.y == 1).sum(), (self.y == 0).sum()))

    # -- shared work ------------------------------------------------------------------------
    @cached_property
    def files(self) -> FilePass:
        """SHA-256 and perceptual hash of every image, and whether its mask marks anything (read-only)."""
        from ...data.decode import load_image_array, load_mask
        from ...data.duplicates import phash
        from ...errors import BadFileError

        out = FilePass([], [], [], [])
        with progress_bar(self.settings.progress, transient=True) as bar:
            task = bar.add_task("audit: hashing images", total=len(self.dataset))
            for rec in self.dataset:
                sha = ph = None
                try:
                    sha = sha256_file(rec.path)
                    ph = phash(load_image_array(rec.path))
                except OSError as exc:
                    out.problems.append({"path": str(rec.path), "reason": f"cannot read: {exc.strerror or exc}"})
                except BadFileError as exc:
                    out.problems.append({"path": str(rec.path), "reason": exc.reason})
                state = None
                if rec.mask is not None:
                    try:
                        state = "object" if bool(load_mask(rec.mask).any()) else "empty"
                    except (OSError, BadFileError) as exc:
                        state = "unreadable"
                        out.problems.append({"path": str(rec.mask), "reason": f"mask: {getattr(exc, 'reason', exc)}"})
                out.shas.append(sha)
                out.phashes.append(ph)
                out.mask_state.append(state)
                bar.advance(task)
        return out

    @cached_property
    def learned(self) -> Learned:
        """Cosine neighbours and out-of-fold probabilities (needs at least :data:`MIN_MINORITY` minority images)."""
        from .. import _signals as sig

        s, n, n_min = self.settings, self.n, self.n_min
        if n_min < s.folds:
            self.notes.append(f"folds reduced from {s.folds} to {n_min}: only {n_min} {WORD[self.minority]} images")
        k_eff = int(min(s.k, n - 1))
        if k_eff < s.k:
            self.notes.append(f"k reduced from {s.k} to {k_eff}: only {n} images")
        with progress_bar(s.progress, transient=True) as bar:
            n_folds = max(2, min(s.folds, n_min))
            n_c = len(sig.C_GRID) if s.C == "auto" else 1
            task = bar.add_task("audit: neighbours and cross-validation", total=1 + (n_c + s.repeats - 1) * n_folds)
            idx, _dist = sig.cosine_neighbours(self.X, k_eff)
            bar.advance(task)
            oof = sig.oof_probabilities(self.X, self.y, folds=s.folds, seed=s.seed, groups=self.dataset.groups, C=s.C,
                                        repeats=s.repeats, progress=lambda: bar.advance(task))
        return Learned(k_eff, idx, oof)

    def too_few(self) -> str | None:
        """Why the learned checks are skipped (too few minority images), or None."""
        if self.n_min >= MIN_MINORITY:
            return None
        w = WORD[self.minority]
        return (f"only {plural(self.n_min, w + ' image')}; neighbour statistics, Tomek links, cross-validated AP "
                f"and the label-noise audit need at least {MIN_MINORITY} -- collect or label more {w} images first")


class Check:
    """One audit signal: ``run(ctx)`` returns its ``audit.json`` section (or None) and flags images on ``ctx``."""

    #: Section name in ``audit.json`` (None: the check only adds evidence).
    name: str | None = None

    def run(self, ctx: AuditContext) -> dict[str, Any] | None:  # pragma: no cover - interface
        raise NotImplementedError


class LearnedCheck(Check):
    """A check on neighbours and out-of-fold probabilities: skipped, with the reason, when the minority is too small."""

    def run(self, ctx: AuditContext) -> dict[str, Any]:
        why = ctx.too_few()
        if why is not None:
            ctx.skipped[str(self.name)] = why
            return {"skipped": why}
        return self.compute(ctx, ctx.learned)

    def compute(self, ctx: AuditContext, learned: Learned) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError
