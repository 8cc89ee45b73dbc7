"""``imbvision compare``: which remedy helps on *my* data?

Cells are strategies × seeds (× folds). All strategies of a seed share the
same split and the same cached embeddings, so the grid costs one embedding
pass plus cheap fits. Resampling and synthesis touch each training split
only; the threshold is tuned on validation; metrics come from test. Each
finished cell is stored atomically under ``OUT/cells/``, so a killed compare
run again continues where it stopped.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._io import ensure_output_dir, read_json, write_json, write_text
from ..errors import ConfigError
from ..strategies.registry import compose, list_strategies
from ..training.cell import embed_features, representation_of
from .cell import CellSettings, cached_backbone, cell_id, compute_cell
from .config import CompareConfig
from .stats import holm, mean_ci, paired_bootstrap_delta, wilcoxon_p

__all__ = ["DEFAULT_STRATEGIES", "CompareResult", "CompareConfig", "CellSettings", "run_compare", "resolve_strategies",
           "print_leaderboard"]

#: The default set: the baseline, one of each kind of remedy.
DEFAULT_STRATEGIES = (
    "ce", "weighted-ce", "focal", "balanced-sampler", "logit-adjusted", "random-under", "smote",
    "augment-oversample", "copy-paste", "mixup", "patch", "normality", "fusion",
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


def run_compare(cfg: CompareConfig | str | None = None, /, **overrides: Any) -> CompareResult:
    """Compare strategies over seeds (and folds) and write a leaderboard with paired tests.

    Parameters
    ----------
    cfg
        A :class:`~imbvision.experiments.config.CompareConfig`, or the data source (its ``data``);
        keyword ``overrides`` set or replace its fields
        (e.g. ``run_compare("demo", strategies="ce,focal", seeds=5)``).

    Returns a :class:`CompareResult`; files: ``leaderboard.csv``, ``leaderboard.json``,
    ``report.html``, ``config.json``, ``cells/*.json``.
    """
    from ..data.checks import check_dataset
    from ..data.sources import cache_root, load_source

    t0 = time.perf_counter()
    c = CompareConfig.make(cfg, **overrides)
    if c.executor == "ray":
        from .ray_executor import require_ray
        require_ray()  # before any work: say how to install it
    names = resolve_strategies(c.strategies)
    out = ensure_output_dir(c.out)
    kind = c.feature_kind
    cfg_d = {"data": c.data, "strategies": names, "seeds": c.seeds, "folds": c.folds, "mode": c.mode,
             "positive": c.positive, "train_positive_rate": c.train_positive_rate, "backbone": c.backbone,
             "weights": c.weights, "image_size": c.image_size, "tiles": c.tiles, "features": kind,
             "threshold": c.threshold, "calibration": c.calibration, "prior_correction": c.prior_correction,
             "val": c.val, "test": c.test, "max_synthetic": c.max_synthetic, "n_boot": c.n_boot}
    if c.resize != "stretch":  # absent for the default, so earlier run folders still match
        cfg_d["resize"] = c.resize
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = read_json(cfg_path)
        keep = {k: v for k, v in old.items() if k != "strategies"}
        if keep != {k: v for k, v in cfg_d.items() if k != "strategies"}:
            raise ConfigError(f"{out} holds a compare run with other settings ({cfg_path}); use a new --out to start afresh")
    write_json(cfg_path, cfg_d)
    ds = load_source(c.data, positive=c.positive)
    rep = check_dataset(ds, skip_bad=c.skip_bad, progress=c.progress)
    rep.write_bad_files(out / "bad_files.csv")
    ds = rep.dataset
    y = ds.labels
    settings = CellSettings(c.backbone, c.weights, c.image_size, c.tiles, kind, c.max_synthetic, c.threshold,
                            c.calibration, c.prior_correction, resize=c.resize, skip_bad=c.skip_bad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resolve_strategies has validated them; warnings are shown by `train`
        needed = [representation_of(compose(n)) for n in names]
    X, embed_stats = embed_features(ds.records, cached_backbone(c.backbone, c.weights), settings, needed,
                                    cache_dir=Path(c.cache_dir) if c.cache_dir else cache_root(), progress=c.progress)
    if set(X) == {"global"}:
        X = X["global"]  # one array travels to the workers as before
    splits = _splits(ds, c.seeds, c.folds, c.val, c.test, c.train_positive_rate)
    cells_dir = out / "cells"
    cells_dir.mkdir(exist_ok=True)
    todo = [(n, s, f, sp) for n in names for s, f, sp in splits if not (cells_dir / f"{cell_id(n, s, f)}.json").exists()]
    _run_cells(todo, c, X, y, ds.records, settings, out, len(names) * len(splits),
               f"compare: {len(names)} strategies × {len(splits)} splits")
    cells = {}
    for n in names:
        for s, f, _ in splits:
            cells[(n, s, f)] = read_json(cells_dir / f"{cell_id(n, s, f)}.json")
    board, rec = _aggregate(names, splits, cells, y, c.n_boot)
    wall = time.perf_counter() - t0
    result = CompareResult(out, board, rec, wall)
    _write_outputs(result, cfg_d, cells, splits, y, ds, embed_stats)
    return result


def _run_cells(todo: list, c: CompareConfig, X: Any, y: np.ndarray, records: Sequence, settings: CellSettings,
               out: Path, total: int, desc: str) -> None:
    """Compute and write the missing cells with the configured executor (each cell: :func:`compute_cell`)."""
    from rich.progress import Progress

    cells_dir = out / "cells"

    def work(item):
        name, s, f, sp = item
        write_json(cells_dir / f"{cell_id(name, s, f)}.json",
                   compute_cell(name, s, f, sp, X, y, records, settings, out / "synthetic"))
        return name

    with Progress(disable=not c.progress, transient=False) as bar:
        task = bar.add_task(desc, total=total, completed=total - len(todo))
        if c.executor == "ray":
            from .ray_executor import run_cells_ray
            run_cells_ray(todo, X=X, y=y, records=records, settings=settings, out=out, address=c.ray_address,
                          num_cpus=c.jobs if c.jobs > 1 else None, on_done=lambda _n: bar.advance(task))
        elif c.jobs > 1:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(max_workers=c.jobs) as pool:
                for _ in pool.map(work, todo):
                    bar.advance(task)
        else:
            for item in todo:
                work(item)
                bar.advance(task)


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
               **_fusion_weights(cs),
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


def _fusion_weights(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean stacker weight per representation over a fusion head's cells, and the one that won."""
    ws = [c["head_info"]["fusion_weights"] for c in cells if "fusion_weights" in c.get("head_info", {})]
    if not ws:
        return {}
    mean = {k: float(np.mean([w[k] for w in ws])) for k in ws[0]}
    return {"fusion_weights": mean, "fusion_winner": max(mean, key=mean.get)}


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
            "effect dz": "—" if r.get("effect_dz") is None else f"{r['effect_dz']:+.2f}",
            "head": r["head"] + (f" (won: {r['fusion_winner']}; " + ", ".join(
                f"{k} {v:+.2f}" for k, v in r["fusion_weights"].items()) + ")" if r.get("fusion_weights") else ""),
        })
    rep.add_table(table)
    rep.add_heading("At the tuned threshold")
    rep.add_text("Threshold-dependent metrics (means over splits) at the threshold chosen on each split's validation "
                 "data; this is where re-weighting shows its effect. Wilcoxon p (unadjusted) and Cohen's dz are over "
                 "the paired per-split AP differences.")
    rep.add_table(table2)
    rep.add_heading("Precision-recall curves (test, pooled over splits)")
    rep.add_image(plot_pr_curves(curves, title="PR curves, top strategies"), "Overlaid PR curves of the test scores pooled over splits (the legend's AP is of the pooled scores); the dashed line is the positive rate.")
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
