"""The base of every head: the :class:`Head` API, input and label checks, standardisation, and rebuilding.

Owns what all heads share, the global ones (:mod:`~imbvision.strategies.heads`,
:mod:`~imbvision.strategies.torch_heads`) and the patch-level ones
(:mod:`~imbvision.strategies.patch_heads`, :mod:`~imbvision.strategies.normality_head`):

* :class:`Head` – ``fit`` / ``decision_function`` / ``predict_proba``, standardisation with
  training-range clipping (:func:`clip_to_training`), ``get_config`` / ``to_arrays`` /
  ``from_arrays`` (safetensors + JSON, never pickle), and the constructor's parameter check
  against the head's strategy record (``PARAMS``, the record's own table).
* :func:`head_from_arrays` – rebuilds any saved head by asking its strategy record how
  (``StrategyRecord.load``), so a new head is one module with its record.
* The input checks (features, hard or soft labels, sample weights) and the registry's default loss.

Labels: ``(N,)`` hard labels (binary or multi-class), ``(N,)`` soft binary targets in ``[0, 1]``
(mixup), or ``(N, C)`` soft multi-class targets. Binary heads score with one logit:
:meth:`Head.decision_function` and :meth:`Head.predict_proba` return ``(N,)``; multi-class ones ``(N, C)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

from ..errors import BundleError, ConfigError, DataError
from .params import Param, check_params
from .registry import StrategyContext, get_strategy, list_strategies

__all__ = ["Head", "head_from_arrays", "clip_to_training", "Arr", "SavedHead", "SCALER_ARRAYS", "finite_number"]


# --------------------------------------------------------------------------- #
# how a head is saved: declared on its record (``saved``), checked at load by imbvision.bundle_heads
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Arr:
    """One saved array: its shape as symbols (``"D"`` = the width the head sees, ``"C"`` = output rows,
    ``"n+"`` = at least one row, an int = that size), whether it is optional and whether it must be > 0."""

    shape: tuple[Any, ...]
    optional: bool = False
    positive: bool = False


#: A rule on a saved head's config beyond its strategy parameters: ``(key, test, what is valid)``, or
#: ``(config, patch grid or None) -> "field: why" or None``.
ConfigRule = tuple[str, Callable[[Any], bool], str] | Callable[[Mapping[str, Any], Any], str | None]


@dataclass(frozen=True)
class SavedHead:
    """What a head's saved arrays and config must satisfy before the head is rebuilt from them.

    A head's record declares it (``StrategyRecord.saved``) beside ``load``;
    :func:`imbvision.bundle_heads.check_head_bundle` applies it when a bundle is opened.

    Attributes
    ----------
    arrays
        ``{array key: Arr}`` of :meth:`Head.to_arrays` (nested heads' arrays are checked by their own record).
    config
        Rules on config numbers beyond the strategy parameters (which the record's table checks).
    nested
        The heads this head holds: ``(config key, array prefix, head name or None for "as its config
        says", width)``, width ``"global"`` or ``"patch"`` (the feature width the nested head sees).
    """

    arrays: Mapping[str, Arr] = field(default_factory=dict)
    config: tuple[ConfigRule, ...] = ()
    nested: tuple[tuple[str, str, str | None, str], ...] = ()


#: The standardisation arrays every :class:`Head` that standardises saves (:meth:`Head._scaler_arrays`).
SCALER_ARRAYS = {"scaler.mean": Arr(("D",)), "scaler.scale": Arr(("D",), positive=True),
                 "scaler.low": Arr(("D",), optional=True), "scaler.high": Arr(("D",), optional=True)}


def finite_number(v: Any) -> bool:
    """Whether ``v`` is a finite int or float (not a bool): a config rule's test."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)

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
    #: The head's strategy record's parameter table: the one place its constructor's values are checked.
    PARAMS: ClassVar[Mapping[str, Param]] = {}

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

    def _check(self, **values: Any) -> dict[str, Any]:
        """The constructor's arguments checked by the record's table (:data:`PARAMS`), as the parser does."""
        return check_params(self.name, self.PARAMS, values)

    def _require_positives(self, n_positive: float) -> None:
        """Refuse training labels without a positive (a clear error instead of a one-class fit)."""
        if n_positive <= 0:
            alone = [r.name for r in list_strategies("head") if not r.needs_positives]
            raise DataError(f"head {self.name!r} needs positive training images; the labels hold none"
                            + (f" (with none, use head {' or '.join(repr(a) for a in alone)})" if alone else ""))

    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.PARAMS}

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




def head_from_arrays(arrays: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> Head:
    """Rebuild any saved head from its arrays and :meth:`Head.get_config`, as its strategy record says (``load``).

    Raises
    ------
    BundleError
        When ``config`` names no registered head (the valid ones are listed).
    """
    name = config.get("head")
    heads = {r.name: r for r in list_strategies("head")}
    if name not in heads:
        raise BundleError(f"unknown head {name!r} in config; valid: {', '.join(heads)}")
    return heads[name].load(arrays, config)  # type: ignore[misc]
