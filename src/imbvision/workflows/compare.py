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

from .._io import ensure_output_dir, read_json, write_json
from ..errors import ConfigError
from ..notices import collect_warnings, run_warnings
from ..strategies.registry import compose, list_strategies
from .._fingerprint import combine, records_fingerprint
from ..training.cell import embed_features, representation_of
from ..experiments.cell import CellSettings, cached_backbone, cell_id, compute_cell
from ..experiments.cellstore import cell_key, has_cells, load_cell, read_cells, write_cell
from ..experiments.config import BASELINE, CompareConfig
from ..experiments.recommendation import recommend
from .._text import plural
from ..experiments.split_plan import FIXED_TEST_REPLICATION, fixed_test_of, plan_splits, say_splits, split_rows
from ..experiments.stats import ALPHA, compare_to_baseline, few_splits_note, mean_ci, min_exact_p
from ..training.localise import localisation_means
from ..experiments.zero_positive import plan_for_positives
from ..experiments.terminal import _ci_cell, print_leaderboard  # noqa: F401 - print_leaderboard re-exported (the CLI imports it)

__all__ = ["DEFAULT_STRATEGIES", "CompareResult", "CompareConfig", "CellSettings", "run_compare", "resolve_strategies",
           "print_leaderboard"]

#: The default set: the baseline, one of each kind of remedy.
DEFAULT_STRATEGIES = (
    "ce", "weighted-ce", "focal", "balanced-sampler", "logit-adjusted", "random-under", "smote",
    "augment-oversample", "copy-paste", "mixup", "patch", "normality", "fusion",
)


#: Settings of the analysis, not of a cell: a cell's scores do not depend on them, so they stay out of its key
#: (a declared primary, more bootstrap draws or more seeds reuse every finished cell).
#: Keys of config.json a rerun may change: the strategies (new ones add cells), how the resolution was
#: chosen (its values are compared) and the folder it ran from.
_NOT_COMPARED = ("strategies", "resolution", "workdir")
_NOT_IN_CELL_KEY = ("strategies", "seeds", "n_boot", "data", "resolution", "primary", "workdir")


def resolve_strategies(spec: str | Sequence[str], baseline: str = BASELINE) -> list[str]:
    """``default``, ``all`` or a comma-separated list of strategy strings (each may use '+'), ``baseline`` first."""
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
    if baseline not in names:
        names.insert(0, baseline)
    return list(dict.fromkeys(names))


@dataclass
class CompareResult:
    out: Path
    leaderboard: list[dict[str, Any]]
    recommendation: str
    wall_seconds: float
    cells_reused: int = 0  # finished cells of an earlier run of the same data and settings (resume)
    fixed_test: bool = False  # every split shares a given test set (--split-file, --split official)
    baseline: str = BASELINE  # the row every ΔAP is against (normality when no training positive)

    @property
    def report(self) -> Path:
        return self.out / "report.html"


@collect_warnings
def run_compare(cfg: CompareConfig | str | None = None, /, **overrides: Any) -> CompareResult:
    """Compare strategies over seeds (and folds) and write a leaderboard with paired tests.

    Parameters
    ----------
    cfg
        A :class:`~imbvision.experiments.config.CompareConfig`, or the data source (its ``data``);
        keyword ``overrides`` set or replace its fields
        (e.g. ``run_compare("demo", strategies="ce,focal", seeds=5)``).

    Returns a :class:`CompareResult`; files: ``leaderboard.csv``, ``leaderboard.json``,
    ``report.html``, ``config.json``, ``cells/*.json``. Raises ConfigError when another process
    writes into ``out`` (naming it) or a setting is invalid.
    """
    t0 = time.perf_counter()
    c = CompareConfig.make(cfg, **overrides)
    if c.executor == "ray":
        from ..experiments.ray_executor import require_ray
        require_ray()  # before any work: say how to install it
    names = resolve_strategies(c.strategies)
    if c.primary is not None and c.primary not in names:
        raise ConfigError(f"--primary {c.primary!r} is not one of the compared strategies; valid: "
                          + ", ".join(n for n in names if n != BASELINE))
    from .._rundir import folder_lock, refuse_out_in_data
    refuse_out_in_data(c.out, c.data)  # its example PNGs would be read back as data
    _refuse_foreign_folder(Path(c.out))
    with folder_lock(c.out):  # one writer per compare folder: a second compare into it is refused, naming the first
        return _compare_in(c, names, t0)


