"""Classifier heads on cached embeddings: ``logreg``, ``linear`` and ``mlp``.

A head standardises the features itself (mean/scale stored with its weights),
trains on ``(X, y)`` with the recipe's loss and sampler, and scores new
embeddings. Everything it needs to predict is a dict of numpy arrays plus a
JSON-able config (:meth:`to_arrays`, :meth:`get_config`, :meth:`from_arrays`),
so it saves as safetensors + JSON, never pickle.

* ``logreg`` is scikit-learn's :class:`~sklearn.linear_model.LogisticRegression`
  (lbfgs, deterministic). It can only express class weights, so it takes
  ``ce``, ``weighted-ce`` and ``class-balanced`` (with ``base=ce``).
* ``linear`` and ``mlp`` are small torch models trained with AdamW on CPU with
  any loss module. All randomness (init, shuffling, dropout, sampler seeds)
  comes from one local ``torch.Generator`` seeded by ``seed``: the global RNG
  is never read or advanced, and the same seed gives identical outputs.

Labels: ``(N,)`` hard labels (binary or multi-class), ``(N,)`` soft binary
targets in ``[0, 1]`` (mixup), or ``(N, C)`` soft multi-class targets.
Binary heads score with one logit: :meth:`decision_function` and
:meth:`predict_proba` return ``(N,)``; multi-class ones return ``(N, C)``.

Why one file: the three heads share the ``Head`` base (standardisation with
training-range clipping, target normalisation, safetensors serialisation) and
two of them the torch training loop. A new head family (patch, normality,
fusion) goes in its own module and registers a record naming the
``representation`` it consumes.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

from ..errors import BundleError, ConfigError, DataError
from .losses import ClassBalancedLoss, CrossEntropy
from .registry import Param, StrategyContext, StrategyRecord, get_strategy, register_strategy

__all__ = [
    "Head",
    "LogRegHead",
    "LinearHead",
    "MLPHead",
    "head_from_arrays",
]


# --------------------------------------------------------------------------- #
# input checks
# --------------------------------------------------------------------------- #
def _check_X(X: Any, d: int | None = None) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise DataError(f"features must have shape (N, D); got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"features must be numeric; got dtype {arr.dtype}")
    if d is not None and arr.shape[1] != d:
        raise DataError(f"features have {arr.shape[1]} dimensions but the head was fitted on {d}")
    if not np.all(np.isfinite(arr)):
        raise DataError("features contain NaN or infinity")
    return arr


def clip_to_training(Z: np.ndarray, low: np.ndarray | None, high: np.ndarray | None) -> np.ndarray:
    """Clip standardised features ``Z`` ``(N, D)`` to the range each spanned in training.

    No single feature can then decide a score (issue 12 §3): a feature that was constant in
    training (``low == high``) adds exactly what it added in training whatever its value later,
    and a near-constant one (a training SD of 1.3e-5 once turned a test value into z = 23,547)
    at most what its most extreme training value did (about ``sqrt(n_train)``). Training rows
    are inside their own range, so fitting is unchanged.

    Chosen over dropping features below an SD threshold (any threshold leaves features just above
    it unbounded) and over flooring the SD (a floored constant feature still reaches the score
    through its never-trained weight), by a measurement on efficientnet_lite0 embeddings of
    Magnetic-tile (400 random images, 3 random splits of 240 training / 160 test): 40 of 1,280
    dimensions are constant and 48 below 1 % of the median SD on the training split; unclipped,
    test values reach z = 3,166 and move single scores by up to 0.9999; 0.2-0.6 % of test values
    lie outside their training range; clipping raised test AP on all six (split, head) pairs
    (logreg 0.697 → 0.786, 0.725 → 0.769, 0.738 → 0.767; linear 0.659 → 0.751, 0.669 → 0.718,
    0.696 → 0.745).

    Parameters
    ----------
    Z
        Standardised features ``(N, D)``.
    low, high
        ``(D,)`` smallest and largest standardised training value per feature; ``None``: no clipping
        (heads saved before the bounds existed).
    """
    if low is None or high is None:
        return Z
    return np.clip(Z, low, high)


class _Targets:
    """Labels normalised once: soft matrix, hard labels (for samplers), class count."""

    def __init__(self, y: Any, n: int, num_classes: int | None) -> None:
        arr = np.asarray(y)
        if arr.shape[:1] != (n,) or arr.ndim not in (1, 2):
            raise DataError(f"labels must have shape ({n},) or ({n}, C); got {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise DataError(f"labels must be numeric; got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise DataError("labels contain NaN or infinity")
        if arr.ndim == 2:
            k = arr.shape[1]
            if k < 2 or np.any(arr < 0) or np.any(arr > 1):
                raise DataError("soft (N, C) labels must have C >= 2 columns with values in [0, 1]")
            if num_classes is not None and k != num_classes:
                raise DataError(f"labels have {k} columns but the head expects {num_classes} classes")
            self.k, self.soft = k, arr
            self.hard = arr.argmax(1)
            self.is_hard = bool(np.all((arr == 0) | (arr == 1)) and np.all(arr.sum(1) == 1))
        elif np.all(arr == np.round(arr)):
            if np.any(arr < 0):
                raise DataError(f"labels must be class indices >= 0; got minimum {arr.min():g}")
            top = int(arr.max()) + 1 if n else 2
            k = max(2, top) if num_classes is None else num_classes
            if top > k:
                raise DataError(f"label {top - 1} is out of range for {k} classes; valid: 0..{k - 1}")
            self.k, self.hard, self.is_hard = k, arr.astype(np.int64), True
            self.soft = np.eye(k)[self.hard]
        else:
            if np.any(arr < 0) or np.any(arr > 1):
                raise DataError("soft binary labels must lie in [0, 1]")
            if num_classes not in (None, 2):
                raise DataError(f"soft (N,) labels are binary but the head expects {num_classes} classes")
            self.k, self.is_hard = 2, False
            self.soft = np.stack([1.0 - arr, arr], 1)
            self.hard = (arr >= 0.5).astype(np.int64)
        self.counts = self.soft.sum(0)

    def torch_target(self) -> Tensor:
        """What a loss module gets: binary → float (N,); multi-class → long (N,) or float (N, C)."""
        if self.k == 2:
            return torch.from_numpy(self.soft[:, 1].astype(np.float32))
        if self.is_hard:
            return torch.from_numpy(self.hard)
        return torch.from_numpy(self.soft.astype(np.float32))


def _check_sample_weight(sample_weight: Any, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    sw = np.asarray(sample_weight, dtype=np.float64)
    if sw.shape != (n,) or not np.all(np.isfinite(sw)) or np.any(sw < 0):
        raise DataError(f"sample_weight must be ({n},) finite and >= 0; got shape {sw.shape}")
    return sw


def _default_loss(loss_name: str, counts: np.ndarray) -> nn.Module:
    """The registry's default-parameter loss for ``loss_name`` on these counts."""
    rec = get_strategy(loss_name)
    if rec.family != "loss":
        raise ConfigError(f"{loss_name!r} is a {rec.family}, not a loss")
    ctx = StrategyContext(class_counts=tuple(int(round(c)) for c in counts))
    return rec.build(ctx, **rec.defaults())


