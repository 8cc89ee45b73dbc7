"""Class-balanced sampling: ``balanced-sampler`` and a distributed weighted sampler.

The single-process sampler is PyTorch's own
:class:`torch.utils.data.WeightedRandomSampler`; this module only chooses the
per-sample weights. PyTorch has no *distributed* weighted sampler
(pytorch/pytorch#77154) and MONAI's ``DistributedWeightedRandomSampler`` only
weights samples inside each rank's fixed shard, so the class mix of an epoch
depends on how the shard happened to fall. :class:`DistributedWeightedSampler`
instead makes one global weighted draw per epoch, identical on every rank, and
gives each rank a disjoint slice of it.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from ..errors import ConfigError, DataError
from .params import check_params
from .registry import Param, StrategyContext, StrategyRecord, TrainingPrior, register_strategy, weight_shift

__all__ = [
    "MODES",
    "balanced_sample_weights",
    "BalancedSampler",
    "DistributedWeightedSampler",
]

MODES: tuple[str, ...] = ("inverse", "sqrt")

#: The ``balanced-sampler`` record's parameters, also what :class:`BalancedSampler` and
#: :func:`balanced_sample_weights` check their arguments against (one table).
SAMPLER_PARAMS: dict[str, Param] = {
    "mode": Param("inverse", kind="str", choices=MODES,
                  doc="weight per sample 1/n_c (inverse: balanced) or 1/sqrt(n_c) (sqrt: half-way)"),
    "pos_fraction": Param(None, kind="float|none", low=0.0, high=1.0, low_open=True, high_open=True,
                          doc="expected fraction of positives per epoch, in (0, 1); overrides mode"),
    "replacement": Param(True, kind="bool", doc="draw with replacement"),
}


def balanced_sample_weights(
    labels: Sequence[int] | np.ndarray,
    mode: str = "inverse",
    pos_fraction: float | None = None,
) -> np.ndarray:
    """Per-sample weights that re-balance the classes of ``labels``.

    Parameters
    ----------
    labels
        Integer class label of every sample, shape ``(N,)``.
    mode
        ``"inverse"``: weight ``1/n_c`` (every class gets the same expected
        share of draws); ``"sqrt"``: weight ``1/sqrt(n_c)`` (class share
        proportional to ``sqrt(n_c)``, between natural and balanced).
    pos_fraction
        Binary labels only (0/1). When set, positives get total weight
        ``pos_fraction`` and negatives ``1 - pos_fraction``, so the expected
        fraction of positive draws equals it; overrides ``mode``.

    Returns
    -------
    numpy.ndarray
        Float64 weights of shape ``(N,)`` summing to 1.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"labels must be 1-D, got shape {y.shape}")
    if y.size == 0:
        raise DataError("labels are empty; a sampler needs at least one sample")
    v = check_params("balanced-sampler", SAMPLER_PARAMS, {"mode": mode, "pos_fraction": pos_fraction})
    mode, pos_fraction = v["mode"], v["pos_fraction"]
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    if pos_fraction is not None:
        p = float(pos_fraction)
        if not set(classes.tolist()) <= {0, 1}:
            raise DataError(
                f"pos_fraction needs binary 0/1 labels, got classes {classes.tolist()}; "
                f"use mode={mode!r} without pos_fraction for more classes"
            )
        n_pos = int((y == 1).sum())
        n_neg = y.size - n_pos
        if n_pos == 0 or n_neg == 0:
            raise DataError(
                f"pos_fraction={p:g} needs both classes, got {n_neg} negatives and {n_pos} positives"
            )
        w = np.where(y == 1, p / n_pos, (1.0 - p) / n_neg)
        return w.astype(np.float64)
    per_class = 1.0 / counts if mode == "inverse" else 1.0 / np.sqrt(counts)
    w = per_class[inverse].astype(np.float64)
    return w / w.sum()


