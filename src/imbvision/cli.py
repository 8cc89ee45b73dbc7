"""The ``imbvision`` command: one entry point, one sub-command per job.

Every error caused by input (a bad file, option or strategy name) is printed
as one clear line and exits with status 2 -- never a traceback.
"""

from __future__ import annotations

import csv
import functools
import io
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import ImbvisionError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Find a rare object in images: every class-imbalance remedy, compared on your data.")


def _err() -> Console:
    # Made per call so the width follows the terminal (or COLUMNS) at that moment.
    return Console(stderr=True)


def _out() -> Console:
    return Console()

DATA_HELP = "Data source: magnetic-tile:PATH, csv:PATH or PATH.csv, folder:PATH or a folder (with --positive), demo[:N[:RATE[:SEED]]]"


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ImbvisionError as exc:
            _err().print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            _err().print("[yellow]interrupted[/]: finished work is kept; rerun with --resume to continue")
            raise typer.Exit(130) from None
    return wrapper


def _metrics_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    for col in ("strategy", "AP [95% CI]", "ROC-AUC", "recall", "precision", "F1", "accuracy", "always-negative acc."):
        t.add_column(col, justify="left" if col == "strategy" else "right")
    for r in rows:
        m = r["metrics"]
        ci = m.get("ap_ci")
        ap = f"{m['ap']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        t.add_row(r["name"], ap, f"{m['roc_auc']:.3f}", f"{m['recall']:.3f}", f"{m['precision']:.3f}",
                  f"{m['f1']:.3f}", f"{m['accuracy']:.3f}", f"{m['always_negative_accuracy']:.3f}")
    return t


@app.command()
@_friendly
def strategies(family: Optional[str] = typer.Option(None, help="Only this family: loss, sampler, resampler, synthesis, mixing, head")) -> None:
    """List every remedy with its family, parameters and reference."""
    from .strategies.registry import list_strategies

    t = Table(title="imbvision strategies (compose with '+', parameters as name:key=value,key=value)")
    for col in ("name", "family", "what it does", "parameters (default, valid)", "reference"):
        t.add_column(col, overflow="fold")
    for r in list_strategies(family):
        params = "; ".join(f"{k}={p.default} ({p.describe()})" for k, p in r.params.items())
        t.add_row(r.name, r.family, r.description, params or "-", r.reference)
    _out().print(t)


@app.command()
@_friendly
def embed(
    data: str = typer.Option(..., "--data", help=DATA_HELP),
    out: Path = typer.Option(..., "--out", help="Output folder: features.safetensors, paths.csv, embed.json"),
    positive: Optional[str] = typer.Option(None, help="Positive class (class folders / named CSV labels)"),
    backbone: str = typer.Option("efficientnet_lite0", help="Registered backbone or any timm model name"),
    weights: Optional[str] = typer.Option(None, help="Local weights file (offline), or 'none' for random init"),
    image_size: int = typer.Option(224, help="Square input size (whole image, not cropped)"),
    tiles: int = typer.Option(0, help="Add max-pooled features of an N×N grid of overlapping crops (small objects)"),
    engine: str = typer.Option("auto", help="auto (ONNX when exact), onnx or torch"),
    batch_size: int = typer.Option(32),
    workers: Optional[int] = typer.Option(None, help="DataLoader workers for decoding"),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache folder (default ~/.cache/imbvision)"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="List bad files in bad_files.csv and go on"),
) -> None:
    """Embed images with a frozen backbone (cached: a second run reads the cache)."""
    from safetensors.numpy import save as st_save

    from ._io import ensure_output_dir, write_json
    from .backbones import embed_dataset
    from .data.checks import check_dataset
    from .data.sources import cache_root, load_source

    out = ensure_output_dir(out)
    ds = load_source(data, positive=positive)
    rep = check_dataset(ds, skip_bad=skip_bad, progress=True)
    if rep.write_bad_files(out / "bad_files.csv"):
        _err().print(f"[yellow]{len(rep.bad)} bad file(s) skipped[/]: see {out / 'bad_files.csv'}")
    emb = embed_dataset(rep.dataset, backbone=backbone, weights=weights, image_size=image_size, tiles=tiles,
                        cache_dir=cache_dir or cache_root(), batch_size=batch_size, workers=workers, engine=engine)
    arrays = {"global": emb.global_}
    if emb.tiles is not None:
        arrays["tiles"] = emb.tiles
    arrays["labels"] = rep.dataset.labels
    from ._io import atomic_write
    with atomic_write(out / "features.safetensors", "wb") as fh:
        fh.write(st_save(arrays))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", "path", "label"])
    for i, r in enumerate(rep.dataset.records):
        w.writerow([i, str(r.path), r.label])
    from ._io import write_text
    write_text(out / "paths.csv", buf.getvalue())
    write_json(out / "embed.json", {"data": data, "settings": emb.settings, "stats": emb.stats,
                                     "shape": list(emb.global_.shape)})
    s = emb.stats
    rate = f", {s['images_per_s']:.1f} img/s ({s.get('engine')})" if s.get("images_per_s") else ""
    _out().print(f"{s['images']} images: {s['computed']} computed, {s['from_cache']} from cache{rate} → {out}")