def _sampler_counts(sampler: Any, labels: np.ndarray, seed: int) -> np.ndarray:
    """How often one epoch of ``sampler`` draws each sample."""
    idx = np.fromiter((int(i) for i in sampler.make(labels, num_samples=None, seed=seed)), dtype=np.int64)
    return np.bincount(idx, minlength=len(labels)).astype(np.float64)


# --------------------------------------------------------------------------- #
# base class
# --------------------------------------------------------------------------- #
class Head:
    """Common API of every head; see the module docstring."""

    name: ClassVar[str] = ""
    _param_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, num_classes: int | None = None, seed: int = 0) -> None:
        if num_classes is not None and (int(num_classes) != num_classes or num_classes < 2):
            raise ConfigError(f"num_classes={num_classes!r} is invalid; valid: an int >= 2")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.seed = int(seed)
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.low_: np.ndarray | None = None  # (D,) smallest / largest standardised training value
        self.high_: np.ndarray | None = None

    # -- standardisation (StandardScaler's statistics, applied by hand so the
    #    fitted head and a reloaded one run byte-identical arithmetic)
    def _fit_scaler(self, X: np.ndarray, sample_weight: np.ndarray | None = None) -> None:
        sc = StandardScaler().fit(X.astype(np.float64))
        self.mean_ = np.asarray(sc.mean_, dtype=np.float64)
        self.scale_ = np.asarray(sc.scale_, dtype=np.float64)
        self.low_ = self.high_ = None
        Z = self._transform(X)
        self.low_, self.high_ = Z.min(0), Z.max(0)

    def _transform(self, X: Any) -> np.ndarray:
        """Standardised features, each clipped to the range it spanned in training (see :func:`clip_to_training`)."""
        if self.mean_ is None or self.scale_ is None:
            raise ConfigError(f"head {self.name!r} is not fitted; call fit(X, y) first")
        X = _check_X(X, self.mean_.shape[0])
        Z = (X.astype(np.float64) - self.mean_) / self.scale_
        return clip_to_training(Z, self.low_, self.high_)

    def _scaler_arrays(self) -> dict[str, np.ndarray]:
        out = {"scaler.mean": self.mean_.copy(), "scaler.scale": self.scale_.copy()}  # type: ignore[union-attr]
        if self.low_ is not None and self.high_ is not None:
            out["scaler.low"], out["scaler.high"] = self.low_.copy(), self.high_.copy()
        return out

    @property
    def is_binary(self) -> bool:
        return self.num_classes in (None, 2)

    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names}

    def get_config(self) -> dict[str, Any]:
        """JSON-able description; with :meth:`to_arrays` enough to rebuild the head."""
        return {"head": self.name, "params": self.params(), "num_classes": self.num_classes, "seed": self.seed}

    def to_arrays(self) -> dict[str, np.ndarray]:  # pragma: no cover - overridden
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Alias of :meth:`to_arrays`."""
        return self.to_arrays()

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> "Head":
        """Rebuild a fitted head from :meth:`to_arrays` and :meth:`get_config` output."""
        if config.get("head") != cls.name:
            raise BundleError(f"config is for head {config.get('head')!r}, not {cls.name!r}")
        head = cls(**dict(config.get("params", {})), num_classes=config.get("num_classes"), seed=config.get("seed", 0))
        head._load_arrays({k: np.asarray(v) for k, v in arrays.items()})
        return head

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _require(self, arrays: Mapping[str, np.ndarray], keys: Sequence[str]) -> None:
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise BundleError(f"head {self.name!r} arrays lack {', '.join(missing)}; got {', '.join(arrays) or 'none'}")

    def _load_scaler(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._require(arrays, ("scaler.mean", "scaler.scale"))
        self.mean_ = arrays["scaler.mean"].astype(np.float64)
        self.scale_ = arrays["scaler.scale"].astype(np.float64)
        low, high = arrays.get("scaler.low"), arrays.get("scaler.high")  # absent in bundles made before them
        if (low is None) != (high is None) or (low is not None and (np.shape(low) != self.mean_.shape
                                                                     or np.shape(high) != self.mean_.shape)):
            raise BundleError(f"head {self.name!r}: scaler.low / scaler.high must both be present with shape "
                              f"{self.mean_.shape}")
        self.low_ = None if low is None else np.asarray(low, dtype=np.float64)
        self.high_ = None if high is None else np.asarray(high, dtype=np.float64)

    def decision_function(self, X: Any) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def predict_proba(self, X: Any) -> np.ndarray:
        """Positive-class probability ``(N,)`` (binary) or class probabilities ``(N, C)``, float64."""
        z = self.decision_function(X)
        if z.ndim == 1:
            # 1/(1+exp(-z)) without overflow warnings for large |z|.
            return np.exp(-np.logaddexp(0.0, -z))
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


# --------------------------------------------------------------------------- #
# logistic regression
# --------------------------------------------------------------------------- #
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
    _param_names = ("C", "max_iter")
    SUPPORTED_LOSSES: ClassVar[tuple[str, ...]] = ("ce", "weighted-ce", "class-balanced")

    def __init__(self, C: float = 0.01, max_iter: int = 1000, num_classes: int | None = None, seed: int = 0) -> None:
        super().__init__(num_classes, seed)
        if not (isinstance(C, (int, float)) and math.isfinite(C) and C > 0):
            raise ConfigError(f"logreg: C={C!r} is invalid; valid: float in (0, inf)")
        if int(max_iter) != max_iter or max_iter < 1:
            raise ConfigError(f"logreg: max_iter={max_iter!r} is invalid; valid: int in [1, inf)")
        self.C = float(C)
        self.max_iter = int(max_iter)
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
        """Whether logreg can train with ``loss_name`` (it only knows class weights)."""
        return loss_name in cls.SUPPORTED_LOSSES

    def _refuse(self, loss_name: str) -> ConfigError:
        return ConfigError(
            f"head logreg cannot train with loss {loss_name!r}: use head linear or mlp for loss {loss_name} "
            f"(logreg supports {', '.join(self.SUPPORTED_LOSSES)})"
        )

    def _class_weights(self, loss: nn.Module | None, loss_name: str, counts: np.ndarray) -> np.ndarray | None:
        if not self.supports(loss_name):
            raise self._refuse(loss_name)
        if loss is None:
            if loss_name == "ce":
                return None
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


# --------------------------------------------------------------------------- #
# torch heads
# --------------------------------------------------------------------------- #
class _Dense(nn.Module):
    # Not nn.Linear: its constructor initialises from (and advances) the
    # global RNG; we initialise from the head's own generator instead.
    def __init__(self, d_in: int, d_out: int, generator: torch.Generator | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_out, d_in))
        self.bias = nn.Parameter(torch.empty(d_out))
        if generator is not None:  # nn.Linear's default init, drawn from `generator`
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(d_in)
            with torch.no_grad():
                self.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class _Net(nn.Module):
    def __init__(self, d_in: int, d_out: int, hidden: int, dropout: float, generator: torch.Generator | None) -> None:
        super().__init__()
        self.dropout = dropout
        if hidden:
            self.fc1: _Dense | None = _Dense(d_in, hidden, generator)
            self.fc = _Dense(hidden, d_out, generator)
        else:
            self.fc1 = None
            self.fc = _Dense(d_in, d_out, generator)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.fc1 is not None:
            x = F.relu(self.fc1(x))
            if self.training and self.dropout > 0:
                # nn.Dropout draws from the global RNG; draw the mask from ours.
                keep = torch.rand(x.shape, generator=generator) >= self.dropout
                x = x * keep / (1.0 - self.dropout)
        return self.fc(x)


@contextlib.contextmanager
def _threads_for(work: int) -> Iterator[None]:
    """Run tiny problems on one intra-op thread, restoring the setting after.

    Each step of a small head is a few-microsecond matmul; spreading it over
    threads costs more in synchronisation than it saves, and on a busy machine
    (oversubscribed cores) it was measured 10-40x slower than one thread.
    """
    before = torch.get_num_threads()
    if work >= _PARALLEL_WORK or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_PARALLEL_WORK = 4_000_000  # batch * D * width above which threads pay off


class _TorchHead(Head):
    _hidden: int = 0

    def __init__(
        self,
        epochs: int = 200,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(num_classes, seed)
        self.epochs = _int_param(self.name, "epochs", epochs, 1)
        self.lr = _float_param(self.name, "lr", lr, 0.0, low_open=True)
        self.weight_decay = _float_param(self.name, "weight_decay", weight_decay, 0.0)
        self.batch_size = _int_param(self.name, "batch_size", batch_size, 1)
        self.dropout = 0.0
        self.net_: _Net | None = None

    def _make_net(self, d_in: int, d_out: int, generator: torch.Generator | None) -> _Net:
        return _Net(d_in, d_out, self._hidden, self.dropout, generator)

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
    ) -> "_TorchHead":
        """Train with AdamW on minibatches of standardised ``X``.

        Parameters
        ----------
        X
            ``(N, D)`` embeddings.
        y
            Hard labels ``(N,)``, soft binary targets ``(N,)`` or soft ``(N, C)``.
        loss
            Loss module ``(logits, target) -> scalar``; None builds ``loss_name``
            with its default parameters on the training class counts.
        sampler
            Object with ``make(labels, *, num_samples=None, seed=0)``; when
            given each epoch's minibatches are drawn from a fresh sampler.
            Otherwise every epoch is a shuffled pass over the data.
        sample_weight
            Per-sample weights ``(N,)``; the loss is then the mean of weighted
            per-sample losses (the loss must accept ``reduction="none"``).
        seed
            Seeds the local generator (default: the head's ``seed``).
        """
        X = _check_X(X)
        n = X.shape[0]
        tg = _Targets(y, n, self.num_classes)
        sw = _check_sample_weight(sample_weight, n)
        seed = self.seed if seed is None else int(seed)
        if loss is None:
            loss = CrossEntropy() if loss_name == "ce" else _default_loss(loss_name, tg.counts)
        if sw is not None:
            if not hasattr(loss, "reduction"):
                raise ConfigError(f"sample_weight needs a loss with a `reduction` attribute; {type(loss).__name__} has none")
            loss = copy.copy(loss)  # shallow: shares buffers, own reduction
            loss.reduction = "none"
        self.num_classes = k = tg.k
        self._fit_scaler(X)
        Xt = torch.from_numpy(self._transform(X).astype(np.float32))
        yt = tg.torch_target()
        wt = None if sw is None else torch.from_numpy(sw.astype(np.float32))

        g = torch.Generator().manual_seed(seed)
        net = self._make_net(X.shape[1], 1 if k == 2 else k, g)
        decay = [p for nm, p in net.named_parameters() if nm.endswith("weight")]
        rest = [p for nm, p in net.named_parameters() if not nm.endswith("weight")]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=self.lr,
        )
        full_batch = sampler is None and self.batch_size >= n
        width = self._hidden or (1 if k == 2 else k)
        with _threads_for(min(self.batch_size, n) * X.shape[1] * width):
            self._train(net, opt, loss, Xt, yt, wt, tg, sampler, g, full_batch, k)
        if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
            raise DataError(f"head {self.name!r} diverged (non-finite weights); lower lr={self.lr:g}")
        self.net_ = net
        return self

    def _train(
        self,
        net: _Net,
        opt: torch.optim.Optimizer,
        loss: nn.Module,
        Xt: Tensor,
        yt: Tensor,
        wt: Tensor | None,
        tg: _Targets,
        sampler: Any,
        g: torch.Generator,
        full_batch: bool,
        k: int,
    ) -> None:
        n = Xt.shape[0]
        net.train()
        for _ in range(self.epochs):
            if full_batch:
                batches: Sequence[Tensor | None] = [None]
            else:
                if sampler is None:
                    order = torch.randperm(n, generator=g)
                else:
                    sub = int(torch.randint(0, 2**62, (1,), generator=g))
                    order = torch.as_tensor(list(sampler.make(tg.hard, num_samples=None, seed=sub)), dtype=torch.long)
                batches = torch.split(order, self.batch_size)
            for idx in batches:
                xb = Xt if idx is None else Xt.index_select(0, idx)
                yb = yt if idx is None else yt.index_select(0, idx)
                out = net(xb, g)
                out = out[:, 0] if k == 2 else out
                value = loss(out, yb)
                if wt is not None:
                    wb = wt if idx is None else wt.index_select(0, idx)
                    value = (value.reshape(-1) * wb).mean()
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
        net.eval()

    def decision_function(self, X: Any) -> np.ndarray:
        """Logit ``(N,)`` (binary) or per-class logits ``(N, C)``, as float64."""
        if self.net_ is None:
            raise ConfigError(f"head {self.name!r} is not fitted; call fit(X, y) first")
        Xt = torch.from_numpy(self._transform(X).astype(np.float32))
        with torch.no_grad():
            out = self.net_(Xt).double().numpy()
        return out[:, 0] if out.shape[1] == 1 else out

    def to_arrays(self) -> dict[str, np.ndarray]:
        if self.net_ is None or self.mean_ is None or self.scale_ is None:
            raise ConfigError(f"head {self.name!r} is not fitted; nothing to save")
        arrays = {k: v.detach().cpu().numpy().copy() for k, v in self.net_.state_dict().items()}
        arrays.update(self._scaler_arrays())
        return arrays

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self._load_scaler(arrays)
        self._require(arrays, ("fc.weight", "fc.bias"))
        d_out = arrays["fc.weight"].shape[0]
        net = self._make_net(self.mean_.shape[0], d_out, None)  # type: ignore[union-attr]
        state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in arrays.items() if not k.startswith("scaler.")}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BundleError(f"head {self.name!r} arrays do not fit its shape: {exc}") from None
        net.eval()
        self.net_ = net


def _int_param(owner: str, name: str, value: Any, low: int, high: int | None = None) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer)) or value != value
            or int(value) != value or value < low or (high is not None and value > high)):
        raise ConfigError(f"{owner}: {name}={value!r} is invalid; valid: int in [{low}, {high if high is not None else 'inf'}"
                          f"{']' if high is not None else ')'}")
    return int(value)


def _float_param(owner: str, name: str, value: Any, low: float, high: float = math.inf,
                 low_open: bool = False, high_open: bool = False) -> float:
    left, right = ("(" if low_open else "["), (")" if high_open or math.isinf(high) else "]")
    valid = f"float in {left}{low:g}, {'inf' if math.isinf(high) else f'{high:g}'}{right}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}: {name}={value!r} is invalid; valid: {valid}") from None
    if (not math.isfinite(v) or v < low or (low_open and v <= low) or v > high or (high_open and v >= high)):
        raise ConfigError(f"{owner}: {name}={value!r} is invalid; valid: {valid}")
    return v


class LinearHead(_TorchHead):
    """A linear layer on standardised embeddings trained with any loss (AdamW, CPU).

    Parameters
    ----------
    epochs, lr, weight_decay, batch_size
        Training schedule; ``batch_size >= N`` trains full-batch.
    """

    name = "linear"
    _param_names = ("epochs", "lr", "weight_decay", "batch_size")


class MLPHead(_TorchHead):
    """One hidden ReLU layer with dropout on standardised embeddings.

    Parameters
    ----------
    hidden
        Hidden width, ``>= 1``.
    dropout
        Drop probability in ``[0, 1)`` after the hidden layer.
    """

    name = "mlp"
    _param_names = ("epochs", "lr", "weight_decay", "batch_size", "hidden", "dropout")

    def __init__(
        self,
        epochs: int = 100,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        hidden: int = 128,
        dropout: float = 0.1,
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(epochs, lr, weight_decay, batch_size, num_classes, seed)
        self.hidden = _int_param("mlp", "hidden", hidden, 1, MAX_HIDDEN)
        self._hidden = self.hidden
        self.dropout = _float_param("mlp", "dropout", dropout, 0.0, 1.0, high_open=True)


_HEADS: dict[str, type[Head]] = {"logreg": LogRegHead, "linear": LinearHead, "mlp": MLPHead}


def head_from_arrays(arrays: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> Head:
    """Rebuild any head from saved arrays and its :meth:`Head.get_config`."""
    name = config.get("head")
    if name not in _HEADS:
        raise BundleError(f"unknown head {name!r} in config; valid: {', '.join(_HEADS)}")
    return _HEADS[name].from_arrays(arrays, config)


# --------------------------------------------------------------------------- #
# registry
# --------------------------------------------------------------------------- #
#: Widest MLP hidden layer: the weights of one layer size memory (16384 x 1280 floats = 84 MB).
MAX_HIDDEN = 16384

_TRAIN_PARAMS = {
    "epochs": Param(200, kind="int", low=1, doc="passes over the training data"),
    "lr": Param(1e-2, kind="float", low=0.0, low_open=True, doc="AdamW learning rate"),
    "weight_decay": Param(1e-4, kind="float", low=0.0, doc="AdamW decoupled weight decay (weights only)"),
    "batch_size": Param(256, kind="int", low=1, doc="minibatch size; >= N trains full-batch"),
}


def _build_logreg(ctx: StrategyContext, C: float = 0.01, max_iter: int = 1000) -> LogRegHead:
    return LogRegHead(C, max_iter, num_classes=ctx.num_classes, seed=ctx.seed)


def _build_linear(ctx: StrategyContext, **params: Any) -> LinearHead:
    return LinearHead(**params, num_classes=ctx.num_classes, seed=ctx.seed)


def _build_mlp(ctx: StrategyContext, **params: Any) -> MLPHead:
    return MLPHead(**params, num_classes=ctx.num_classes, seed=ctx.seed)


register_strategy(
    StrategyRecord(
        name="logreg",
        family="head",
        description="L2 logistic regression (scikit-learn lbfgs) on standardised embeddings; class-weight losses only.",
        reference="scikit-learn LogisticRegression",
        params={
            "C": Param(0.01, kind="float", low=0.0, low_open=True, doc="inverse L2 strength on standardised features (small n, many features: strong L2)"),
            "max_iter": Param(1000, kind="int", low=1, doc="lbfgs iterations"),
        },
        build=_build_logreg,
        modes=("head",),
        any_loss=False,  # class-weight losses only: a loss record's ``weight_only``
        takes_sampler=False,  # fits all rows at once
    )
)

register_strategy(
    StrategyRecord(
        name="linear",
        family="head",
        description="Linear layer on standardised embeddings trained with the recipe's loss and sampler (torch, CPU).",
        reference="linear probe (AdamW)",
        params=dict(_TRAIN_PARAMS),
        build=_build_linear,
        modes=("head",),
    )
)

register_strategy(
    StrategyRecord(
        name="mlp",
        family="head",
        description="One-hidden-layer MLP with dropout on standardised embeddings, any loss and sampler (torch, CPU).",
        reference="MLP probe (AdamW)",
        params={
            **_TRAIN_PARAMS,
            # Fewer epochs and a narrower layer than the linear head keep a fit within seconds on 2 cores.
            "epochs": Param(100, kind="int", low=1, doc="passes over the training data"),
            "hidden": Param(128, kind="int", low=1, high=MAX_HIDDEN, doc="hidden width"),
            "dropout": Param(0.1, kind="float", low=0.0, high=1.0, doc="dropout after the hidden layer, in [0, 1)"),
        },
        build=_build_mlp,
        modes=("head",),
    )
)
