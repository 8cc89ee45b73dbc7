"""``imbvision train``: one run from data to a saved model, metrics and a report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._csv import write_csv
from .._io import ensure_output_dir, read_json, write_json
from ..errors import ConfigError
from ..evaluation.postprocess import fit_postprocess
from ..notices import collect_warnings, run_warnings, warn_about_data
from .._progress import step
from ..strategies.registry import Recipe, compose
from ..training.config import TrainConfig
from ..training.prepare import Prepared, duplicate_features, prepare_data

__all__ = ["train", "RunResult", "evaluate_run"]


@dataclass
class RunResult:
    """What :func:`train` returns: the run folder and its test metrics."""

    out: Path
    metrics: dict[str, Any]
    threshold: float
    recipe: str

    @property
    def report(self) -> Path:
        return self.out / "report.html"


def _head_mode(cfg: TrainConfig, prep: Prepared, recipe: Recipe, out: Path, progress: bool) -> tuple:
    """Head mode through the one cell path (:func:`~imbvision.training.cell.fit_and_score`) that compare uses."""
    from ..backbones import create_backbone
    from ..training.cell import FeatureSettings, embed_features, fit_and_score, representation_of, synthetic_features

    ds, split, y = prep.dataset, prep.split, prep.dataset.labels
    backbone = create_backbone(cfg.backbone, weights=cfg.weights)
    settings = FeatureSettings.of_spec(cfg)
    rep = representation_of(recipe)
    feats, stats = embed_features(ds.records, backbone, settings, [rep], cache_dir=cfg.resolved_cache_dir(),
                                  progress=progress)
    extra = synthetic_features(recipe, ds.records, split.train, seed=cfg.seed, settings=settings,
                               backbone=lambda: backbone, representation=rep, cache_dir=cfg.resolved_cache_dir())
    examples = _synthetic_examples(extra, out)
    cf = fit_and_score(recipe, feats, y, split, seed=cfg.seed, extra=extra, threshold=cfg.threshold,
                       calibration=cfg.calibration, prior_correction=cfg.prior_correction)
    fit = cf.fit
    from ..training.localise import gives_heatmaps, split_localisation
    localisation = (split_localisation(fit.head, feats[rep], ds.records, split.test)
                    if gives_heatmaps(recipe) else None)  # heat maps against the test masks
    model_meta: dict[str, Any] = {
        "mode": "head",
        "backbone": {"name": backbone.name, "weights_id": backbone.weights_id,
                     **cfg.backbone_record(rep),  # the spec's input settings, read back by migrate_backbone
                     "preprocess": "draft",  # each part decoded with its min_side (backbones.decoding, Model.decode)
                     **_feature_record(feats, rep)},  # widths and versions checked at load (bundle_heads)
        "head": {"name": fit.head_name, "params": fit.head_params, "config": fit.head.get_config(),
                 **({"representation": rep} if rep != "global" else {})},
    }
    arrays = {f"head.{k}": np.asarray(v) for k, v in fit.head.to_arrays().items()}
    train_info = {"rows": fit.train_rows, "counts_after_resampling": list(fit.resampled_counts),
                  "synthetic_rows": cf.synthetic_rows, "fit_seconds": fit.fit_seconds,
                  "head": fit.head_name, "embedding": stats, **_head_summary(fit.head),
                  **({"localisation": localisation} if localisation else {})}
    return cf.p_val, cf.p_test, arrays, model_meta, fit.effective_prior, train_info, examples, cf.post


def _feature_record(feats: dict[str, Any], rep: str) -> dict[str, Any]:
    """The feature widths and versions a bundle records, so its arrays are checked against them at load."""
    from ..backbones.embed import PREPROCESS_VERSION

    x = feats[rep]
    out: dict[str, Any] = {"preprocess_version": PREPROCESS_VERSION}
    if rep == "patches":
        from ..backbones.patches import PATCH_VERSION

        out.update(patch_dim=int(x.dim), patch_grid=[int(g) for g in x.grid], patch_version=PATCH_VERSION)
        if getattr(x, "global_", None) is not None:
            out["feature_dim"] = int(np.shape(x.global_)[1])
    else:
        out["feature_dim"] = int(np.shape(x)[1])
    return out


def _head_summary(head: Any) -> dict[str, Any]:
    """Fusion weights and MIL counts of a patch-level head (empty for the global heads)."""
    from ..training.patch_fit import head_summary

    return head_summary(head)


def _synthetic_examples(extra: Any, out: Path | None) -> dict[str, list]:
    """Up to 12 new training images per strategy, saved as grids under ``out/examples`` for the report."""
    examples: dict[str, list] = {}
    if extra is None or extra.images is None:
        return examples
    from ..htmlreport import draw_outline
    masks = extra.masks or [None] * len(extra.images)
    for img, origin, lab, mask in zip(extra.images, extra.origin, extra.y, masks):
        if len(examples.setdefault(origin, [])) < 12:  # red outline: where the object was pasted / mixed in
            fits = mask is not None and np.shape(mask) == np.shape(img)[:2]
            examples[origin].append((draw_outline(img, mask if fits else None), f"{origin} y={lab:.2f}"))
    if out is not None:
        from ..evaluation import save_image_grid
        for origin, items in examples.items():
            save_image_grid(out / "examples" / f"{origin}.png", items, title=f"{origin}: new training images")
    return examples


def _write_scores(path: Path, paths: list[str], y: np.ndarray, p: np.ndarray, t: float) -> None:
    write_csv(path, ["path", "label", "probability", "decision"],
              ([a, int(b), repr(float(c)), int(c >= t)] for a, b, c in zip(paths, y, p)))  # full precision: the decision is reproducible


@collect_warnings
def train(cfg: TrainConfig | None = None, out: str | Path = "runs/train", *, progress: bool = True,
          resume: bool = False, overwrite: bool = False, **overrides: Any) -> RunResult:
    """Train one model and evaluate it on the held-out test split.

    The run is built in a staging folder beside ``out`` and renamed onto it when
    whole (:mod:`imbvision._rundir`); an existing run in ``out`` is refused unless
    ``overwrite`` (replace it) or ``resume`` (continue it).

    Parameters
    ----------
    cfg
        The configuration; keyword ``overrides`` set or replace its fields
        (e.g. ``train(data="demo", strategy="focal+balanced-sampler")``).
    out
        Run folder: ``config.json``, ``split.csv``, ``model.safetensors`` + ``model.json``,
        ``results.json``, ``scores_test.csv``, ``report.html``.
    resume
        Fine-tuning: continue from the last checkpoint (of an interrupted run, kept in its
        staging folder, or of the finished run in ``out``).
    overwrite
        Replace the run already in ``out`` (only once the new one is whole).
    """
    from .._rundir import commit_run_dir, discard_run_dir, folder_lock, open_run_dir

    cfg = TrainConfig(**{**(cfg.to_dict() if cfg else {}), **overrides})
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it; give one of them")
    final = Path(out).absolute()
    with folder_lock(final):  # one writer per run folder: a second train into it is refused, naming the first
        stage = open_run_dir(final, overwrite=overwrite, resume=resume, source=cfg.data)
        try:
            res = _train_in(cfg, stage, progress=progress, resume=resume, final=final)
        except BaseException:
            discard_run_dir(final)
            raise
        commit_run_dir(final)
    res.out = Path(out)
    return res


def _train_in(cfg: TrainConfig, out: Path, *, progress: bool, resume: bool, final: Path | None = None) -> RunResult:
    """The body of :func:`train`, writing into the staging folder ``out``."""
    out = ensure_output_dir(out)
    recipe = compose(cfg.strategy)
    if resume and (out / "config.json").exists():
        from ..spec import migrate_config

        old = migrate_config(read_json(out / "config.json"), TrainConfig)  # an older run folder: what it lacks filled
        old.pop("extra", None)
        new = cfg.to_dict()
        new.pop("extra", None)
        # image_size/resize left to the policy: it resolves from the same data (checked below) as before
        diff = sorted(k for k in new if old.get(k) != new[k] and k not in ("epochs",)
                      and not (new[k] is None and k in ("image_size", "resize")))
        if diff:
            raise ConfigError(f"--resume with a different configuration ({', '.join(diff)}) than "
                              f"{(final or out) / 'config.json'}; use the same options or a new --out")
    write_json(out / "config.json", {**cfg.to_dict(), "recipe": recipe.to_dict()})
    t0 = time.perf_counter()
    prep = prepare_data(cfg.data, positive=cfg.positive, seed=cfg.seed, val=cfg.val, test=cfg.test,
                        skip_bad=cfg.skip_bad, train_positive_rate=cfg.train_positive_rate, out_dir=out,
                        progress=progress, group_duplicates=cfg.group_duplicates,
                        features=duplicate_features(cfg, progress), split_file=cfg.split_file, split=cfg.split)
    ds, split = prep.dataset, prep.split
    # what the split realised (shares, prevalence per part) beside the request
    write_json(out / "config.json", {**cfg.to_dict(), "recipe": recipe.to_dict(), "split_realised": prep.balance})
    from ..evaluation.postprocess import check_validation_labels
    check_validation_labels(ds.labels[split.val], cfg.threshold, cfg.calibration)  # before any fit: name the fix
    from .._rundir import check_resume_data
    check_resume_data(out, ds.records, resume=resume)  # a resumed run must see the same data
    # The input scale: given, or chosen from the images (head mode); config.json holds the values used and why.
    from ..backbones.resolution import with_resolution
    cfg, resolution = with_resolution(cfg, [r.path for r in ds.records], policy=cfg.mode == "head")
    cfg = cfg.replace(extra={**cfg.extra, "resolution": resolution.to_dict()})
    write_json(out / "config.json", {**cfg.to_dict(), "recipe": recipe.to_dict(), "split_realised": prep.balance})
    warn_about_data(ds.labels, split.train, [r.mask for r in ds.records], recipe.specs)  # shown in the report too
    y = ds.labels
    post = None
    if cfg.mode == "head":
        (p_val_raw, p_test_raw, arrays, model_meta, train_prior, train_info, examples,
         post) = _head_mode(cfg, prep, recipe, out, progress)
    else:
        from ..training.finetune import run_finetune

        ft = run_finetune(cfg, prep, recipe, out, progress=progress, resume=resume)
        if getattr(ft, "rank", 0) != 0:
            # Under torchrun every rank runs train(); only rank 0 writes the run folder.
            return RunResult(out, {}, float("nan"), recipe.name)
        p_val_raw, p_test_raw = ft.p_val, ft.p_test
        arrays, model_meta, train_prior, train_info = ft.arrays, ft.meta, ft.effective_prior, ft.info
        examples = ft.examples
    if cfg.prior_correction and train_prior is None and cfg.calibration == "none":
        import warnings

        from ..strategies.registry import NoPriorCorrectionWarning
        warnings.warn(f"{recipe.name}: no analytic prior correction exists for this recipe (its loss or head, "
                      "e.g. focal with gamma > 0 or a patch-level head, shifts the class prior by no known formula), "
                      "so its probabilities stay as trained and can over-predict the rare class; the "
                      "threshold is still tuned on validation. Use --calibration platt (or intercept, the default) for calibrated probabilities",
                      NoPriorCorrectionWarning, stacklevel=2)
    if post is None:
        post = fit_postprocess(p_val_raw, y[split.val], train_prior=train_prior,
                               true_prior=float(y[split.val].mean()), prior_correction=cfg.prior_correction,
                               calibration=cfg.calibration, threshold=cfg.threshold)
    from ..model import save_bundle
    save_bundle(out, arrays, {
        **model_meta, "strategy": recipe.to_dict(), "postprocess": post.to_dict(),
        "class_names": {"0": ds.negative_name, "1": ds.positive_name}, "config": cfg.to_dict(),
    })
    _write_scores(out / "scores_val.csv", [str(ds.records[i].path) for i in split.val], y[split.val],
                  post.apply(p_val_raw), post.threshold.threshold)
    write_json(out / "raw_scores.json", {"val": p_val_raw.tolist(), "test": p_test_raw.tolist()})
    with step("scoring the test split, bootstrap intervals, report", progress):
        result = evaluate_run(out, progress=progress, examples=examples, train_info=train_info,
                              elapsed=time.perf_counter() - t0)
    return result


def evaluate_run(run_dir: str | Path, *, progress: bool = False, examples: dict[str, list] | None = None,
                 train_info: dict[str, Any] | None = None, elapsed: float | None = None) -> RunResult:
    """Score the test split of a finished run: ``results.json``, ``scores_test.csv``, ``report.html``.

    The test split is used here only; the threshold and calibration come from validation.
    """
    from ..evaluation import build_run_report, evaluate_scores
    from ..evaluation.report import masks_for_paths
    from ..model import Model

    run_dir = Path(run_dir)
    model = Model.load(run_dir)
    cfg = TrainConfig.from_dict(model.meta["config"])
    from .._rundir import read_previous_results, read_run_scores

    prev = read_previous_results(run_dir)  # derived: a damaged one is rewritten below
    train_info = dict(train_info or prev.get("train", {}))
    localisation = train_info.pop("localisation", None) or prev.get("localisation")
    raw, split, rows = read_run_scores(run_dir)  # missing/damaged: one line naming the file
    y_val = np.array([int(rows[i]["label"]) for i in split.val])
    y_test = np.array([int(rows[i]["label"]) for i in split.test])
    paths_test = [rows[i]["path"] for i in split.test]
    paths_val = [rows[i]["path"] for i in split.val]
    post = model.postprocess
    p_test_u = post.uncalibrated(np.asarray(raw["test"]))
    p_test = post.apply(np.asarray(raw["test"]))
    p_val = post.apply(np.asarray(raw["val"]))
    t = post.threshold.threshold
    # Ranking metrics on the prior-corrected score before calibration: the calibration method cannot move them.
    rule_info = post.threshold.achieved.get("fpr_rule")  # an fpr<= threshold: the interval its test rate should lie in
    metrics = evaluate_scores(y_test, p_test, t, n_boot=cfg.n_boot, seed=cfg.seed, rank_score=p_test_u,
                              rule_info=rule_info)
    val_metrics = evaluate_scores(y_val, p_val, t, n_boot=0, rank_score=post.uncalibrated(np.asarray(raw["val"])))
    from ..evaluation.calibration import calibration_in_the_large
    in_the_large = {"before_calibration": calibration_in_the_large(y_test, p_test_u),
                    "after_calibration": calibration_in_the_large(y_test, p_test)}
    _write_scores(run_dir / "scores_test.csv", paths_test, y_test, p_test, t)
    from ..evaluation.by_type import ap_by_type
    by_type = ap_by_type(y_test, p_test_u, [rows[i].get("type", "") for i in split.test])
    try:  # what the split realised (written by train); an older run folder has none
        balance = read_json(run_dir / "config.json").get("split_realised")
    except (OSError, ValueError, AttributeError):
        balance = None
    results = {
        "strategy": model.meta["strategy"]["name"], "mode": model.meta["mode"],
        "test": metrics, "val": val_metrics, "threshold": post.threshold.to_dict(),
        "postprocess": {k: v for k, v in post.to_dict().items() if k != "threshold"},
        "train": train_info, "elapsed_seconds": elapsed if elapsed is not None else prev.get("elapsed_seconds"),
        "split": balance, "ap_by_type": by_type,
        "calibration_in_the_large": in_the_large,
        **({"localisation": localisation} if localisation else {}),
    }
    write_json(run_dir / "results.json", results)
    if examples is None:
        examples = {p.stem: [(str(p), p.stem)] for p in sorted((run_dir / "examples").glob("*.png"))}
    build_run_report(
        run_dir,
        {"test": {"y": y_test, "score": p_test, "score_uncalibrated": p_test_u, "paths": paths_test,
                  "masks": masks_for_paths(cfg.data, cfg.positive, paths_test), "heatmap": _heatmap_hook(model)},
         "val": {"y": y_val, "score": p_val, "paths": paths_val},
         "threshold": post.threshold,
         "calibration": {"method": post.calibrator.method if hasattr(post.calibrator, "method") else cfg.calibration,
                         "prior_correction": ({"train_prior": post.train_prior, "true_prior": post.true_prior}
                                              if post.prior_correction and post.train_prior is not None else None)},
         "name": model.meta["strategy"]["name"], "warnings": run_warnings(run_dir),
         "split": balance, "ap_by_type": by_type,
         "localisation": localisation, "rule_info": rule_info,
         "history": {"epochs": train_info.get("history"), "kept_epoch": train_info.get("best_epoch")}},
        {**cfg.to_dict(), "recipe": model.meta["strategy"]},
        images=examples or None, n_boot=cfg.n_boot, seed=cfg.seed,
    )
    return RunResult(run_dir, metrics, t, model.meta["strategy"]["name"])


def _heatmap_hook(model: Any) -> Any:
    """``path -> (H, W, 3)`` photo with its heat map blended in, for the report's thumbnails; None for global heads.

    The map is :meth:`~imbvision.model.Model.explain`'s patch evidence scaled *per image* (1st to
    99.5th percentile, :func:`imbvision.explain.overlay_heatmap`): bright = the patches the model found
    most object-like in that image, so a missed object shows whether the model looked in the right place.
    The report says so beside the thumbnails; the image's score is printed under each.
    """
    from ..explain import is_patch_model

    if not is_patch_model(model.meta):
        return None

    def heat(path: str) -> np.ndarray | None:
        from ..explain import fit_to_map, overlay_heatmap

        try:
            img = model.decode(path, "patches")  # decoded as training decoded its patch canvas
            heat = np.asarray(model.explain([img])[0], dtype=np.float64)
            return overlay_heatmap(fit_to_map(img, heat)[0], heat, min_side=1)  # a capped map: image to its size
        except Exception:  # noqa: BLE001 - a map that cannot be made must not hide the thumbnail
            return None

    return heat