@app.command()
@_friendly
def train(
    data: str = typer.Option(..., "--data", help=DATA_HELP),
    out: Path = typer.Option(..., "--out", help="Run folder"),
    strategy: str = typer.Option("ce", "--strategy", help="Remedies joined by '+', e.g. focal:gamma=2+balanced-sampler (see `imbvision strategies`)"),
    mode: str = typer.Option("head", help="head (frozen embeddings, CPU seconds) or finetune (end to end)"),
    positive: Optional[str] = typer.Option(None, help="Positive class (class folders / named CSV labels)"),
    backbone: str = typer.Option("efficientnet_lite0"),
    weights: Optional[str] = typer.Option(None, help="Local backbone weights file, or 'none' for random init"),
    image_size: int = typer.Option(224),
    tiles: int = typer.Option(0, help="Head mode: add N×N tile features (small objects)"),
    resize: str = typer.Option("stretch", help="stretch (to a square) or keep-aspect (long side = image size, short side edge-padded)"),
    threshold: str = typer.Option("max-f1", help="Chosen on validation: max-f1 | recall>=0.95 | precision>=0.9 | fbeta:2 | fixed:0.5"),
    calibration: str = typer.Option("none", help="none | platt | isotonic (fitted on validation)"),
    prior_correction: bool = typer.Option(True, help="Undo the prior shift of resampling/weighting analytically"),
    seed: int = typer.Option(0),
    val: float = typer.Option(0.2, help="Validation fraction"),
    test: float = typer.Option(0.2, help="Test fraction"),
    train_positive_rate: Optional[float] = typer.Option(None, help="Keep only enough training positives for this rate"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="List bad files in bad_files.csv and go on"),
    cache_dir: Optional[str] = typer.Option(None),
    epochs: int = typer.Option(10, help="Fine-tune: epochs"),
    batch_size: int = typer.Option(32, help="Fine-tune: batch size"),
    lr: float = typer.Option(3e-4, help="Fine-tune: backbone learning rate"),
    head_lr: float = typer.Option(3e-3, help="Fine-tune: learning rate of the new linear head"),
    weight_decay: float = typer.Option(1e-4, help="Fine-tune: AdamW weight decay"),
    unfreeze: str = typer.Option("all", help="Fine-tune: 'all' or the number of last backbone blocks to train"),
    patience: int = typer.Option(5, help="Fine-tune: early stopping patience (epochs without val AP gain)"),
    accelerator: str = typer.Option("auto", help="Fine-tune: cpu, cuda, mps, auto"),
    devices: int = typer.Option(1, help="Fine-tune: number of devices (DDP when > 1)"),
    precision: str = typer.Option("32-true", help="Fine-tune: 32-true, bf16-mixed, 16-mixed"),
    dist_strategy: str = typer.Option("auto", "--dist-strategy", help="Fine-tune: Lightning Fabric strategy (auto, ddp, ...)"),
    workers: int = typer.Option(0, help="Fine-tune: DataLoader workers"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out"),
) -> None:
    """Train one model, tune its threshold on validation, report on test."""
    from .training.config import TrainConfig
    from .training.run import train as run_train

    cfg = TrainConfig(data=data, positive=positive, strategy=strategy, mode=mode, backbone=backbone, weights=weights,
                      image_size=image_size, tiles=tiles, resize=resize, threshold=threshold, calibration=calibration,
                      prior_correction=prior_correction, seed=seed, val=val, test=test,
                      train_positive_rate=train_positive_rate, skip_bad=skip_bad, cache_dir=cache_dir, epochs=epochs,
                      batch_size=batch_size, lr=lr, head_lr=head_lr, weight_decay=weight_decay, unfreeze=unfreeze, patience=patience, accelerator=accelerator,
                      devices=devices, precision=precision, dist_strategy=dist_strategy, workers=workers)
    res = run_train(cfg, out, resume=resume)
    _out().print(_metrics_table([{"name": res.recipe, "metrics": res.metrics}],
                                     f"test metrics at threshold {res.threshold:.3f} (chosen on validation)"))
    _out().print(f"report: {res.report}")


@app.command()
@_friendly
def evaluate(run: Path = typer.Argument(..., help="Run folder made by `imbvision train`")) -> None:
    """Re-score a run's test split and rewrite its report."""
    from .training.run import evaluate_run

    res = evaluate_run(run)
    _out().print(_metrics_table([{"name": res.recipe, "metrics": res.metrics}],
                                     f"test metrics at threshold {res.threshold:.3f}"))
    _out().print(f"report: {res.report}")


@app.command()
@_friendly
def predict(
    run: Path = typer.Argument(..., help="Run folder made by `imbvision train`"),
    images: list[Path] = typer.Argument(None, help="Image files"),
    data: Optional[str] = typer.Option(None, "--data", help="Or a data source (" + DATA_HELP + ")"),
    positive: Optional[str] = typer.Option(None),
    out: Optional[Path] = typer.Option(None, "--out", help="Write predictions CSV here (default: print)"),
    heatmaps: Optional[Path] = typer.Option(None, "--heatmaps", help="Write heat-map overlays (PNG) here (patch, normality, fusion heads)"),
) -> None:
    """Probability and decision (at the stored threshold) per image; unreadable files are listed, not fatal."""
    from ._io import write_text
    from .data.sources import load_source
    from .errors import ConfigError
    from .model import Model

    model = Model.load(run)
    paths = [str(p) for p in images or []]
    if data:
        paths += [str(r.path) for r in load_source(data, positive=positive).records]
    if not paths:
        raise ConfigError("no images given: pass image files or --data SOURCE")
    if heatmaps is not None:
        from .explain import write_heatmaps
        n_maps = write_heatmaps(model, paths, heatmaps)
        _err().print(f"{n_maps} heat maps → {heatmaps}")
    rows, bad = model.predict_files(paths)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "probability", "decision", "error"])
    for r in rows:
        w.writerow([r["path"], f"{r['probability']:.6f}", r["decision"], ""])
    for p, reason in bad:
        w.writerow([p, "", "", reason])
    if out:
        write_text(out, buf.getvalue())
        _out().print(f"{len(rows)} scored, {len(bad)} unreadable → {out}")
    else:
        sys.stdout.write(buf.getvalue())
    for p, reason in bad:
        _err().print(f"[yellow]unreadable[/]: {p}: {reason}")


