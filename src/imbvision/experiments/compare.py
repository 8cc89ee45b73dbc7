"""``imbvision compare``: which remedy helps on *my* data?

Cells are strategies × seeds (× folds). All strategies of a seed share the
same split and the same cached embeddings, so the grid costs one embedding
pass plus cheap fits. Resampling and synthesis touch each training split
only; the threshold is tuned on validation; metrics come from test. Each
finished cell is stored atomically under ``OUT/cells/``, so a killed compare
run again continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._io import ensure_output_dir, read_json, write_json, write_text
from ..errors import ConfigError
from ..notices import collect_warnings, run_warnings
from ..strategies.registry import compose, list_strategies
from .stats import holm, mean_ci, paired_bootstrap_delta, wilcoxon_p

__all__ = ["DEFAULT_STRATEGIES", "CompareResult", "run_compare", "resolve_strategies", "print_leaderboard"]

#: The default set: the baseline, one of each kind of remedy.
DEFAULT_STRATEGIES = (
    "ce", "weighted-ce", "focal", "balanced-sampler", "logit-adjusted", "random-under", "smote",
    "augment-oversample", "copy-paste", "mixup",
)
BASELINE = "ce"


def resolve_strategies(spec: str | Sequence[str]) -> list[str]:
    """``default``, ``all`` or a comma-separated list of strategy strings (each may use '+')."""
    if isinstance(spec, str):
        if spec == "default":
            names = list(DEFAULT_STRATEGIES)
        elif spec == "all":
            names = [r.name for r in list_strategies() if r.family != "head"] + ["linear", "mlp"]
        else:
            names = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        names = list(spec)
    if not names:
        raise ConfigError("no strategies given; use default, all or a comma-separated list")
    for n in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compose(n)  # validates names and parameters up front
    if BASELINE not in names:
        names.insert(0, BASELINE)
    return list(dict.fromkeys(names))


@dataclass
class CompareResult:
    out: Path
    leaderboard: list[dict[str, Any]]
    recommendation: str
    wall_seconds: float

    @property
    def report(self) -> Path:
        return self.out / "report.html"


def _cell_id(strategy: str, seed: int, fold: int | None) -> str:
    h = hashlib.sha1(strategy.encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in strategy)[:60]
    return f"{safe}-{h}__s{seed}" + (f"_f{fold}" if fold is not None else "")


def _splits(ds, seeds: int, folds: int | None, val: float, test: float, rate: float | None):
    from ..data.splits import kfold_splits, train_val_test_split
    from ..training.prepare import limit_train_positives

    out = []
    for s in range(seeds):
        if folds:
            for f, sp in enumerate(kfold_splits(ds, folds, seed=s, val=val)):
                out.append((s, f, sp))
        else:
            out.append((s, None, train_val_test_split(ds, val=val, test=test, seed=s)))
    if rate is not None:
        out = [(s, f, limit_train_positives(sp, ds.labels, rate, s)) for s, f, sp in out]
    return out


def _run_cell(strategy: str, seed: int, X: np.ndarray, y: np.ndarray, split, extra: tuple | None,
              threshold: str, calibration: str, prior_correction: bool) -> dict[str, Any]:
    from ..evaluation import ranking_metrics, threshold_metrics
    from ..training.head import fit_head, fit_postprocess

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recipe = compose(strategy)
        ex_X, ex_y = extra if extra is not None else (None, None)
        fit = fit_head(X[split.train], y[split.train], recipe, seed=seed, extra_X=ex_X, extra_y=ex_y)
        p_val, p_test = fit.predict_proba(X[split.val]), fit.predict_proba(X[split.test])
        post = fit_postprocess(p_val, y[split.val], train_prior=fit.effective_prior,
                               true_prior=float(y[split.val].mean()), prior_correction=prior_correction,
                               calibration=calibration, threshold=threshold)
    s_test = post.apply(p_test)
    t = post.threshold.threshold
    rank = ranking_metrics(y[split.test], s_test)
    at = threshold_metrics(y[split.test], s_test, t)
    return {
        "strategy": strategy, "seed": seed, "head": fit.head_name,
        "ap": rank["ap"], "roc_auc": rank["roc_auc"], "recall_at_p90": rank.get("recall_at_precision"),
        "threshold": t, "f1": at["f1"], "mcc": at["mcc"], "recall": at["recall"], "precision": at["precision"],
        "train_rows": fit.train_rows, "synthetic_rows": 0 if ex_X is None else int(len(ex_X)),
        "test_index": split.test.tolist(), "test_score": [round(float(v), 7) for v in s_test],
        "timing": {"fit_seconds": fit.fit_seconds},
    }


@dataclass(frozen=True)
class CellSettings:
    """Everything a cell needs besides its strategy, split and the shared arrays (small, picklable)."""

    backbone: str
    weights: str | None
    image_size: int
    tiles: int
    kind: str
    max_synthetic: int
    threshold: str
    calibration: str
    prior_correction: bool


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


def _cached_backbone(name: str, weights: str | None):
    """``create_backbone(name, weights=weights)``, built once per process (local threads and Ray workers alike)."""
    return _load_backbone(name, weights, _weights_stamp(weights))


def _compute_cell(strategy: str, seed: int, fold: int | None, split, X: np.ndarray, y: np.ndarray,
                  records: Sequence, settings: CellSettings, store: Path | None) -> dict[str, Any]:
    """One cell, from the shared arrays alone: the local and the Ray executor both call this.

    ``records`` are the dataset's records (pixel-space strategies read their training images); the backbone
    is built here, once per process, only when a strategy needs to embed new images. ``store`` caches those
    embeddings (``None``: no cache). Returns the cell's dict; the caller writes it.
    """
    extra = _synthetic_features(strategy, records, split, seed, settings, store)
    cell = _run_cell(strategy, seed, X, y, split, extra, settings.threshold, settings.calibration,
                     settings.prior_correction)
    cell["fold"] = fold
    return cell


def _synthetic_features(strategy: str, records: Sequence, split, seed: int, settings: CellSettings,
                        store: Path | None) -> tuple | None:
    """Embeddings of the images a strategy's synthesis/mixing makes from one training split (cached in ``store``)."""
    from safetensors.numpy import load_file, save

    from .._io import atomic_write

    from ..backbones import embed_arrays
    from ..training.pixels import make_synthetic_images

    recipe = compose(strategy)
    if not recipe.synthesis and recipe.mixing is None:
        return None
    image_size, tiles, kind, max_n = settings.image_size, settings.tiles, settings.kind, settings.max_synthetic
    pix = [s for s in recipe.specs if s.record.family in ("synthesis", "mixing")]
    key = hashlib.sha1(json.dumps([str(s) for s in pix] + [seed, split.train.tolist()[:50], len(split.train),
                                  kind, image_size, tiles, max_n]).encode()).hexdigest()[:16]
    path = store / f"{key}.safetensors" if store is not None else None
    if path is not None and path.exists():
        d = load_file(str(path))
        return d["X"], d["y"]
    recs = [records[i] for i in split.train]
    syn = make_synthetic_images(recs, recipe, seed=seed, image_size=image_size, max_n=max_n)
    if not len(syn):
        return None
    backbone = _cached_backbone(settings.backbone, settings.weights)
    emb = embed_arrays(syn.images, backbone, image_size=image_size, tiles=tiles)
    X, yy = emb.features(kind).astype(np.float32), np.asarray(syn.labels, dtype=np.float32)
    if store is None:
        return X, yy
    with atomic_write(path, "wb") as fh:
        fh.write(save({"X": X, "y": yy}))
    if not (store / "examples").exists() or len(list((store / "examples").glob("*.png"))) < 12:
        from ..evaluation import save_image_grid
        from ..htmlreport import draw_outline  # red outline: where the object was pasted / mixed in
        items = [(draw_outline(img, m if m is not None and np.shape(m) == np.shape(img)[:2] else None), f"y={lab:.2f}")
                 for img, lab, m in list(zip(syn.images, syn.labels, syn.masks or [None] * len(syn)))[:12]]
        name = "+".join(s.name for s in pix)
        save_image_grid(store / "examples" / f"{name}.png", items, title=f"{name}: new training images (seed {seed})")
    return X, yy


