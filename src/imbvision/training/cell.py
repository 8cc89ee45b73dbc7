"""One head cell: the single fit-and-score path of head mode.

``imbvision train --mode head`` and every ``compare`` executor (local threads,
Ray workers) go through the same three functions:

- :func:`embed_features` — the representations the heads of a run consume, from the
  cached backbone embeddings (``"global"``: one vector per image);
- :func:`synthetic_features` — the images a recipe's synthesis and mixing steps make
  from one training split, embedded like real ones (optionally cached on disk);
- :func:`fit_and_score` — fit the recipe's head on the training rows, score validation
  and test, and fit the prior correction, calibration and threshold on validation.

A head family that needs other features than one global vector (patch grids for a
patch, normality or fusion head) declares ``representation="patches"`` on its
strategy record and registers how to make them with :func:`register_representation`;
nothing here changes.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._choices import DEFAULT_PATCH_LAYERS
from ..evaluation.postprocess import Postprocess, fit_postprocess
from ..strategies.registry import Recipe
from .head import HeadFit, choose_head, fit_head

__all__ = [
    "FeatureSettings", "Representation", "register_representation", "get_representation", "representation_of",
    "embed_features", "synthetic_features", "SyntheticFeatures", "CellFit", "fit_and_score",
]


@dataclass(frozen=True)
class FeatureSettings:
    """How images become features (small and picklable: it travels to every worker)."""

    backbone: str
    weights: str | None
    image_size: int
    tiles: int
    kind: str  # "global", "tiles" or "both" (see :meth:`imbvision.backbones.Embeddings.features`)
    max_synthetic: int
    resize: str = field(default="stretch", kw_only=True)  # "stretch" or "keep-aspect"
    skip_bad: bool = field(default=False, kw_only=True)  # a bad mask is dropped (listed) instead of raising
    patch_layers: str = field(default=DEFAULT_PATCH_LAYERS, kw_only=True)  # see imbvision.backbones.patch_layers

    @classmethod
    def of_spec(cls, spec: Any) -> "FeatureSettings":
        """The feature settings of a resolved run specification (:class:`~imbvision.spec.RunSpec`,
        ``image_size`` and ``resize`` filled by ``with_resolution``)."""
        return cls(spec.backbone, spec.weights, spec.image_size, spec.tiles, spec.feature_kind, spec.max_synthetic,
                   resize=spec.resize, skip_bad=spec.skip_bad, patch_layers=spec.patch_layers)

    @classmethod
    def of_bundle(cls, meta: Mapping[str, Any]) -> "FeatureSettings":
        """The feature settings a saved model was trained with (its ``model.json``), older bundles
        migrated by :func:`~imbvision.spec.migrate_backbone` (what they lack filled as they were made)."""
        from ..spec import migrate_backbone

        b = migrate_backbone(meta["backbone"], meta.get("head", {}).get("representation", "global"))
        return cls(b["name"], b.get("weights"), b["image_size"], b["tiles"], b["features"], 0, resize=b["resize"],
                   patch_layers=b.get("patch_layers") or DEFAULT_PATCH_LAYERS)


@dataclass(frozen=True)
class Representation:
    """What a head consumes, and how to make it from records (cached) and from new images.

    ``from_records(records, backbone, settings, cache_dir, progress) -> (array (N, ...), stats)``;
    ``from_images(images, backbone, settings, cache_dir) -> array (M, ...)`` for uint8 HWC images
    (with ``masks=`` the synthesised images' masks too when ``takes_masks``).
    ``fit`` fits a recipe's head on this representation with :func:`~imbvision.training.head.fit_head`'s
    signature (``None``: ``fit_head`` itself).
    """

    name: str
    from_records: Callable[..., tuple[np.ndarray, dict[str, Any]]]
    from_images: Callable[..., np.ndarray]
    fit: Callable[..., HeadFit] | None = None
    takes_masks: bool = False


_REPRESENTATIONS: dict[str, Representation] = {}


def register_representation(rep: Representation) -> Representation:
    """Add a representation (name unique) that head records can name in ``representation``."""
    if rep.name in _REPRESENTATIONS:
        raise ValueError(f"representation {rep.name!r} is already registered")
    _REPRESENTATIONS[rep.name] = rep
    return rep


def get_representation(name: str) -> Representation:
    """The representation called ``name``; unknown names list the valid ones."""
    from ..errors import ConfigError

    try:
        return _REPRESENTATIONS[name]
    except KeyError:
        raise ConfigError(f"unknown feature representation {name!r}; valid: {', '.join(_REPRESENTATIONS)}") from None


def representation_of(recipe: Recipe) -> str:
    """The representation the recipe's head (as :func:`~imbvision.training.head.choose_head` picks it) consumes."""
    return choose_head(recipe).record.representation


def _global_from_records(records: Sequence, backbone: Any, settings: FeatureSettings, cache_dir: Path | None,
                         progress: bool) -> tuple[np.ndarray, dict[str, Any]]:
    from ..backbones import embed_dataset

    emb = embed_dataset(records, backbone=backbone, image_size=settings.image_size, tiles=settings.tiles,
                        cache_dir=cache_dir, progress=progress, resize=settings.resize)
    return emb.features(settings.kind), emb.stats


def _global_from_images(images: list[np.ndarray], backbone: Any, settings: FeatureSettings,
                        cache_dir: Path | None = None) -> np.ndarray:
    from ..backbones import embed_arrays

    kw = {"cache_dir": cache_dir} if cache_dir is not None else {}
    emb = embed_arrays(images, backbone, image_size=settings.image_size, tiles=settings.tiles, resize=settings.resize,
                       **kw)
    return emb.features(settings.kind)


register_representation(Representation("global", _global_from_records, _global_from_images))


def embed_features(records: Sequence, backbone: Any, settings: FeatureSettings, names: Sequence[str] = ("global",),
                   *, cache_dir: Path | None = None, progress: bool = False
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The features of ``records`` for every representation in ``names``, and the embedding statistics.

    Returns
    -------
    features
        ``{representation: array with one row per record}``.
    stats
        The embedding pass's statistics (of the first representation).
    """
    out: dict[str, np.ndarray] = {}
    stats: dict[str, Any] = {}
    for name in dict.fromkeys(names):
        arr, st = get_representation(name).from_records(records, backbone, settings, cache_dir, progress)
        out[name] = arr
        stats = stats or st
    return out, stats


@dataclass
class SyntheticFeatures:
    """New training rows made in pixel space: features, (soft) labels, and the images when just made."""

    X: np.ndarray
    y: np.ndarray
    images: list[np.ndarray] | None = None
    origin: list[str] | None = None
    masks: list[np.ndarray | None] | None = None  # where the object is in each new image (outlined in reports)


def synthetic_features(recipe: Recipe, records: Sequence, train_index: np.ndarray, *, seed: int,
                       settings: FeatureSettings, backbone: Callable[[], Any], representation: str = "global",
                       store: Path | None = None, cache_dir: Path | None = None) -> SyntheticFeatures | None:
    """Embeddings of the images a recipe's synthesis and mixing steps make from one training split.

    Features and labels are float32 whether just made or read from ``store``, so ``train`` and a
    ``compare`` cell of the same split give the same numbers.

    Parameters
    ----------
    recipe
        The composed strategies; ``None`` is returned when it has no synthesis or mixing step
        (or they made nothing).
    records, train_index
        The dataset's records and the training split's positions in it (only those are read).
    backbone
        A zero-argument callable returning the backbone (called only when images must be embedded).
    store
        A folder caching the result per (steps, seed, training split, settings), or ``None``.
    cache_dir
        The embedding cache passed to the backbone.
    """
    from .pixels import make_synthetic_images

    if not recipe.synthesis and recipe.mixing is None:
        return None
    train_index = np.asarray(train_index)
    path = key = None
    if store is not None:
        from .synthetic_store import load_synthetic, synthetic_key
        pix = [str(s) for s in recipe.specs if s.record.family in ("synthesis", "mixing")]
        key = synthetic_key(getattr(settings, "data_key", ""), pix, seed, train_index, settings.kind,
                            settings.image_size, settings.tiles, settings.max_synthetic, representation)
        path = store / f"{key[:16]}.safetensors"
        if (hit := load_synthetic(path, key)) is not None:  # damaged or from other data: recomputed
            return SyntheticFeatures(*hit)
    syn = make_synthetic_images([records[i] for i in train_index], recipe, seed=seed, image_size=settings.image_size,
                                max_n=settings.max_synthetic)
    if not len(syn):
        return None
    rep = get_representation(representation)
    X = rep.from_images(syn.images, backbone(), settings, cache_dir, **({"masks": syn.masks} if rep.takes_masks else {}))
    X = X.astype(np.float32) if isinstance(X, np.ndarray) else X  # patch grids stay as their own type
    out = SyntheticFeatures(X, np.asarray(syn.labels, dtype=np.float32), syn.images, syn.origin,
                            list(syn.masks) if syn.masks else None)
    if path is not None and isinstance(X, np.ndarray):
        from .synthetic_store import save_synthetic
        save_synthetic(path, key, out.X, out.y)
    return out


@dataclass
class CellFit:
    """A fitted head cell: the head, its raw validation and test scores, and the validation-fitted corrections."""

    fit: HeadFit
    post: Postprocess
    p_val: np.ndarray
    p_test: np.ndarray
    synthetic_rows: int


def fit_and_score(recipe: Recipe, features: Mapping[str, np.ndarray] | np.ndarray, y: np.ndarray, split: Any, *,
                  seed: int, extra: SyntheticFeatures | tuple | None = None, threshold: str = "max-f1",
                  calibration: str = "none", prior_correction: bool = True) -> CellFit:
    """Fit the recipe's head on ``split.train`` and score ``split.val`` and ``split.test``.

    Parameters
    ----------
    features
        ``{representation: array (N, ...)}`` (or one array, taken as ``"global"``); the head's
        record says which it consumes.
    y
        0/1 labels ``(N,)`` of every row.
    split
        An object with integer index arrays ``train``, ``val``, ``test``.
    extra
        New training rows from :func:`synthetic_features` (or an ``(X, y)`` pair), or ``None``.

    Returns
    -------
    CellFit
        Raw scores (before the prior correction) and the :class:`~imbvision.evaluation.Postprocess`
        fitted on validation only.
    """
    feats = features if isinstance(features, Mapping) else {"global": features}
    rep = representation_of(recipe)
    X = feats[rep]
    ex_X, ex_y = (extra.X, extra.y) if isinstance(extra, SyntheticFeatures) else (extra if extra else (None, None))
    fitter = get_representation(rep).fit or fit_head
    fit = fitter(X[split.train], y[split.train], recipe, seed=seed, extra_X=ex_X, extra_y=ex_y)
    p_val, p_test = fit.predict_proba(X[split.val]), fit.predict_proba(X[split.test])
    post = fit_postprocess(p_val, y[split.val], train_prior=fit.effective_prior,
                           true_prior=float(y[split.val].mean()), prior_correction=prior_correction,
                           calibration=calibration, threshold=threshold)
    return CellFit(fit, post, p_val, p_test, 0 if ex_X is None else int(len(ex_X)))


def quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with warnings silenced (cells in a grid: the double-correction warning is shown once, up front)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)
