"""One ``compare`` cell (strategy × seed × fold), computed the same way by every executor.

The local executor (threads) and the Ray executor both import this module, and
neither imports the other's internals: a cell is :func:`compute_cell` on the
shared arrays, written by the driver as ``OUT/cells/<cell_id>.json``. The fit
itself is :func:`imbvision.training.cell.fit_and_score`, the path
``imbvision train`` takes too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..strategies.registry import compose
from .cellstore import cell_id, cell_key
from ..training.cell import FeatureSettings, fit_and_score, representation_of, synthetic_features

__all__ = ["CellSettings", "cell_id", "compute_cell", "cached_backbone"]


@dataclass(frozen=True)
class CellSettings(FeatureSettings):
    """Everything a cell needs besides its strategy, split and the shared arrays (small, picklable)."""

    threshold: str
    calibration: str
    prior_correction: bool
    data_key: str = ""  # fingerprint of the records and run settings (cellstore keys)
    #: ``data_key`` plus the patch-feature version and layers: the key of patch-level heads' cells only, so
    #: adding or removing a patch head never invalidates the cells of the global heads.
    patch_data_key: str = ""

    @classmethod
    def of_spec(cls, spec: Any, data_key: str, patch_data_key: str = "") -> "CellSettings":  # type: ignore[override]
        """The cell settings of a resolved comparison (:class:`~imbvision.experiments.config.CompareConfig`)."""
        from dataclasses import asdict

        return cls(**asdict(FeatureSettings.of_spec(spec)), threshold=spec.threshold, calibration=spec.calibration,
                   prior_correction=spec.prior_correction, data_key=data_key,
                   patch_data_key=patch_data_key or data_key)

    def key_for(self, strategy: str) -> str:
        """The data key of ``strategy``'s cells: with the patch-feature version for a patch-level head."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # validated when the comparison started
            rep = representation_of(compose(strategy))
        return self.patch_data_key if rep == "patches" else self.data_key


def _weights_stamp(weights: str | None) -> tuple | None:
    """Identify a weights file by path, size and mtime, so a replaced file is not served from the cache."""
    if weights is None:
        return None
    try:
        st = Path(weights).stat()
    except OSError:
        return None  # "none", a hub name, or a missing file (create_backbone reports it)
    return (st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=2)
def _load_backbone(name: str, weights: str | None, _stamp: tuple | None):
    from ..backbones import create_backbone

    return create_backbone(name, weights=weights)


def cached_backbone(name: str, weights: str | None):
    """``create_backbone(name, weights=weights)``, built once per process (local threads and Ray workers alike)."""
    return _load_backbone(name, weights, _weights_stamp(weights))


def compute_cell(strategy: str, seed: int, fold: int | None, split: Any,
                 X: np.ndarray | Mapping[str, np.ndarray], y: np.ndarray, records: Sequence,
                 settings: CellSettings, store: Path | None) -> dict[str, Any]:
    """One cell, from the shared arrays alone: every executor calls this.

    Parameters
    ----------
    X
        The features of every image: one array (``"global"``) or ``{representation: array}``.
    records
        The dataset's records (pixel-space strategies read their training images); the backbone
        is built here, once per process, only when a strategy needs to embed new images.
    store
        Caches those embeddings (``None``: no cache).

    Returns
    -------
    dict
        The cell (metrics, test indices and scores, timing); the caller writes it.
    """
    from ..evaluation import brier, ranking_metrics, threshold_metrics

    from ..notices import passing_result_warnings

    with passing_result_warnings(strategy) as library:  # a damaged cache or an unconverged fit still reaches the user
        recipe = compose(strategy)
        extra = synthetic_features(recipe, records, split.train, seed=seed, settings=settings,
                                   backbone=lambda: cached_backbone(settings.backbone, settings.weights),
                                   representation=representation_of(recipe), store=store)
        _examples(store, recipe, extra, seed)
        cf = fit_and_score(recipe, X, y, split, seed=seed, extra=extra, threshold=settings.threshold,
                           calibration=settings.calibration, prior_correction=settings.prior_correction)
    s_test = cf.post.apply(cf.p_test)
    # Rank on the prior-corrected logit: calibration cannot move AP or ROC-AUC, and no score saturates at 1.0.
    s_rank = ranking_score(cf.fit, X, split.test, cf.p_test, cf.post)
    t = cf.post.threshold.threshold
    rank = ranking_metrics(y[split.test], s_rank)
    at = threshold_metrics(y[split.test], s_test, t)
    return {
        "strategy": strategy, "seed": seed, "head": cf.fit.head_name,
        "ap": rank["ap"], "roc_auc": rank["roc_auc"], "recall_at_p90": rank.get("recall_at_precision"),
        "threshold": t, "f1": at["f1"], "mcc": at["mcc"], "recall": at["recall"], "precision": at["precision"],
        "brier": brier(y[split.test], s_test),  # calibration quality, on the calibrated probabilities
        "train_rows": cf.fit.train_rows, "synthetic_rows": cf.synthetic_rows,
        # full float64: JSON floats round-trip, so every number of the leaderboard comes from these scores
        "test_index": split.test.tolist(), "test_score": np.asarray(s_rank, dtype=np.float64).tolist(),
        "timing": {"fit_seconds": cf.fit.fit_seconds}, "fold": fold,
        "key": cell_key(settings.key_for(strategy), strategy, seed, fold, split),
        **_head_info(cf.fit.head),
        **_localisation(recipe, cf.fit.head, X, records, split.test),
        # kept with the cell and said by its reader (read_cells) once per run: computed now, in a thread, in
        # another process (Ray) or reused. The head's own account first: it holds in any thread, where the
        # warnings recorded by the block may be lost (Python's warning state is process-wide).
        **({"library_warnings": notes} if (notes := _library_notes(cf.fit.head, strategy) or list(library)) else {}),
    }