@collect_warnings
def run_compare(
    data: str,
    *,
    strategies: str | Sequence[str] = "default",
    seeds: int = 3,
    folds: int | None = None,
    mode: str = "head",
    out: str | Path = "runs/compare",
    positive: str | None = None,
    train_positive_rate: float | None = None,
    backbone: str = "efficientnet_lite0",
    weights: str | None = None,
    image_size: int = 224,
    tiles: int = 0,
    features: str = "auto",
    threshold: str = "max-f1",
    calibration: str = "none",
    prior_correction: bool = True,
    val: float = 0.2,
    test: float = 0.2,
    skip_bad: bool = False,
    cache_dir: str | Path | None = None,
    max_synthetic: int = 600,
    jobs: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    n_boot: int = 2000,
    progress: bool = True,
) -> CompareResult:
    """Compare strategies over seeds (and folds) and write a leaderboard with paired tests.

    Returns a :class:`CompareResult`; files: ``leaderboard.csv``, ``leaderboard.json``,
    ``report.html``, ``config.json``, ``cells/*.json``.
    """
    from ..backbones import embed_dataset
    from ..data.checks import check_dataset
    from ..data.sources import cache_root, load_source

    t0 = time.perf_counter()
    if mode != "head":
        raise ConfigError(
            "compare runs head mode (strategies on cached embeddings); fine-tune single candidates with "
            "`imbvision train --mode finetune`"
        )
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds} invalid; use 1 or more")
    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor {executor!r} invalid; valid: local, ray")
    if executor == "ray":
        from .ray_executor import require_ray
        require_ray()  # before any work: say how to install it
    names = resolve_strategies(strategies)
    out = ensure_output_dir(out)
    kind = features if features != "auto" else ("both" if tiles >= 2 else "global")
    cfg = {"data": data, "strategies": names, "seeds": seeds, "folds": folds, "mode": mode, "positive": positive,
           "train_positive_rate": train_positive_rate, "backbone": backbone, "weights": weights,
           "image_size": image_size, "tiles": tiles, "features": kind, "threshold": threshold,
           "calibration": calibration, "prior_correction": prior_correction, "val": val, "test": test,
           "max_synthetic": max_synthetic, "n_boot": n_boot}
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = read_json(cfg_path)
        keep = {k: v for k, v in old.items() if k != "strategies"}
        if keep != {k: v for k, v in cfg.items() if k != "strategies"}:
            raise ConfigError(f"{out} holds a compare run with other settings ({cfg_path}); use a new --out to start afresh")
    write_json(cfg_path, cfg)
    ds = load_source(data, positive=positive)
    rep = check_dataset(ds, skip_bad=skip_bad, progress=progress)
    rep.write_bad_files(out / "bad_files.csv")
    ds = rep.dataset
    y = ds.labels
    cache = Path(cache_dir) if cache_dir else cache_root()
    bb = _cached_backbone(backbone, weights)
    emb = embed_dataset(ds, backbone=bb, image_size=image_size, tiles=tiles, cache_dir=cache, progress=progress)
    X = emb.features(kind)
    splits = _splits(ds, seeds, folds, val, test, train_positive_rate)
    cells_dir = out / "cells"
    cells_dir.mkdir(exist_ok=True)
    todo = [(n, s, f, sp) for n in names for s, f, sp in splits if not (cells_dir / f"{_cell_id(n, s, f)}.json").exists()]
    settings = CellSettings(backbone, weights, image_size, tiles, kind, max_synthetic, threshold, calibration,
                            prior_correction)
    from rich.progress import Progress

    def work(item):
        name, s, f, sp = item
        cell = _compute_cell(name, s, f, sp, X, y, ds.records, settings, out / "synthetic")
        write_json(cells_dir / f"{_cell_id(name, s, f)}.json", cell)
        return name

    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task(f"compare: {len(names)} strategies × {len(splits)} splits", total=len(names) * len(splits),
                            completed=len(names) * len(splits) - len(todo))
        if executor == "ray":
            from .ray_executor import run_cells_ray
            run_cells_ray(todo, X=X, y=y, records=ds.records, settings=settings, out=out, address=ray_address,
                          num_cpus=jobs if jobs > 1 else None, on_done=lambda _n: bar.advance(task))
        elif jobs > 1:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                for _ in pool.map(work, todo):
                    bar.advance(task)
        else:
            for item in todo:
                work(item)
                bar.advance(task)
    cells = {}
    for n in names:
        for s, f, _ in splits:
            cells[(n, s, f)] = read_json(cells_dir / f"{_cell_id(n, s, f)}.json")
    board, rec = _aggregate(names, splits, cells, y, n_boot)
    wall = time.perf_counter() - t0
    result = CompareResult(out, board, rec, wall)
    _write_outputs(result, cfg, cells, splits, y, ds, emb.stats)
    return result


