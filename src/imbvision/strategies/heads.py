"""The ``logreg`` head: L2 logistic regression (scikit-learn, lbfgs) on standardised embeddings.

Owns :class:`LogRegHead`, its parameter table and its strategy record. It can only express class
weights, so it takes the losses whose records declare ``weight_only`` (``ce``, ``weighted-ce``,
``class-balanced`` with ``base=ce``); the recipe's sampler is honoured in expectation (one epoch's
draws become sample weights). lbfgs is deterministic: the same data give the same head.

The torch heads ``linear`` and ``mlp`` live in :mod:`~imbvision.strategies.torch_heads`, the base
class in :mod:`~imbvision.strategies.head_base`; both are re-exported here for imports written
before the split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from torch import nn

from ..errors import BundleError, ConfigError, DataError
from .head_base import SCALER_ARRAYS, Arr, Head, SavedHead, _check_sample_weight, _check_X, _default_loss
from .head_base import _sampler_counts, _Targets
from .head_base import clip_to_training, head_from_arrays  # noqa: F401 - re-exported for old imports
from .losses import ClassBalancedLoss, CrossEntropy
from .registry import Param, StrategyContext, StrategyRecord, get_strategy, list_strategies, register_strategy

__all__ = ["LogRegHead", "LOGREG_PARAMS", "Head", "LinearHead", "MLPHead", "head_from_arrays"]

#: The ``logreg`` record's parameters (also what :class:`LogRegHead` checks its arguments against).
LOGREG_PARAMS = {
    "C": Param(0.01, kind="float", low=0.0, low_open=True,
               doc="inverse L2 strength on standardised features (small n, many features: strong L2)"),
    "max_iter": Param(1000, kind="int", low=1, doc="lbfgs iterations"),
}


class LogRegHead(Head):
    """L2 logistic regression (scikit-learn, lbfgs) on standardised embeddings.

    Parameters
    ----------
    C
        Inverse regularisation strength, ``> 0``.
    max_iter
        lbfgs iterations, ``>= 1``.
    """

    name = "logreg"
    PARAMS = LOGREG_PARAMS

    def __init__(self, C: float = 0.01, max_iter: int = 1000, num_classes: int | None = None, seed: int = 0) -> None:
        super().__init__(num_classes, seed)
        v = self._check(C=C, max_iter=max_iter)
        self.C, self.max_iter = v["C"], v["max_iter"]
        self.coef_: np.ndarray | None = None
        self.intercept_: np.ndarray | None = None
        self.n_iter_: int | None = None  # lbfgs iterations of the last fit

    def library_notes(self, where: str = "") -> list[str]:
        """One line when the last fit stopped at ``max_iter`` before converging (its scores differ from a
        converged fit's), else nothing. Read from the fitted state, so it holds whatever thread fitted it
        (Python's warning filters are process-wide and not thread-safe)."""
        if self.n_iter_ is None or self.n_iter_ < self.max_iter:
            return []
        from ..notices import convergence_line
        return [convergence_line(where, f"lbfgs stopped at max_iter={self.max_iter} iterations")]

    @classmethod
    def supports(cls, loss_name: str) -> bool:
        """Whether logreg can train with ``loss_name`` at its defaults: its record declares ``weight_only``.

        logreg can only express class weights, so it takes the losses that are cross-entropy with
        per-class weights (``ce``, ``weighted-ce``, ``class-balanced`` with ``base=ce``).
        """
        rec = get_strategy(loss_name)
        return rec.family == "loss" and rec.weight_only(rec.defaults())

    def _refuse(self, loss_name: str) -> ConfigError:
        takes = [r.name for r in list_strategies("loss") if r.weight_only(r.defaults())]
        return ConfigError(
            f"head logreg cannot train with loss {loss_name!r}: use head linear or mlp for loss {loss_name} "
            f"(logreg supports {', '.join(takes)})"
        )

    def _class_weights(self, loss: nn.Module | None, loss_name: str, counts: np.ndarray) -> np.ndarray | None:
        if not self.supports(loss_name):
            raise self._refuse(loss_name)
        if loss is None:
            loss = _default_loss(loss_name, counts)
        if isinstance(loss, ClassBalancedLoss):
            if loss.base != "ce":
                raise self._refuse(f"class-balanced:base={loss.base}")
            return loss.weight.detach().cpu().numpy().astype(np.float64)
        if isinstance(loss, CrossEntropy):  # also WeightedCrossEntropy
            return None if loss.weight is None else loss.weight.detach().cpu().numpy().astype(np.float64)
        raise self._refuse(type(loss).__name__)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        loss: nn.Module | None = None,
        sampler: Any = None,
        sample_weight: np.ndarray | None = None,
        loss_name: str = "ce",
        seed: int | None = None,
    ) -> "LogRegHead":
        """Fit on ``X (N, D)`` and hard or soft labels ``y``.

        Class weights of ``loss`` (or of ``loss_name``'s defaults) become
        sample weights. A ``sampler`` is honoured exactly in expectation: one
        epoch's draws are counted and used as sample weights. Soft labels are
        fitted exactly by giving each sample one row per class weighted by its
        target probability (the log-loss is linear in the target).
        """
        X = _check_X(X)
        n = X.shape[0]
        tg = _Targets(y, n, self.num_classes)
        sw = _check_sample_weight(sample_weight, n)
        cw = self._class_weights(loss, loss_name, tg.counts)
        seed = self.seed if seed is None else int(seed)
        k = tg.k
        if k == 2:
            self._require_positives(tg.counts[1])
        present = np.flatnonzero(tg.counts > 0)
        if present.size < k:
            raise DataError(
                f"logreg needs every class in training; classes {sorted(set(range(k)) - set(present.tolist()))} are absent"
            )
        self.num_classes = k
        self._fit_scaler(X)
        Xs = self._transform(X)
        row_w = np.ones(n) if sw is None else sw.copy()
        if sampler is not None:
            row_w *= _sampler_counts(sampler, tg.hard, seed)
        if tg.is_hard:
            Xfit, yfit, wfit = Xs, tg.hard, row_w * (1.0 if cw is None else cw[tg.hard])
        else:
            cls = np.repeat(np.arange(k)[None, :], n, 0)
            wmat = tg.soft * row_w[:, None] * (1.0 if cw is None else cw[None, :])
            keep = wmat > 0
            Xfit = np.repeat(Xs, k, 0)[keep.reshape(-1)]
            yfit, wfit = cls[keep], wmat[keep]
        if np.unique(yfit[wfit > 0]).size < 2:
            raise DataError("after weighting only one class has positive weight; logreg needs two")
        clf = LogisticRegression(C=self.C, max_iter=self.max_iter, solver="lbfgs", tol=1e-4)
        clf.fit(Xfit, yfit, sample_weight=wfit)
        self.n_iter_ = int(np.max(clf.n_iter_))
        coef = np.asarray(clf.coef_, dtype=np.float64)
        inter = np.asarray(clf.intercept_, dtype=np.float64)
        if k > 2 and clf.classes_.size != k:  # a class lost all weight
            raise DataError(f"logreg saw classes {clf.classes_.tolist()} of {k}")
        self.coef_, self.intercept_ = coef, inter
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Logit ``(N,)`` (binary) or per-class scores ``(N, C)``."""
        if self.coef_ is None or self.intercept_ is None:
            raise ConfigError("head 'logreg' is not fitted; call fit(X, y) first")
        Xs = self._transform(X)
        z = Xs @ self.coef_.T + self.intercept_
        return z[:, 0] if self.coef_.shape[0] == 1 else z

    def to_arrays(self) -> dict[str, np.ndarray]:
        if self.coef_ is None or self.mean_ is None or self.scale_ is None or self.intercept_ is None:
            raise ConfigError("head 'logreg' is not fitted; nothing to save")
        return {
            "coef": self.coef_.copy(),
            "intercept": self.intercept_.copy(),
            **self._scaler_arrays(),
        }

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self._require(arrays, ("coef", "intercept"))
        self._load_scaler(arrays)
        coef = arrays["coef"].astype(np.float64)
        inter = arrays["intercept"].astype(np.float64).reshape(-1)
        if coef.ndim != 2 or coef.shape[1] != self.mean_.shape[0] or inter.shape[0] != coef.shape[0]:  # type: ignore[union-attr]
            raise BundleError(f"logreg arrays disagree: coef {coef.shape}, intercept {inter.shape}, mean {self.mean_.shape}")  # type: ignore[union-attr]
        self.coef_, self.intercept_ = coef, inter


def _build_logreg(ctx: StrategyContext, **params: Any) -> LogRegHead:
    return LogRegHead(**params, num_classes=ctx.num_classes, seed=ctx.seed)


register_strategy(
    StrategyRecord(
        name="logreg",
        family="head",
        description="L2 logistic regression (scikit-learn lbfgs) on standardised embeddings; class-weight losses only.",
        reference="scikit-learn LogisticRegression",
        params=LOGREG_PARAMS,
        build=_build_logreg,
        modes=("head",),
        any_loss=False,  # class-weight losses only: a loss record's ``weight_only``
        takes_sampler=False,  # fits all rows at once
        load=LogRegHead.from_arrays,
        saved=SavedHead({**SCALER_ARRAYS, "coef": Arr(("C", "D")), "intercept": Arr(("C",))}),
    )
)

# After logreg's record, so the registry lists logreg, linear, mlp in that order.
from .torch_heads import LinearHead, MLPHead  # noqa: E402,F401 - re-exported for old imports