def _dist_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class DistributedWeightedSampler(Sampler[int]):
    """Weighted sampling with one global draw per epoch, split across ranks.

    Hand-written: PyTorch has no distributed weighted sampler. Every rank
    draws the *same* ``num_samples`` indices with
    ``torch.multinomial(weights, num_samples, replacement, generator)`` where
    the generator is seeded with ``seed + epoch`` (no communication needed),
    then keeps the draw positions ``rank, rank + num_replicas, ...``. The
    ranks' position sets partition the global draw, so the union of all
    shards has exactly the class mix of a single-process weighted draw.
    Interleaving (rather than contiguous blocks) matters without replacement:
    ``multinomial`` then draws heavy items first, and a contiguous split would
    give rank 0 most of them.

    Padding: when ``num_samples`` is not a multiple of ``num_replicas`` the
    global draw is padded to the next multiple by repeating its first draws
    (as :class:`torch.utils.data.DistributedSampler` does), or, with
    ``drop_last=True``, truncated to the previous multiple. With
    ``replacement=False`` indices are therefore unique across ranks only when
    ``num_samples`` is a multiple of ``num_replicas`` or ``drop_last=True``.
    With replacement the same index may appear at several draw positions,
    on one rank or several; that is what drawing with replacement means.

    Parameters
    ----------
    weights
        Non-negative per-sample weights (need not sum to 1).
    num_samples
        Size of the global draw per epoch; default ``len(weights)``.
        (``torch.multinomial`` limits ``len(weights)`` to 2**24, as for
        :class:`~torch.utils.data.WeightedRandomSampler`.)
    num_replicas, rank
        Default: from :mod:`torch.distributed` when initialised, else ``(1, 0)``.
    replacement
        Draw with replacement (default). Without it ``num_samples`` may not
        exceed the number of non-zero weights.
    seed
        Base seed; epoch ``e`` uses ``seed + e``. Must match on all ranks.
    drop_last
        Truncate instead of padding (see above).
    """

    def __init__(
        self,
        weights: Sequence[float] | torch.Tensor | np.ndarray,
        num_samples: int | None = None,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        replacement: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if isinstance(weights, torch.Tensor):
            w = weights.detach().to(dtype=torch.double, device="cpu")
        else:
            w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if w.ndim != 1 or w.numel() == 0:
            raise DataError(f"weights must be a non-empty 1-D sequence, got shape {tuple(w.shape)}")
        if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise DataError("weights must be finite, non-negative and not all zero")
        if num_replicas is None or rank is None:
            world, me = _dist_world()
            num_replicas = world if num_replicas is None else num_replicas
            rank = me if rank is None else rank
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ConfigError(f"num_replicas={num_replicas!r} is invalid; valid: an int >= 1")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ConfigError(f"rank={rank!r} is invalid; valid: an int in [0, {num_replicas - 1}]")
        n = int(w.numel()) if num_samples is None else num_samples
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"num_samples={num_samples!r} is invalid; valid: an int >= 1")
        nonzero = int((w > 0).sum())
        if not replacement and n > nonzero:
            raise ConfigError(
                f"num_samples={n} exceeds the {nonzero} samples with non-zero weight; "
                "valid without replacement: num_samples <= that count (or use replacement=True)"
            )
        if drop_last and n < num_replicas:
            raise ConfigError(
                f"num_samples={n} < num_replicas={num_replicas} with drop_last=True leaves every rank empty"
            )
        self.weights = w
        self.num_samples = n
        self.num_replicas = num_replicas
        self.rank = rank
        self.replacement = bool(replacement)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        if drop_last:
            self.total_size = (n // num_replicas) * num_replicas
        else:
            self.total_size = math.ceil(n / num_replicas) * num_replicas

    @classmethod
    def from_labels(
        cls,
        labels: Sequence[int] | np.ndarray,
        mode: str = "inverse",
        pos_fraction: float | None = None,
        **kw: Any,
    ) -> "DistributedWeightedSampler":
        """Build from class labels with :func:`balanced_sample_weights`."""
        return cls(balanced_sample_weights(labels, mode, pos_fraction), **kw)

    def set_epoch(self, epoch: int) -> None:
        """Select the draw of ``epoch``; call on every rank before iterating."""
        self.epoch = int(epoch)

    def global_draw(self) -> torch.Tensor:
        """The padded (or truncated) global draw of the current epoch, shape ``(total_size,)``."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        draw = torch.multinomial(self.weights, self.num_samples, self.replacement, generator=g)
        if self.total_size > draw.numel():  # pad by wrapping around
            reps = math.ceil(self.total_size / draw.numel())
            draw = draw.repeat(reps)
        return draw[: self.total_size]

    def positions(self) -> range:
        """Positions in :meth:`global_draw` that belong to this rank."""
        return range(self.rank, self.total_size, self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        draw = self.global_draw()
        return iter(draw[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.total_size // self.num_replicas


class BalancedSampler:
    """Factory for class-balanced samplers; built by the ``balanced-sampler`` strategy.

    Parameters
    ----------
    mode
        ``"inverse"`` or ``"sqrt"``; see :func:`balanced_sample_weights`.
    pos_fraction
        Target expected fraction of positive draws (binary only), or None.
    replacement
        Draw with replacement (recommended: without it weighted draws
        exhaust the minority early and the epoch ends mostly majority).
    default_seed
        Seed used when :meth:`make` gets none.
    """

    def __init__(
        self,
        mode: str = "inverse",
        pos_fraction: float | None = None,
        replacement: bool = True,
        default_seed: int = 0,
    ) -> None:
        v = check_params("balanced-sampler", SAMPLER_PARAMS,
                         {"mode": mode, "pos_fraction": pos_fraction, "replacement": replacement})
        self.mode = v["mode"]
        self.pos_fraction = v["pos_fraction"]
        self.replacement = v["replacement"]
        self.default_seed = int(default_seed)

    def weights(self, labels: Sequence[int] | np.ndarray) -> np.ndarray:
        """Per-sample weights (sum 1) for ``labels``."""
        return balanced_sample_weights(labels, self.mode, self.pos_fraction)

    def make(
        self,
        labels: Sequence[int] | np.ndarray,
        *,
        num_samples: int | None = None,
        seed: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> Sampler[int]:
        """A sampler over ``labels``' indices.

        Returns a :class:`~torch.utils.data.WeightedRandomSampler` driven by a
        ``torch.Generator`` seeded with ``seed`` (default: the context seed),
        or, when ``num_replicas`` or ``rank`` is given, a
        :class:`DistributedWeightedSampler` (call its ``set_epoch`` each epoch).
        ``num_samples`` defaults to ``len(labels)`` (global, across ranks).
        """
        w = self.weights(labels)
        seed = self.default_seed if seed is None else int(seed)
        n = len(w) if num_samples is None else num_samples
        if num_replicas is not None or rank is not None:
            return DistributedWeightedSampler(
                w, n, num_replicas=num_replicas, rank=rank, replacement=self.replacement, seed=seed
            )
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"num_samples={num_samples!r} is invalid; valid: an int >= 1")
        if not self.replacement and n > int((w > 0).sum()):
            raise ConfigError(
                f"num_samples={n} exceeds the {int((w > 0).sum())} samples available without replacement; "
                "valid: num_samples <= that count, or replacement=true"
            )
        g = torch.Generator()
        g.manual_seed(seed)
        return WeightedRandomSampler(
            torch.as_tensor(w, dtype=torch.double), n, replacement=self.replacement, generator=g
        )

    def __repr__(self) -> str:
        return (
            f"BalancedSampler(mode={self.mode!r}, pos_fraction={self.pos_fraction!r}, "
            f"replacement={self.replacement!r})"
        )


def _build_balanced(
    ctx: StrategyContext,
    mode: str = "inverse",
    pos_fraction: float | None = None,
    replacement: bool = True,
) -> BalancedSampler:
    return BalancedSampler(mode, pos_fraction, replacement, default_seed=ctx.seed)


def _always(_: Mapping[str, Any]) -> bool:
    return True


def _sampler_shift(p: Mapping[str, Any], prior: TrainingPrior) -> float | None:
    """The drawn positive share: per-sample weights ``1/n_c`` (inverse), ``1/sqrt(n_c)`` (sqrt) or
    ``pos_fraction`` split over the classes, applied to the current prior (Saerens et al. 2002)."""
    n0, n1 = max(prior.counts[0], 1), max(prior.counts[1], 1)
    hard = abs(prior.pi - n1 / (n0 + n1)) < 1e-12  # rows with hard labels only: the closed forms
    f = p.get("pos_fraction")
    if f is not None:
        return float(f) if hard else weight_shift(prior.pi, float(f) / n1, (1 - float(f)) / n0)
    if p.get("mode", "inverse") == "sqrt":
        if hard:
            return math.sqrt(n1) / (math.sqrt(n1) + math.sqrt(n0))
        return weight_shift(prior.pi, 1 / math.sqrt(n1), 1 / math.sqrt(n0))
    return 0.5 if hard else weight_shift(prior.pi, 1 / n1, 1 / n0)


register_strategy(
    StrategyRecord(
        name="balanced-sampler",
        family="sampler",
        description=(
            "Draw training images with class-balanced probabilities "
            "(WeightedRandomSampler; a global-draw distributed variant for multi-GPU)."
        ),
        reference="torch.utils.data.WeightedRandomSampler; pytorch/pytorch#77154 for the distributed gap",
        params=SAMPLER_PARAMS,
        build=_build_balanced,
        corrects_prior=_always,
        prior_shift=_sampler_shift,
    )
)