def _aggregate(names, splits, cells, y, n_boot):
    rows = []
    keys = [(s, f) for s, f, _ in splits]
    for n in names:
        cs = [cells[(n, s, f)] for s, f in keys]
        ap_m, ap_sd, ap_lo, ap_hi = mean_ci([c["ap"] for c in cs])
        ap_lo, ap_hi = max(0.0, ap_lo), min(1.0, ap_hi)  # AP lives in [0, 1]
        row = {"strategy": n, "ap_mean": ap_m, "ap_std": ap_sd, "ap_ci": [ap_lo, ap_hi],
               "recall_at_p90": float(np.mean([c["recall_at_p90"] for c in cs])),
               "f1": float(np.mean([c["f1"] for c in cs])), "mcc": float(np.mean([c["mcc"] for c in cs])),
               "recall": float(np.mean([c["recall"] for c in cs])), "precision": float(np.mean([c["precision"] for c in cs])),
               "roc_auc": float(np.mean([c["roc_auc"] for c in cs])), "head": cs[0]["head"],
               "fit_seconds": float(np.mean([c["timing"]["fit_seconds"] for c in cs])), "cells": len(cs)}
        if n != BASELINE:
            pairs = []
            diffs = []
            for s, f in keys:
                a, b = cells[(n, s, f)], cells[(BASELINE, s, f)]
                yt = y[np.asarray(a["test_index"])]
                pairs.append((yt, np.asarray(a["test_score"]), np.asarray(b["test_score"])))
                diffs.append(a["ap"] - b["ap"])
            boot = paired_bootstrap_delta(pairs, n_boot=n_boot, seed=0)
            sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0
            row.update({"delta_ap": boot["delta"], "delta_ci": [boot["lo"], boot["hi"]], "p_bootstrap": boot["p"],
                        "p_wilcoxon": wilcoxon_p(diffs), "effect_dz": (float(np.mean(diffs)) / sd) if sd > 0 else None})
        rows.append(row)
    adj = holm([r.get("p_bootstrap") for r in rows])
    for r, a in zip(rows, adj):
        r["p_holm"] = a
    rows.sort(key=lambda r: -r["ap_mean"])
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows, _recommend(rows)