#: What a compare folder holds (any of them: it is one, perhaps from a start that stopped early).
_COMPARE_FILES = ("config.json", "cells", "bad_files.csv", "leaderboard.json")


def _refuse_foreign_folder(out: Path) -> None:
    """Refuse an ``--out`` that holds other files and no comparison (its files would be mixed with them)."""
    if not out.is_dir():
        if out.exists():
            raise ConfigError(f"--out {out} is an existing file, not a folder; choose another --out")
        return
    entries = sorted(p.name for p in out.iterdir())
    if entries and not any((out / n).exists() for n in _COMPARE_FILES):
        shown = ", ".join(entries[:5]) + (" …" if len(entries) > 5 else "")
        raise ConfigError(f"--out {out} is a folder with other files ({shown}) and no comparison; choose a new or "
                          "empty folder (a compare folder is resumed by rerunning into it)")


def _compare_in(c: CompareConfig, names: list[str], t0: float) -> CompareResult:
    """The body of :func:`run_compare`, run while holding the lock on ``c.out``."""
    from ..data.checks import load_checked
    from ..data.sources import cache_root

    out = ensure_output_dir(c.out)
    cfg_d = _fingerprint(c, names)  # here too: an unreadable --split-file fails before the data check
    cfg_path = out / "config.json"
    cache = Path(c.cache_dir) if c.cache_dir else cache_root()
    bb = cached_backbone(c.backbone, c.weights)

    from ..training.prepare import duplicate_features

    rep = load_checked(c.data, positive=c.positive, skip_bad=c.skip_bad, out_dir=out, progress=c.progress,
                       group_duplicates=c.group_duplicates,
                       features=duplicate_features(cache_dir=cache, progress=c.progress))  # one fixed representation
    ds = rep.dataset
    y = ds.labels
    # The input scale: given, or chosen from the images by the resolution policy (recorded, not part of the key:
    # the values it resolves to are)
    from ..backbones.resolution import with_resolution
    c, resolution = with_resolution(c, [r.path for r in ds.records])
    cfg_d = _fingerprint(c, names)
    if cfg_path.exists():
        old = read_json(cfg_path)
        keep = {k: v for k, v in old.items() if k not in _NOT_COMPARED}
        new = {k: v for k, v in cfg_d.items() if k not in _NOT_COMPARED}
        if keep != new and has_cells(out / "cells"):
            diff = "; ".join(f"{k}: {_shown(keep, k)} → {_shown(new, k)}"
                             for k in sorted(set(keep) | set(new)) if keep.get(k) != new.get(k))
            raise ConfigError(f"{out} holds a compare run with other settings ({diff}; saved in {cfg_path}); "
                              "rerun with those settings to continue it, or use a new --out to start afresh")
    cfg_d["resolution"] = resolution.to_dict()
    cfg_d["workdir"] = str(Path.cwd())  # relative paths in data/split_file are relative to it (train --from)
    fixed_test, split_notes = fixed_test_of(c, ds, rep.bad)
    balances: list[dict[str, Any]] = []
    splits = plan_splits(ds, c.seeds, c.folds, c.val, c.test, c.train_positive_rate, fixed_test, balances)
    say_splits(splits, balances, split_notes, c.progress)
    names, baseline = plan_for_positives(names, splits, y, c.threshold, c.calibration, resolve_strategies,
                                         BASELINE)  # no training positive: normality variants against normality
    if c.primary is not None and c.primary == baseline:  # before any cell runs
        raise ConfigError(f"--primary {c.primary!r} is the baseline every remedy is tested against; name a remedy: "
                          + ", ".join(n for n in names if n != baseline))
    cfg_d["strategies"] = names
    # Written once the data and backbone are known good, so a failed start leaves nothing that blocks a fix.
    write_json(cfg_path, cfg_d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resolve_strategies has validated them; warnings are shown by `train`
        needed = [representation_of(compose(n)) for n in names]
    # Cells of patch-level heads are kept only while the patch features are the same kind.
    from ..backbones.patches import PATCH_VERSION
    patch_key = {"patch_features": f"{PATCH_VERSION}|{c.patch_layers}"}
    from ..backbones.embed import PREPROCESS_VERSION
    key_parts = (records_fingerprint(ds.records), bb.weights_id, PREPROCESS_VERSION,
                 {k: v for k, v in cfg_d.items() if k not in _NOT_IN_CELL_KEY})
    # a patch-level head's cells also carry the patch-feature version: the global heads' cells do not, so
    # adding or removing a patch head leaves them valid
    settings = CellSettings.of_spec(c, combine(*key_parts), combine(*key_parts, patch_key))
    X, embed_stats = embed_features(ds.records, bb, settings, needed, cache_dir=cache, progress=c.progress)
    if set(X) == {"global"}:
        X = X["global"]  # one array travels to the workers as before
    cells_dir = out / "cells"
    cells_dir.mkdir(exist_ok=True)
    todo = [(n, s, f, sp) for n in names for s, f, sp in splits
            if load_cell(cells_dir / f"{cell_id(n, s, f)}.json", cell_key(settings.key_for(n), n, s, f, sp)) is None]
    _run_cells(todo, c, X, y, ds.records, settings, out, len(names) * len(splits),
               f"compare: {plural(len(names), 'strategy', 'strategies')} × {plural(len(splits), 'split')}")
    cells = read_cells(cells_dir, names, splits, settings.key_for)  # verified again: a cell changed meanwhile is refused
    board, rec = _aggregate(names, splits, cells, y, c.n_boot, baseline, primary=c.primary, folds=c.folds)
    wall = time.perf_counter() - t0
    result = CompareResult(out, board, rec, wall, len(names) * len(splits) - len(todo), fixed_test is not None,
                           baseline)
    _write_outputs(result, cfg_d, cells, splits, y, ds, embed_stats, balances)
    return result


def _shown(cfg: dict[str, Any], key: str) -> str:
    """A fingerprint value as a user would give it; a ``when-set`` setting absent from an older folder is
    shown as the value it then had (``stretch``), never as an unknown."""
    if key in cfg:
        return repr(cfg[key])
    f = CompareConfig.model_fields.get(key)
    x = (f.json_schema_extra or {}) if f is not None else {}
    if x.get("key") == "when-set":
        return repr(x.get("unset", f.default))
    return "(not recorded)"


def _fingerprint(c: CompareConfig, names: list[str]) -> dict[str, Any]:
    """A comparison's ``config.json``: the run specification's fingerprint and the comparison's own keys.

    A folder holding cells of another fingerprint is refused (naming what differs); the cell key is
    this minus :data:`_NOT_IN_CELL_KEY`.
    """
    return {**c.fingerprint(), "strategies": names, "seeds": c.seeds, "folds": c.folds, "mode": c.mode,
            "n_boot": c.n_boot, "cell_scores": "float64 prior-corrected logit",  # older cells held probabilities
            **({"primary": c.primary} if c.primary is not None else {})}


def _run_cells(todo: list, c: CompareConfig, X: Any, y: np.ndarray, records: Sequence, settings: CellSettings,
               out: Path, total: int, desc: str) -> None:
    """Compute and write the missing cells with the configured executor (each cell: :func:`compute_cell`)."""
    from .._progress import progress_bar

    cells_dir = out / "cells"

    def work(item):
        name, s, f, sp = item
        write_cell(cells_dir / f"{cell_id(name, s, f)}.json",
                   compute_cell(name, s, f, sp, X, y, records, settings, out / "synthetic"))
        return name

    with progress_bar(c.progress) as bar:
        task = bar.add_task(desc, total=total, completed=total - len(todo))
        if c.executor == "ray":
            from ..experiments.ray_executor import run_cells_ray
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


def _split_sizes(splits) -> tuple[float, float]:
    """Mean training and test images per split, for the corrected variance of split statistics."""
    return (float(np.mean([len(sp.train) for _, _, sp in splits])),
            float(np.mean([len(sp.test) for _, _, sp in splits])))


def _cell_ranking(cell: dict[str, Any], y: np.ndarray) -> dict[str, Any]:
    """AP, ROC-AUC and recall at precision ≥ 0.9 of one cell, from its stored full-precision test scores."""
    from ..evaluation import ranking_metrics

    return ranking_metrics(y[np.asarray(cell["test_index"])], np.asarray(cell["test_score"], dtype=np.float64))


def _statistics(splits, k: int) -> dict[str, Any]:
    """What the leaderboard's intervals and p-values are, for leaderboard.json and the report."""
    n_train, n_test = _split_sizes(splits)
    fixed = bool(splits) and all(sp.fixed_test for _, _, sp in splits)
    return {"unit": "train/validation draw around a fixed test set" if fixed else "split", "splits": k,
            "fixed_test": fixed, **({"replication": FIXED_TEST_REPLICATION} if fixed else {}),
            "n_train": n_train, "n_test": n_test,
            "test": "corrected resampled t-test on per-split ΔAP (Nadeau & Bengio 2003)",
            "variance_factor": 1.0 / k + n_test / n_train, "multiplicity": "Holm over strategies", "alpha": ALPHA,
            "min_exact_p": min_exact_p(k), "few_splits": few_splits_note(k, ALPHA)}


def _clip(ci: list[float] | None) -> list[float] | None:
    """An interval of ΔAP cut to the values ΔAP can take, [−1, 1] (its decision is unchanged: 0 lies inside)."""
    return None if ci is None else [max(-1.0, ci[0]), min(1.0, ci[1])]


def _aggregate(names, splits, cells, y, n_boot, baseline=BASELINE, *, primary=None, folds=None):
    """Leaderboard rows (sorted by AP) and the recommendation.

    Every ranking number comes from the cells' stored test scores, so the AP column, ΔAP, its interval,
    p and the pooled PR curves rest on one set of scores. ``n_boot`` is unused: the split-level test
    resamples nothing (kept for the call site).
    """
    keys = [(s, f) for s, f, _ in splits]
    n_train, n_test = _split_sizes(splits)
    per = {n: [_cell_ranking(cells[(n, s, f)], y) for s, f in keys] for n in names}
    ap = {n: np.array([m["ap"] for m in per[n]], dtype=np.float64) for n in names}
    deltas = {n: ap[n] - ap[baseline] for n in names if n != baseline}
    tests = compare_to_baseline(deltas, n_train=n_train, n_test=n_test, alpha=ALPHA, primary=primary)
    rows = []
    for n in names:
        cs = [cells[(n, s, f)] for s, f in keys]
        ap_m, ap_sd, lo, hi = mean_ci(ap[n], n_train=n_train, n_test=n_test)
        row = {"strategy": n, "ap_mean": ap_m, "ap_std": ap_sd,
               "ap_ci": None if lo is None else [max(0.0, lo), min(1.0, hi)],  # AP lives in [0, 1]
               "ap_per_split": ap[n].tolist(),
               "recall_at_p90": float(np.mean([m["recall_at_precision"] for m in per[n]])),
               "roc_auc": float(np.mean([m["roc_auc"] for m in per[n]])),
               "f1": float(np.mean([c["f1"] for c in cs])), "mcc": float(np.mean([c["mcc"] for c in cs])),
               "recall": float(np.mean([c["recall"] for c in cs])),
               "precision": float(np.mean([c["precision"] for c in cs])), "head": cs[0]["head"],
               "brier": float(np.mean([c["brier"] for c in cs])) if all("brier" in c for c in cs) else None,
               **_fusion_weights(cs),
               "fit_seconds": float(np.mean([c["timing"]["fit_seconds"] for c in cs])), "cells": len(cs),
               **localisation_means(cs)}
        if n != baseline:
            t, d = tests[n], deltas[n]
            row.update({"delta_ap": t["mean"], "delta_ci": _clip(t["decision_ci"]),
                        "delta_ci_level": t["decision_level"], "delta_ci95": _clip(t["ci"]), "p": t["p"], "p_holm": t["p_holm"], "beyond_noise": t["beyond_noise"],
                        "t": t["t"], "df": t["df"], "delta_per_split": d.tolist(),
                        "splits_better": int((d > 0).sum()), "splits_worse": int((d < 0).sum()),
                        "test_note": t["note"], "gate": t["gate"]})
        rows.append(row)
    rows.sort(key=lambda r: -r["ap_mean"])
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows, recommend(rows, baseline, n_train=n_train, n_test=n_test, folds=folds, primary=primary)


def _fusion_weights(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean stacker weight per representation over a fusion head's cells, and the one that won."""
    ws = [c["head_info"]["fusion_weights"] for c in cells if "fusion_weights" in c.get("head_info", {})]
    if not ws:
        return {}
    mean = {k: float(np.mean([w[k] for w in ws])) for k in ws[0]}
    return {"fusion_weights": mean, "fusion_winner": max(mean, key=mean.get)}


_CSV_COLS = ("rank", "strategy", "ap_mean", "ap_std", "ap_ci_lo", "ap_ci_hi", "delta_ap", "delta_ci_lo", "delta_ci_hi",
             "delta_ci_level", "p", "p_holm", "beyond_noise", "splits_better", "splits_worse", "recall_at_p90", "f1",
             "mcc", "recall", "precision", "roc_auc", "brier", "pixel_auroc", "aupro", "head", "fit_seconds", "cells")


def _fmt(v: Any) -> str:
    """A CSV cell: floats at full precision (``repr`` round-trips float64), ``None`` empty."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _write_outputs(res: CompareResult, cfg: dict, cells: dict, splits, y: np.ndarray, ds, embed_stats: dict,
                   balances: list | None = None) -> None:
    from .._csv import write_csv
    from ..evaluation import Report, plot_pr_curves

    out = res.out
    k = res.leaderboard[0]["cells"]
    st = _statistics(splits, k)
    rows = []
    for r in res.leaderboard:
        ap_ci, d_ci = r.get("ap_ci") or [None, None], r.get("delta_ci") or [None, None]
        flat = {**r, "ap_ci_lo": ap_ci[0], "ap_ci_hi": ap_ci[1], "delta_ci_lo": d_ci[0], "delta_ci_hi": d_ci[1]}
        rows.append([_fmt(flat.get(c)) for c in _CSV_COLS])
    write_csv(out / "leaderboard.csv", _CSV_COLS, rows)
    write_json(out / "leaderboard.json", {"config": cfg, "statistics": st, "leaderboard": res.leaderboard,
                                          "recommendation": res.recommendation, "splits": balances or [],
                                          "timing": {"wall_seconds": res.wall_seconds, "embedding": embed_stats}})
    # Overlaid PR curves: the stored test scores pooled over cells per strategy (top 8 by AP).
    curves = {}
    for r in res.leaderboard[:8]:
        ys, ss = [], []
        for s, f, _ in splits:
            c = cells[(r["strategy"], s, f)]
            ys.append(y[np.asarray(c["test_index"])])
            ss.append(np.asarray(c["test_score"], dtype=np.float64))
        curves[r["strategy"]] = (np.concatenate(ys), np.concatenate(ss))
    rep = Report(f"imbvision compare — {cfg['data']}",
                 subtitle=f"{plural(len(res.leaderboard), 'strategy', 'strategies')} × {plural(len(splits), 'split')} "
                          f"({plural(cfg['seeds'], 'seed')}"
                          + (f" × {plural(cfg['folds'], 'fold')}" if cfg.get("folds") else "") + "), head mode")
    rep.add_callout(res.recommendation, kind="note")
    if st["few_splits"] and st["few_splits"] not in res.recommendation:  # said once: the recommendation holds it
        rep.add_callout(st["few_splits"], kind="warning")
    for note in run_warnings(out):  # double prior correction, few positives... (imbvision.notices)
        rep.add_callout(note, kind="warning")
    if st.get("replication"):
        rep.add_callout(st["replication"], kind="note")
    npos = int(y.sum())
    rep.add_cards([("images", len(y)), ("positive", npos), ("positive rate", f"{npos / len(y):.1%}"),
                   ("wall time", f"{res.wall_seconds:.0f} s"
                    + (f" (resumed: {res.cells_reused} cells reused)" if res.cells_reused else ""))])
    rep.add_heading("Leaderboard")
    rep.add_text(
        f"The split is the unit of evidence: every strategy is fitted and tested on the same {plural(k, 'split')}. AP is the "
        "test average precision (ranking on the prior-corrected, uncalibrated score, so calibration cannot move "
        f"it), mean over splits. ΔAP is the mean of the per-split differences against the plain `{res.baseline}` "
        "baseline, tested with the corrected resampled t-test of Nadeau & Bengio (2003): overlapping splits "
        f"share images, so the variance of a mean over splits uses 1/K + n_test/n_train = "
        f"{st['variance_factor']:.3f} (K = {k}, {st['n_test']:.0f} test and {st['n_train']:.0f} training images per "
        "split) instead of 1/K; the AP interval uses the same factor. p-values are Holm-adjusted over the "
        f"strategies; a remedy is beyond noise when its Holm-adjusted p < {ALPHA}. The ΔAP interval is at Holm's "
        "level for that strategy, so it excludes 0 exactly when the decision says beyond noise. F1, MCC, recall "
        "and precision are at the threshold tuned on validation (calibrated probabilities).")
    table, table2 = [], []
    for r in res.leaderboard:
        table.append({
            "rank": r["rank"], "strategy": r["strategy"],
            "AP [CI]": f"{r['ap_mean']:.3f} {_ci_cell(r['ap_ci'])}",
            f"ΔAP vs {res.baseline} [CI at Holm's level]": "—" if "delta_ap" not in r else
            f"{r['delta_ap']:+.3f} {_ci_cell(r['delta_ci'], '{:+.3f}')}",
            "p (Holm)": "—" if r.get("p_holm") is None else f"{r['p_holm']:.2g}",
            "beyond noise": "—" if "delta_ap" not in r else ("yes" if r["beyond_noise"] else "no"),
            "splits better/worse": "—" if "delta_ap" not in r else f"{r['splits_better']}/{r['splits_worse']}",
            "recall@P≥0.9": f"{r['recall_at_p90']:.2f}", "fit s": f"{r['fit_seconds']:.1f}",
        })
        table2.append({
            "strategy": r["strategy"], "F1": f"{r['f1']:.2f}", "MCC": f"{r['mcc']:.2f}",
            "recall": f"{r['recall']:.2f}", "precision": f"{r['precision']:.2f}",
            "ROC-AUC": f"{r['roc_auc']:.3f}", "Brier": "—" if r.get("brier") is None else f"{r['brier']:.4f}",
            **({"pixel AUROC": "—" if "aupro" not in r else f"{r['pixel_auroc']:.3f}",
                "AUPRO": "—" if "aupro" not in r else f"{r['aupro']:.3f}"}
               if any("aupro" in x for x in res.leaderboard) else {}),
            "p (unadjusted)": "—" if r.get("p") is None else f"{r['p']:.2g}",
            "95% CI of ΔAP": "—" if "delta_ap" not in r else _ci_cell(r.get("delta_ci95"), "{:+.3f}"),
            "head": r["head"] + (f" (won: {r['fusion_winner']}; " + ", ".join(
                f"{k} {v:+.2f}" for k, v in r["fusion_weights"].items()) + ")" if r.get("fusion_weights") else ""),
        })
    rep.add_table(table)
    rep.add_heading("At the tuned threshold")
    rep.add_text("Threshold-dependent metrics (means over splits) at the threshold chosen on each split's validation "
                 "data; this is where re-weighting shows its effect. Pixel AUROC and AUPRO (per-region overlap to a "
                 "false-positive rate of 0.3, Bergmann et al. 2019/2021) score how well the heat maps of the heads "
                 "that draw them point at the masked objects of the test split, mean over splits. "
                 "Brier is the calibration quality of the "
                 f"probabilities (calibration: {cfg.get('calibration', 'none')}); AP and ROC-AUC do not depend on it. "
                 "The unadjusted p and plain 95% interval of ΔAP "
                 "are for reading one strategy alone; decisions use the Holm-adjusted ones above.")
    rep.add_table(table2)
    if k <= 30:
        rep.add_heading("ΔAP on each split")
        # columns named as in "Test AP per split" below (seed, and fold with --folds): one naming
        names = [f"seed {s}" + (f" fold {f}" if f is not None else "") for s, f, _ in splits]
        rep.add_table([{"strategy": r["strategy"], **{names[i] if i < len(names) else f"split {i + 1}": f"{v:+.3f}"
                                                       for i, v in enumerate(r["delta_per_split"])}}
                       for r in res.leaderboard if "delta_per_split" in r])
    if balances:
        rep.add_heading("The splits as realised")
        rep.add_text(f"Share of the images and prevalence of each part of every split, beside the request; a part "
                     f"more than {100 * balances[0]['tolerance']:g} points off (or a validation/test prevalence that "
                     "far from the data's) is flagged, with its cause in the warnings above. Before any "
                     "--train-positive-rate drop.")
        rep.add_table(split_rows(balances))
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