@app.command("derive-masks")
@_friendly
def derive_masks_cmd(
    run: Path = typer.Argument(..., help="Run folder of a patch, normality or fusion model"),
    data: str = typer.Option(..., "--data", help=DATA_HELP),
    out: Path = typer.Option(..., "--out", help="Folder for masks/ and manifest.csv"),
    positive: Optional[str] = typer.Option(None),
) -> None:
    """Derive missing masks of positives from heat maps; writes a manifest copy-paste can train on."""
    from .data.sources import load_source
    from .explain import derive_masks
    from .model import Model

    manifest = derive_masks(Model.load(run), load_source(data, positive=positive).records, out)
    _out().print(f"manifest with derived masks: {manifest} (use --data {manifest})")


@app.command()
@_friendly
def audit(
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder: audit.html, suspects.csv, duplicates.csv, audit.json"),
    positive: Optional[str] = typer.Option(None),
    backbone: str = typer.Option("efficientnet_lite0"),
    weights: Optional[str] = typer.Option(None),
    tiles: int = typer.Option(0),
    k: int = typer.Option(10, help="Neighbours for the hardness and noise signals"),
    seed: int = typer.Option(0),
    cache_dir: Optional[str] = typer.Option(None),
    skip_bad: bool = typer.Option(False, "--skip-bad"),
    review: Optional[Path] = typer.Option(None, "--review", help="A suspects.csv with your decisions (keep/relabel/drop): write a new manifest"),
    manifest_out: Optional[Path] = typer.Option(None, "--manifest-out", help="With --review: the new manifest (default OUT/reviewed_manifest.csv)"),
) -> None:
    """Know the imbalance before training: counts, duplicates, hardness and suspect minority labels (never deletes)."""
    from ._io import ensure_output_dir
    from .audit import apply_review, run_audit
    from .backbones import embed_dataset
    from .data.checks import check_dataset
    from .data.sources import cache_root, load_source
    from .errors import ConfigError

    if data is None:
        raise ConfigError("--data is required (the dataset to audit, or the one the --review file was made from)")
    ds = load_source(data, positive=positive)
    if review is not None:
        target = manifest_out or (Path(out) if out else review.parent) / "reviewed_manifest.csv"
        summary = apply_review(review, ds, target)
        _out().print(f"new manifest: {target} ({summary})")
        return
    if out is None:
        raise ConfigError("--out is required for an audit")
    out = ensure_output_dir(out)
    rep = check_dataset(ds, skip_bad=skip_bad, progress=True, require_both_classes=False)
    rep.write_bad_files(out / "bad_files.csv")
    emb = embed_dataset(rep.dataset, backbone=backbone, weights=weights, tiles=tiles, cache_dir=cache_dir or cache_root())
    feats = emb.features("both" if tiles else "global")
    res = run_audit(rep.dataset, feats, out, k=k, seed=seed)
    n_sus = len(res.suspects) if hasattr(res, "suspects") else 0
    _out().print(f"{n_sus} suspect label(s) ranked in {out / 'suspects.csv'}; nothing was deleted. "
                 f"Fill its 'decision' column (keep/relabel/drop) and run: imbvision audit --data {data} "
                 f"--review {out / 'suspects.csv'}")
    _out().print(f"report: {out / 'audit.html'}")