def _recommend(rows: list[dict[str, Any]]) -> str:
    base = next(r for r in rows if r["strategy"] == BASELINE)
    better = [r for r in rows if r["strategy"] != BASELINE and r.get("p_holm") is not None
              and r["p_holm"] < 0.05 and r["delta_ap"] > 0]
    worse = [r for r in rows if r["strategy"] != BASELINE and r.get("p_holm") is not None
             and r["p_holm"] < 0.05 and r["delta_ap"] < 0]
    cells = base["cells"]
    lines = []
    if better:
        b = max(better, key=lambda r: r["delta_ap"])
        lines.append(
            f"Use {b['strategy']}: AP {b['ap_mean']:.3f} vs {base['ap_mean']:.3f} for the plain baseline, "
            f"ΔAP {b['delta_ap']:+.3f} (95% CI {b['delta_ci'][0]:+.3f} to {b['delta_ci'][1]:+.3f}, "
            f"Holm-adjusted p = {b['p_holm']:.3g}, {cells} paired splits)."
        )
        others = [r["strategy"] for r in better if r is not b]
        if others:
            lines.append(f"Also better than the baseline beyond noise: {', '.join(others)}.")
    else:
        top = next((r for r in rows if r["strategy"] != BASELINE), None)
        msg = "No remedy beats the baseline beyond noise"
        if top is not None and "delta_ci" in top:
            msg += (f": the best, {top['strategy']}, has ΔAP {top['delta_ap']:+.3f} "
                    f"(95% CI {top['delta_ci'][0]:+.3f} to {top['delta_ci'][1]:+.3f}) over {cells} paired splits")
        lines.append(msg + ". Keep the plain baseline and tune its threshold; more seeds or data would narrow the intervals.")
    if worse:
        lines.append(f"Worse than the baseline beyond noise: {', '.join(r['strategy'] for r in worse)}.")
    rec_best = max(rows, key=lambda r: r["recall"])
    if rec_best["strategy"] != BASELINE and rec_best["recall"] > base["recall"] + 0.02:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reweights = any(s.record.corrects_prior(s.params) for s in compose(rec_best["strategy"]).specs)
        why = (": re-weighting moves the threshold more than the ranking" if reweights
               else "")
        lines.append(
            f"At the tuned threshold, {rec_best['strategy']} finds more of the rare class (recall "
            f"{rec_best['recall']:.2f} vs {base['recall']:.2f}, precision {rec_best['precision']:.2f} vs "
            f"{base['precision']:.2f}){why}."
        )
    return " ".join(lines)