def _library_notes(head: Any, where: str) -> list[str]:
    """The lines a fitted head gives about its own fit (a logreg that stopped at ``max_iter``), else []."""
    notes = getattr(head, "library_notes", None)
    return list(notes(where)) if callable(notes) else []


def _localisation(recipe: Any, head: Any, X: Any, records: Sequence, test_index: np.ndarray) -> dict[str, Any]:
    """Pixel AUROC and AUPRO of a heat-map head on the test split's masked positives and negatives (else nothing)."""
    from ..training.cell import representation_of
    from ..training.localise import gives_heatmaps, split_localisation

    if not gives_heatmaps(recipe) or not isinstance(X, Mapping):
        return {}
    loc = split_localisation(head, X[representation_of(recipe)], records, test_index)
    return {"localisation": loc} if loc else {}


def ranking_score(fit: Any, X: Any, test_index: np.ndarray, p_test: np.ndarray, post: Any) -> np.ndarray:
    """The score a cell is ranked on: the head's logit plus the prior correction's log-odds shift, float64.

    Monotone in the prior-corrected probability ``post.uncalibrated(p_test)`` but without its float64
    saturation (a logit above ~37 gives probability exactly 1.0, so confident scores would tie).
    Falls back to the logit of that probability when the head has no logit matching ``p_test``.
    """
    from scipy.special import expit, logit

    z = None
    Xt = X if not isinstance(X, Mapping) else X.get("global")
    if Xt is not None and hasattr(fit.head, "decision_function"):
        try:
            z = np.asarray(fit.head.decision_function(Xt[test_index]), dtype=np.float64)
        except Exception:  # noqa: BLE001 - a head whose logit does not apply here: use the probability's logit
            z = None
        if z is not None and (z.shape != p_test.shape or not np.allclose(expit(z), p_test, rtol=1e-6, atol=1e-9)):
            z = None
    if z is None:
        return logit(np.clip(post.uncalibrated(p_test), 1e-300, 1.0 - 1e-16))
    a, b = post.train_prior, post.true_prior
    if post.prior_correction and a is not None and abs(a - b) > 1e-9:  # as evaluation.postprocess.correct_prior
        z = z + (np.log(b) - np.log1p(-b)) - (np.log(a) - np.log1p(-a))
    return z


def _head_info(head: Any) -> dict[str, Any]:
    """What a patch-level head reports (fusion weights: which representation won)."""
    from ..training.patch_fit import head_summary

    info = head_summary(head)
    return {"head_info": info} if info else {}


def _examples(store: Path | None, recipe: Any, extra: Any, seed: int) -> None:
    """A grid of the first new images of a pixel-space strategy, for the compare report (once per strategy)."""
    if store is None or extra is None or extra.images is None:
        return
    if (store / "examples").exists() and len(list((store / "examples").glob("*.png"))) >= 12:
        return
    from ..evaluation import save_image_grid

    from ..htmlreport import draw_outline  # red outline: where the object was pasted / mixed in

    masks = extra.masks or [None] * len(extra.images)
    items = [(draw_outline(img, m if m is not None and np.shape(m) == np.shape(img)[:2] else None), f"y={lab:.2f}")
             for img, lab, m in list(zip(extra.images, extra.y, masks))[:12]]
    name = "+".join(s.name for s in recipe.specs if s.record.family in ("synthesis", "mixing"))
    save_image_grid(store / "examples" / f"{name}.png", items, title=f"{name}: new training images (seed {seed})")
