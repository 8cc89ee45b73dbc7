"""Resampling of embeddings with imbalanced-learn.

Seven ``resampler`` strategies wrap imbalanced-learn's samplers (used as they
are, not re-implemented) and add what a vision pipeline needs on top:

- every output row is traced back to its source row (``index``; ``-1`` for
  synthetic rows), so selection methods can be replayed on images for
  pixel-space fine-tuning (:meth:`Resampler.select_indices`);
- ``sampling_strategy`` is a minority/majority ratio for any number of
  classes (imbalanced-learn accepts a float for binary problems only);
- too few minority samples for ``k_neighbors`` lowers ``k`` with a warning;
  a single minority sample, or a single class, is a :class:`DataError`;
  imbalanced-learn's ``ValueError`` is re-raised as our own error quoting it.

ADASYN weights minority points by how many majority points are among their
neighbours. When *no* minority point has a majority neighbour (well
separated classes), that weighting is 0/0; imbalanced-learn raises. We then
fall back to SMOTE, which is ADASYN's limit for uniform difficulty, and warn
(:class:`ResampleFallbackWarning`); ``Resampler.last_method`` records which
method actually ran.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ConfigError, DataError
from .registry import Param, StrategyContext, StrategyRecord, keeps_prior, register_strategy, resolve_params

__all__ = [
    "ResampleResult",
    "Resampler",
    "ResampleFallbackWarning",
    "PRIOR_RATIO_THRESHOLD",
]

#: A ratio at or above this counts as correcting the class prior (for
#: :func:`~imbvision.strategies.registry.compose`'s double-correction warning):
#: 0.5 already moves a 1 % minority to a third of the training set.
PRIOR_RATIO_THRESHOLD = 0.5


class ResampleFallbackWarning(UserWarning):
    """The requested resampler could not run on these data; another one did."""


@dataclass(frozen=True)
class ResampleResult:
    """Output of :meth:`Resampler.fit_resample`.

    Attributes
    ----------
    X, y
        Resampled embeddings ``(M, D)`` and labels ``(M,)``.
    index
        int64 ``(M,)``: source row in the input of each output row, ``-1``
        for synthetic rows. Non-synthetic rows satisfy ``X[i] == X_in[index[i]]``.
    synthetic
        bool ``(M,)``: True where the row was generated (SMOTE/ADASYN).
    """

    X: np.ndarray
    y: np.ndarray
    index: np.ndarray
    synthetic: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


def _check_xy(X: np.ndarray | None, y: np.ndarray, name: str) -> tuple[np.ndarray | None, np.ndarray]:
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{name}: labels must be 1-D, got shape {y.shape}")
    if X is not None:
        X = np.asarray(X)
        if X.ndim != 2:
            raise DataError(f"{name}: embeddings X must be 2-D (N, D), got shape {X.shape}")
        if X.shape[0] != y.shape[0]:
            raise DataError(f"{name}: X has {X.shape[0]} rows but y has {y.shape[0]} labels")
        if not np.issubdtype(X.dtype, np.number) or not np.isfinite(X).all():
            raise DataError(f"{name}: embeddings X must be finite numbers (found NaN/inf or non-numeric)")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        found = "no samples" if len(classes) == 0 else f"only class {classes[0].item()!r} ({counts[0]} samples)"
        raise DataError(f"{name}: resampling needs at least two classes, found {found}")
    return X, y


class Resampler:
    """One imbalanced-learn sampler configured by a strategy's parameters.

    Built by :func:`~imbvision.strategies.registry.get_strategy` ``(name).build(ctx, **params)``.

    Attributes
    ----------
    name
        Strategy name (a registered ``resampler`` strategy).
    params
        Validated parameters.
    generates_samples
        True for SMOTE, ADASYN and SMOTE-Tomek (rows without a source image).
    last_method
        Method that actually ran in the last :meth:`fit_resample` (differs
        from ``name`` only after an ADASYN fallback to SMOTE).
    """

    def __init__(self, name: str, params: Mapping[str, Any], default_seed: int = 0) -> None:
        if name not in _SPECS:
            raise ConfigError(f"unknown resampler {name!r}; valid: {', '.join(_SPECS)}")
        self.name = name
        # The record's own table (the same ``_SPECS`` entry it was registered with): defaults filled, ranges checked.
        self.params = resolve_params(name, _SPECS[name].params, params)
        self.default_seed = int(default_seed)
        self.generates_samples = _SPECS[name].generates_samples
        self.last_method: str | None = None
        self._k_used: int | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"Resampler({self.name!r}, {args})"

    # -- parameter translation -------------------------------------------
    def _targets(self, y: np.ndarray) -> dict[Any, int]:
        """Per-class target counts for a minority/majority ``ratio``.

        Over-samplers raise every class to ``max(n_c, round(ratio * n_max))``;
        the under-sampler caps every class at ``round(n_min / ratio)``.
        """
        ratio = float(self.params["sampling_strategy"])
        classes, counts = np.unique(y, return_counts=True)
        if _SPECS[self.name].undersamples:
            cap = max(int(round(counts.min() / ratio)), int(counts.min()))
            targets = {c.item(): int(min(n, cap)) for c, n in zip(classes, counts)}
        else:
            goal = int(round(ratio * counts.max()))
            targets = {c.item(): int(max(n, goal)) for c, n in zip(classes, counts)}
        if all(targets[c.item()] == n for c, n in zip(classes, counts)):
            warnings.warn(
                f"{self.name}: class counts {dict(zip(classes.tolist(), counts.tolist()))} already "
                f"meet sampling_strategy={ratio:g}; nothing is resampled",
                UserWarning,
                stacklevel=5,
            )
        return targets

    def _k_for(self, y: np.ndarray, targets: Mapping[Any, int]) -> int:
        """``k_neighbors`` valid for the classes that will be over-sampled."""
        k = int(self.params["k_neighbors"])
        classes, counts = np.unique(y, return_counts=True)
        grown = [(c, n) for c, n in zip(classes, counts) if targets[c.item()] > n]
        if not grown:
            return k
        cls, n_min = min(grown, key=lambda t: t[1])
        if n_min <= 1:
            raise DataError(
                f"{self.name}: class {cls.item()!r} has only {n_min} sample; interpolating needs "
                "at least 2 samples of every class it over-samples. Use random-over, "
                "a loss or sampler remedy, or collect more positives."
            )
        if k >= n_min:
            new_k = int(n_min) - 1
            warnings.warn(
                f"{self.name}: class {cls.item()!r} has only {n_min} samples, fewer than "
                f"k_neighbors + 1 = {k + 1}; lowering k_neighbors from {k} to {new_k}",
                UserWarning,
                stacklevel=5,
            )
            k = new_k
        return k

    def _make(self, method: str, y: np.ndarray, seed: int, k: int | None = None) -> Any:
        from imblearn.combine import SMOTETomek
        from imblearn.over_sampling import ADASYN, SMOTE, RandomOverSampler
        from imblearn.under_sampling import EditedNearestNeighbours, RandomUnderSampler, TomekLinks

        if method == "tomek":
            return TomekLinks(sampling_strategy="auto")
        if method == "enn":
            return EditedNearestNeighbours(
                sampling_strategy="auto",
                n_neighbors=int(self.params["n_neighbors"]),
                kind_sel=self.params["kind_sel"],
            )
        targets = self._targets(y)
        if method == "random-over":
            return RandomOverSampler(sampling_strategy=targets, random_state=seed)
        if method == "random-under":
            return RandomUnderSampler(sampling_strategy=targets, random_state=seed)
        if k is None:
            k = self._k_for(y, targets)
        self._k_used = k
        if method == "smote":
            return SMOTE(sampling_strategy=targets, k_neighbors=k, random_state=seed)
        if method == "adasyn":
            return ADASYN(sampling_strategy=targets, n_neighbors=k, random_state=seed)
        if method == "smote-tomek":
            smote = SMOTE(sampling_strategy=targets, k_neighbors=k, random_state=seed)
            return SMOTETomek(smote=smote, random_state=seed)
        raise AssertionError(method)  # pragma: no cover

    # -- public API --------------------------------------------------------
    def fit_resample(self, X: np.ndarray, y: np.ndarray, seed: int | None = None) -> ResampleResult:
        """Resample embeddings ``X`` ``(N, D)`` with labels ``y`` ``(N,)``.

        ``seed`` defaults to the context seed; the same seed gives the same output.
        """
        X, y = _check_xy(X, y, self.name)
        assert X is not None
        seed = self.default_seed if seed is None else int(seed)
        fallback = _SPECS[self.name].fallback
        if fallback is not None:
            try:
                return self._run(self.name, X, y, seed)
            except RuntimeError as exc:  # imblearn: "Not any neigbours belong to the majority class"
                if "majority" not in str(exc):
                    raise
                warnings.warn(
                    f"adasyn: no minority sample has a majority-class neighbour among its "
                    f"{self._k_used} nearest, so ADASYN's difficulty weights are 0/0 "
                    f"({exc}); falling back to SMOTE, its limit for uniform difficulty",
                    ResampleFallbackWarning,
                    stacklevel=2,
                )
                return self._run(fallback, X, y, seed, k=self._k_used)
        return self._run(self.name, X, y, seed)

    def _run(
        self, method: str, X: np.ndarray, y: np.ndarray, seed: int, k: int | None = None
    ) -> ResampleResult:
        est = self._make(method, y, seed, k)
        try:
            X_res, y_res = est.fit_resample(X, y)
        except ValueError as exc:
            counts = dict(zip(*(a.tolist() for a in np.unique(y, return_counts=True))))
            raise DataError(
                f"{self.name} cannot resample {X.shape[0]} embeddings with class counts {counts} "
                f"and parameters {self.params}: {exc}"
            ) from exc
        X_res = np.asarray(X_res)
        y_res = np.asarray(y_res)
        n = X.shape[0]
        if not _SPECS[method].generates_samples:
            index = np.asarray(est.sample_indices_, dtype=np.int64)
        else:
            # SMOTE/ADASYN stack the untouched input first, then the new rows;
            # checked below (and for SMOTE-Tomek by the row match after it).
            if method == "smote-tomek":
                # SMOTETomek keeps its fitted steps: the Tomek step's input is
                # the SMOTE output, and its sample_indices_ index into that.
                kept = np.asarray(est.tomek_.sample_indices_, dtype=np.int64)
                index = np.where(kept < n, kept, -1)
            else:
                if not np.array_equal(X_res[:n], X) or not np.array_equal(y_res[:n], y):
                    raise RuntimeError(
                        f"{method}: imbalanced-learn no longer returns the input rows first; "
                        "cannot map rows back to source images"
                    )
                index = np.concatenate([np.arange(n), np.full(X_res.shape[0] - n, -1)]).astype(np.int64)
        real = index >= 0
        if not (np.array_equal(X_res[real], X[index[real]]) and np.array_equal(y_res[real], y[index[real]])):
            raise RuntimeError(f"{method}: output rows do not match their recorded source rows")
        self.last_method = method
        return ResampleResult(X=X_res, y=y_res, index=index, synthetic=~real)

    def select_indices(
        self, y: np.ndarray, X: np.ndarray | None = None, seed: int | None = None
    ) -> np.ndarray:
        """Indices into the input that a selection method keeps (with repeats for random-over).

        Works on image datasets for pixel-space fine-tuning. ``tomek`` and
        ``enn`` need the embeddings ``X`` to find neighbours; the random
        methods ignore it. Generating methods raise :class:`ConfigError`.
        """
        if self.generates_samples:
            raise ConfigError(
                f"{self.name} generates new embeddings that have no source image, so it cannot "
                "select training images; use it in head mode (resampling embeddings before the "
                f"classifier head) or pick a selection method: "
                f"{', '.join(n for n, m in _SPECS.items() if not m.generates_samples)}"
            )
        if X is None:
            if _SPECS[self.name].needs_embeddings:
                raise ConfigError(
                    f"{self.name} finds nearest neighbours, so select_indices needs the embeddings X"
                )
            y_arr = np.asarray(y)
            X = np.arange(y_arr.shape[0], dtype=np.float64).reshape(-1, 1)
        return self.fit_resample(X, y, seed=seed).index


# -- registration ------------------------------------------------------------

_RATIO = Param(
    1.0,
    kind="float",
    low=0.0,
    high=1.0,
    low_open=True,
    doc="minority/majority ratio after resampling",
)
_K = Param(5, kind="int", low=1, high=1000, doc="nearest minority neighbours to interpolate toward")


def _ratio_corrects(p: Mapping[str, Any]) -> bool:
    return float(p.get("sampling_strategy", 1.0)) >= PRIOR_RATIO_THRESHOLD


def _never(_: Mapping[str, Any]) -> bool:
    return False


def _builder(name: str) -> Callable[..., Resampler]:
    def build(ctx: StrategyContext, **params: Any) -> Resampler:
        return Resampler(name, params, default_seed=ctx.seed)

    build.__name__ = f"build_{name.replace('-', '_')}"
    return build


@dataclass(frozen=True)
class _Method:
    """One imbalanced-learn method as a strategy: its description and declared capabilities."""

    description: str
    reference: str
    params: dict[str, Param]
    generates_samples: bool = False  # rows without a source image: head mode only
    needs_embeddings: bool = False  # neighbours in embedding space, also when selecting images
    ratio: bool = True  # has sampling_strategy (a minority/majority ratio)
    undersamples: bool = False  # its ratio caps the majority (else it raises the minority)
    fallback: str | None = None  # the method run when imbalanced-learn finds no majority neighbour (ADASYN)


_SPECS: dict[str, _Method] = {
    "random-over": _Method(
        "Repeat randomly chosen minority samples until the ratio is reached.",
        "Random oversampling (Japkowicz & Stephen 2002, The class imbalance problem); imblearn.over_sampling.RandomOverSampler",
        {"sampling_strategy": _RATIO},
    ),
    "random-under": _Method(
        "Drop randomly chosen majority samples until the ratio is reached.",
        "Random undersampling (Japkowicz & Stephen 2002, The class imbalance problem); imblearn.under_sampling.RandomUnderSampler",
        {"sampling_strategy": _RATIO},
        undersamples=True,
    ),
    "tomek": _Method(
        "Remove majority members of Tomek links (cross-class nearest-neighbour pairs); cleaning.",
        "Tomek 1976; imblearn.under_sampling.TomekLinks",
        {},
        needs_embeddings=True,
        ratio=False,
    ),
    "enn": _Method(
        "Remove majority samples that their nearest neighbours misclassify (Edited Nearest Neighbours); cleaning.",
        "Wilson 1972; imblearn.under_sampling.EditedNearestNeighbours",
        {
            "n_neighbors": Param(3, kind="int", low=1, high=1000, doc="neighbours that vote on each majority sample"),
            "kind_sel": Param(
                "all",
                kind="str",
                choices=("all", "mode"),
                doc="remove when not all (all) or not most (mode) neighbours agree",
            ),
        },
        needs_embeddings=True,
        ratio=False,
    ),
    "smote": _Method(
        "Synthesize minority embeddings by interpolating toward minority neighbours.",
        "Chawla et al. 2002; imblearn.over_sampling.SMOTE",
        {"sampling_strategy": _RATIO, "k_neighbors": _K},
        generates_samples=True,
    ),
    "adasyn": _Method(
        "SMOTE weighted toward minority samples with many majority neighbours (falls back to SMOTE when none have any).",
        "He et al. 2008; imblearn.over_sampling.ADASYN",
        {"sampling_strategy": _RATIO, "k_neighbors": _K},
        generates_samples=True,
        fallback="smote",
    ),
    "smote-tomek": _Method(
        "SMOTE, then remove both members of every Tomek link.",
        "Batista et al. 2004; imblearn.combine.SMOTETomek",
        {"sampling_strategy": _RATIO, "k_neighbors": _K},
        generates_samples=True,
    ),
}

for _name, _m in _SPECS.items():
    register_strategy(
        StrategyRecord(
            name=_name,
            family="resampler",
            description=_m.description,
            reference=_m.reference,
            params=_m.params,
            build=_builder(_name),
            corrects_prior=_ratio_corrects if _m.ratio else _never,
            # The rows it leaves are measured by the pipeline: that share is the training prior.
            prior_shift=keeps_prior,
            generates_samples=_m.generates_samples,
            needs_embeddings=_m.needs_embeddings,
            modes=("head",) if _m.generates_samples else ("head", "finetune"),
        )
    )