_CSV_COLS = ("rank", "strategy", "ap_mean", "ap_std", "ap_ci_lo", "ap_ci_hi", "delta_ap", "delta_ci_lo", "delta_ci_hi",
             "p_bootstrap", "p_wilcoxon", "p_holm", "effect_dz", "recall_at_p90", "f1", "mcc", "recall", "precision",
             "roc_auc", "head", "fit_seconds", "cells")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _write_outputs(res: CompareResult, cfg: dict, cells: dict, splits, y: np.ndarray, ds, embed_stats: dict) -> None:
    import csv
    import io

    from ..evaluation import Report, plot_pr_curves

    out = res.out
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(_CSV_COLS)
    for r in res.leaderboard:
        flat = {**r, "ap_ci_lo": r["ap_ci"][0], "ap_ci_hi": r["ap_ci"][1],
                "delta_ci_lo": (r.get("delta_ci") or [None, None])[0], "delta_ci_hi": (r.get("delta_ci") or [None, None])[1]}
        w.writerow([_fmt(flat.get(c)) for c in _CSV_COLS])
    write_text(out / "leaderboard.csv", buf.getvalue())
    write_json(out / "leaderboard.json", {"config": cfg, "leaderboard": res.leaderboard,
                                          "recommendation": res.recommendation,
                                          "timing": {"wall_seconds": res.wall_seconds, "embedding": embed_stats}})
    # Overlaid PR curves: test scores pooled over cells per strategy (top 8 by AP).
    curves = {}
    for r in res.leaderboard[:8]:
        ys, ss = [], []
        for s, f, _ in splits:
            c = cells[(r["strategy"], s, f)]
            ys.append(y[np.asarray(c["test_index"])])
            ss.append(np.asarray(c["test_score"]))
        curves[r["strategy"]] = (np.concatenate(ys), np.concatenate(ss))
    rep = Report(f"imbvision compare — {cfg['data']}",
                 subtitle=f"{len(res.leaderboard)} strategies × {len(splits)} splits ({cfg['seeds']} seeds"
                          + (f" × {cfg['folds']} folds" if cfg.get("folds") else "") + "), head mode")
    rep.add_callout(res.recommendation, kind="note")
    for note in run_warnings(out):  # double prior correction, few positives... (imbvision.notices)
        rep.add_callout(note, kind="warning")
    npos = int(y.sum())
    rep.add_cards([("images", len(y)), ("positive", npos), ("positive rate", f"{npos / len(y):.1%}"),
                   ("wall time", f"{res.wall_seconds:.0f} s")])
    rep.add_heading("Leaderboard")
    rep.add_text("AP is the test average precision, mean over splits with a Student-t 95% interval. ΔAP is against the "
                 "plain `ce` baseline on the same splits, with a paired stratified bootstrap interval; p-values are "
                 "Holm-adjusted over all strategies. F1, MCC, recall and precision are at the threshold tuned on validation.")
    table, table2 = [], []
    for r in res.leaderboard:
        table.append({
            "rank": r["rank"], "strategy": r["strategy"],
            "AP [95% CI]": f"{r['ap_mean']:.3f} [{r['ap_ci'][0]:.2f}, {r['ap_ci'][1]:.2f}]",
            "ΔAP vs ce [95% CI]": "—" if "delta_ap" not in r else
            f"{r['delta_ap']:+.3f} [{r['delta_ci'][0]:+.2f}, {r['delta_ci'][1]:+.2f}]",
            "p (Holm)": "—" if r.get("p_holm") is None else f"{r['p_holm']:.2g}",
            "recall@P≥0.9": f"{r['recall_at_p90']:.2f}", "fit s": f"{r['fit_seconds']:.1f}",
        })
        table2.append({
            "strategy": r["strategy"], "F1": f"{r['f1']:.2f}", "MCC": f"{r['mcc']:.2f}",
            "recall": f"{r['recall']:.2f}", "precision": f"{r['precision']:.2f}",
            "ROC-AUC": f"{r['roc_auc']:.3f}",
            "Wilcoxon p": "—" if r.get("p_wilcoxon") is None else f"{r['p_wilcoxon']:.2g}",
            "effect dz": "—" if r.get("effect_dz") is None else f"{r['effect_dz']:+.2f}", "head": r["head"],
        })
    rep.add_table(table)
    rep.add_heading("At the tuned threshold")
    rep.add_text("Threshold-dependent metrics (means over splits) at the threshold chosen on each split's validation "
                 "data; this is where re-weighting shows its effect. Wilcoxon p (unadjusted) and Cohen's dz are over "
                 "the paired per-split AP differences.")
    rep.add_table(table2)
    rep.add_heading("Precision-recall curves (test, pooled over splits)")
    rep.add_image(plot_pr_curves(curves, title="PR curves, top strategies"), "Overlaid PR curves of the test scores pooled over splits (the legend's AP is of the pooled scores); the dashed line is the positive rate.")
    from ..evaluation.report import add_per_seed
    add_per_seed(rep, {r["strategy"]: [cells[(r["strategy"], s, f)] for s, f, _ in splits] for r in res.leaderboard})
    ex = sorted((out / "synthetic" / "examples").glob("*.png")) if (out / "synthetic" / "examples").exists() else []
    if ex:
        rep.add_heading("What the pixel-space remedies made")
        rep.add_images([(str(p), p.stem) for p in ex])
    rep.add_heading("Configuration")
    rep.add_code(cfg)
    rep.save(out / "report.html")


def print_leaderboard(res: CompareResult, console) -> None:
    """Print the leaderboard and the recommendation with rich."""
    from rich.table import Table

    t = Table(title=f"test AP over {res.leaderboard[0]['cells']} splits; ΔAP vs ce with Holm-adjusted p")
    t.add_column("strategy", no_wrap=True)
    for col in ("AP [95% CI]", "ΔAP", "p", "recall", "F1"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in res.leaderboard:
        t.add_row(r["strategy"], f"{r['ap_mean']:.3f} [{r['ap_ci'][0]:.2f},{r['ap_ci'][1]:.2f}]",
                  "" if "delta_ap" not in r else f"{r['delta_ap']:+.2f}",
                  "" if r.get("p_holm") is None else f"{r['p_holm']:.2g}",
                  f"{r['recall']:.2f}", f"{r['f1']:.2f}")
    console.print(t)
    console.print(res.recommendation)
