"""Head mode: every strategy on cached embeddings; seconds on a CPU.

Order of operations on the training rows only: pixel-space synthesis/mixing
(embedded beforehand, passed in as extra rows) → feature-space resamplers →
loss and sampler built from the resulting class counts → head fit. Validation
scores then choose the prior correction, calibration and threshold; test
scores are only ever scored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..evaluation.postprocess import Postprocess, fit_postprocess  # noqa: F401 - re-exported for old imports
from ..strategies.registry import Recipe, StrategyContext, StrategySpec, list_strategies, make_spec, recipe_prior

__all__ = ["HeadFit", "fit_head", "effective_prior", "choose_head"]


@dataclass
class HeadFit:
    """A fitted head and what it was trained on."""

    head: Any
    head_name: str
    head_params: dict[str, Any]
    loss_name: str
    train_rows: int
    train_positive_share: float
    effective_prior: float | None
    fit_seconds: float
    resampled_counts: tuple[int, int]
    notes: list[str] = field(default_factory=list)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.head.predict_proba(X), dtype=np.float64)


def effective_prior(recipe: Recipe, counts: tuple[int, int], soft_pos_share: float | None = None) -> float | None:
    """The positive rate the head effectively trains at, or ``None`` when no analytic form exists.

    ``counts`` are the (negative, positive) rows after synthesis and resampling.
    Composed from each strategy record's declared ``prior_shift``
    (:func:`~imbvision.strategies.registry.recipe_prior`, Saerens et al. 2002).
    """
    return recipe_prior(recipe, counts, soft_pos_share)


def _flexible_heads() -> list[str]:
    """Global heads whose records say they minimise any loss and take a sampler (``linear``, ``mlp``)."""
    return [r.name for r in list_strategies("head") if r.representation == "global" and r.any_loss and r.takes_sampler]


def choose_head(recipe: Recipe) -> StrategySpec:
    """The head that fits the recipe, asked from the records.

    A head whose record says ``any_loss=False`` takes only losses whose record says
    ``weight_only``; one with ``takes_sampler=False`` cannot use a sampler. An explicit
    head that cannot is refused; the default (``logreg``) is then replaced by the first global
    head that can (``linear``).
    """
    head_spec = recipe.head
    explicit = any(s.record.family == "head" for s in recipe.specs)
    rec = head_spec.record
    flexible = _flexible_heads()
    names = " or ".join(repr(n) for n in flexible)
    if not rec.any_loss and not recipe.loss.record.weight_only(recipe.loss.params):
        if explicit:
            raise ConfigError(
                f"head {head_spec.name} cannot minimise loss {recipe.loss.name!r}; use head {names} "
                f"(e.g. --strategy {recipe.loss.name}+{flexible[0]})"
            )
        head_spec = make_spec(flexible[0])
    if recipe.sampler is not None and not head_spec.record.takes_sampler:
        if explicit:
            raise ConfigError(f"head {head_spec.name} fits on all rows at once and cannot use a sampler; "
                              f"use {names}")
        head_spec = make_spec(flexible[0])
    return head_spec


def fit_head(X: np.ndarray, y: np.ndarray, recipe: Recipe, *, seed: int = 0,
             extra_X: np.ndarray | None = None, extra_y: np.ndarray | None = None) -> HeadFit:
    """Fit the recipe's head on training rows.

    Parameters
    ----------
    X, y
        Training embeddings and hard labels (training split only).
    extra_X, extra_y
        Embeddings of synthesised or mixed images and their (soft) labels.
    """
    t0 = time.perf_counter()
    notes: list[str] = []
    y = np.asarray(y, dtype=np.float64)
    if extra_X is not None and len(extra_X):
        X = np.concatenate([X, extra_X.astype(X.dtype)])
        y = np.concatenate([y, np.asarray(extra_y, dtype=np.float64)])
    if not (y >= 0.5).any():
        alone = [r.name for r in list_strategies("head") if not r.needs_positives]  # the records say who can
        raise ConfigError(f"the training split holds no positive; only --strategy {' or '.join(alone)} learns from "
                          f"negatives alone ({recipe.name} needs positives)")
    hard = np.isin(y, (0.0, 1.0))
    ctx0 = StrategyContext.from_labels(y, seed=seed)
    if recipe.resamplers:
        # Resamplers work on hard rows; soft (mixed) rows are kept as they are.
        Xh, yh = X[hard], y[hard].astype(np.int64)
        for spec in recipe.resamplers:
            res = spec.build(ctx0).fit_resample(Xh, yh, seed=seed)
            Xh, yh = res.X, res.y
        X = np.concatenate([Xh, X[~hard]])
        y = np.concatenate([yh.astype(np.float64), y[~hard]])
    n1 = int((y >= 0.5).sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        raise ConfigError("after resampling the training rows hold one class only; choose a milder resampler")
    ctx = StrategyContext(class_counts=(n0, n1), seed=seed)
    loss = recipe.loss.build(ctx)
    sampler = recipe.sampler.build(ctx) if recipe.sampler is not None else None
    head_spec = choose_head(recipe)
    head = head_spec.build(ctx)
    from sklearn.exceptions import ConvergenceWarning

    from ..notices import thread_safe_quiet

    # The libraries' chatter during a fit is silenced, but not a fit that stopped early: it changes the scores,
    # so it reaches the user as one line (imbvision.notices.library_line) and the report. In compare's worker
    # threads nothing is changed (the warning state is process-wide; see thread_safe_quiet).
    with thread_safe_quiet(UserWarning, keep=(ConvergenceWarning,)):
        head.fit(X.astype(np.float32), y, loss=loss, sampler=sampler, loss_name=recipe.loss.name, seed=seed)
    soft_share = float(y.mean())
    return HeadFit(head, head_spec.name, dict(head_spec.params), recipe.loss.name, len(y), soft_share,
                   effective_prior(recipe, (n0, n1), soft_share), time.perf_counter() - t0, (n0, n1), notes)