@app.command()
@_friendly
def compare(
    data: str = typer.Option(..., "--data", help=DATA_HELP),
    out: Path = typer.Option(..., "--out", help="Output folder (resumable: rerun to continue)"),
    strategies: str = typer.Option("default", "--strategies", help="default | all | comma-separated list (each may use '+')"),
    seeds: int = typer.Option(3, help="Seeds (each a different split)"),
    folds: Optional[int] = typer.Option(None, help="k-fold per seed instead of one train/val/test split"),
    mode: str = typer.Option("head", help="head (strategies on cached embeddings)"),
    positive: Optional[str] = typer.Option(None),
    train_positive_rate: Optional[float] = typer.Option(None, help="Keep only enough training positives for this rate (val/test untouched)"),
    backbone: str = typer.Option("efficientnet_lite0"),
    weights: Optional[str] = typer.Option(None),
    image_size: int = typer.Option(224),
    tiles: int = typer.Option(0, help="Add N×N tile features (small objects)"),
    resize: str = typer.Option("stretch", help="stretch (to a square) or keep-aspect (long side = image size, short side edge-padded)"),
    threshold: str = typer.Option("max-f1", help="Threshold rule, tuned on each validation split"),
    calibration: str = typer.Option("none"),
    skip_bad: bool = typer.Option(False, "--skip-bad"),
    cache_dir: Optional[str] = typer.Option(None),
    jobs: int = typer.Option(1, help="Cells in parallel: threads locally; with --executor ray the CPUs of the private Ray (ignored with --ray-address)"),
    executor: str = typer.Option("local", help="local or ray (pip install imbvision[ray])"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="An existing Ray cluster, e.g. HEAD:6379"),
) -> None:
    """Which remedy helps on my data? A leaderboard with paired tests against the plain baseline."""
    from .experiments.compare import print_leaderboard, run_compare

    res = run_compare(data, strategies=strategies, seeds=seeds, folds=folds, mode=mode, out=out, positive=positive,
                      train_positive_rate=train_positive_rate, backbone=backbone, weights=weights,
                      image_size=image_size, tiles=tiles, resize=resize, threshold=threshold, calibration=calibration,
                      skip_bad=skip_bad, cache_dir=cache_dir, jobs=jobs, executor=executor,
                      ray_address=ray_address, progress=True)
    print_leaderboard(res, _out())
    _out().print(f"report: {res.report}")


@app.command()
@_friendly
def backbones() -> None:
    """List the registered backbones (any timm model name works too)."""
    from .backbones import list_backbones

    for b in list_backbones():
        _out().print(f"{b.name}: {b.description}")
    _out().print("Any timm model name also works: hub weights when online, --weights FILE offline.")


def _demo_quick(out: Path, n: int, rate: float, seed: int) -> None:
    from .training.run import train as run_train

    rows = []
    for strat in ("ce", "weighted-ce"):
        res = run_train(None, out / strat, data=f"demo:{n}:{rate}:{seed}", strategy=strat, seed=seed, n_boot=500,
                        progress=False)
        rows.append({"name": strat, "metrics": res.metrics})
    _out().print(_metrics_table(rows, "demo: logistic-regression head on frozen EfficientNet-Lite0 features"))


@app.command()
@_friendly
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder"),
    n: int = typer.Option(600, help="Images in the generated demo set"),
    rate: float = typer.Option(0.05, help="Fraction of images with the object"),
    seed: int = typer.Option(0),
    seeds: int = typer.Option(3, help="Seeds for the comparison"),
    quick: bool = typer.Option(False, help="Only ce vs weighted-ce, one seed"),
) -> None:
    """Generate the demo data and compare the default remedies on it (a few minutes on 2 cores)."""
    from ._io import ensure_output_dir
    from .data.sources import load_source

    out = ensure_output_dir(out)
    _err().print(f"generating/reading demo data: {n} images, {rate:.0%} with the object (seed {seed})")
    load_source(f"demo:{n}:{rate}:{seed}")
    try:
        from .experiments.compare import run_compare  # noqa: F401
    except ImportError:
        quick = True
    if quick:
        _demo_quick(out, n, rate, seed)
        return
    from .experiments.compare import print_leaderboard, run_compare

    res = run_compare(f"demo:{n}:{rate}:{seed}", strategies="default", seeds=seeds, out=out, progress=True)
    print_leaderboard(res, _out())
    _out().print(f"report: {res.report}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
