"""The ``imbvision`` command: one entry point, one sub-command per job.

Every error caused by input (a bad file, option or strategy name) is printed
as one clear line and exits with status 2 -- never a traceback. Start-up is
kept under a second and a half: this module imports only typer and rich; each
command imports what it needs, and strategy names are checked against a
cached catalog (:mod:`imbvision.catalog`) before torch is loaded
(``benchmarks/bench_cli_startup.py`` measures it).

Why one file: typer builds the whole command from one module; each command body is a thin call
into the library, and splitting them would spread shared option definitions across files.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from ._cli_spec import spec_options
from ._csv import csv_text, write_csv
from .errors import ImbvisionError
from .spec import CompareConfig, RunSpec, TrainConfig
from .workflows.demo import DEMO_DATA, DEMO_SEEDS

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Find a rare object in images: every class-imbalance remedy, compared on your data.")


def _width(stream: Any) -> Optional[int]:
    """Full width when the output is piped: rich would squeeze tables to 80 columns."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return None if tty or os.environ.get("COLUMNS") else 4000


def _err() -> Console:
    # Made per call so the width follows the terminal (or COLUMNS) at that moment.
    return Console(stderr=True, width=_width(sys.stderr))


def _out() -> Console:
    return Console(width=_width(sys.stdout))


def _print_json(payload: Any) -> None:
    """One JSON document on stdout (``--json``), numbers at full precision."""
    from ._io import _default

    sys.stdout.write(json.dumps(payload, indent=2, default=_default, ensure_ascii=False) + "\n")


def _warning_name(category: type) -> str:
    """``DoubleCorrectionWarning`` -> ``double correction``."""
    name = re.sub(r"Warning$", "", category.__name__) or category.__name__
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).lower()


def _show_warnings_once() -> Callable[[], None]:
    """Print every distinct warning as one rich line on stderr (no source line); return the undo."""
    seen: set[tuple[type, str]] = set()
    old_show, old_filters = warnings.showwarning, warnings.filters[:]

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        key = (category, str(message))
        if key in seen or issubclass(category, DeprecationWarning):
            return
        seen.add(key)
        _err().print(f"[yellow]warning[/] ({_warning_name(category)}): {message}", markup=True, highlight=False,
                     soft_wrap=True)

    warnings.showwarning = show
    warnings.simplefilter("always", UserWarning)  # the dedupe above replaces Python's per-line registry

    def undo() -> None:
        warnings.showwarning = old_show
        warnings.filters[:] = old_filters

    return undo

DATA_HELP = RunSpec.model_fields["data"].description  # the --data of every command (declared in the spec)


#: What Ctrl-C leaves behind, per command (only what is true for that command).
_INTERRUPTED = {
    "embed": "embedded images are kept in the cache; rerun the same command to continue",
    "compare": "finished cells are kept in --out; rerun the same command to continue",
    "audit": "embedded images are kept in the cache; rerun the same command to continue",
    "train": "nothing was written to --out; rerun the same command (fine-tuning: add --resume to continue "
             "from the last checkpoint)",
    "demo": "finished cells are kept; rerun the same command to continue",
    "_": "stopped; every file already written is whole (writes are atomic); rerun the same command",
}


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        undo = _show_warnings_once()
        try:
            if kwargs.get("cache_dir"):  # --cache-dir holds everything cached: the demo set too
                from .data.source_registry import cache_override

                with cache_override(kwargs["cache_dir"]):
                    return fn(*args, **kwargs)
            return fn(*args, **kwargs)
        except ImbvisionError as exc:
            _err().print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            _err().print(f"[yellow]interrupted[/]: {_INTERRUPTED.get(fn.__name__, _INTERRUPTED['_'])}")
            raise typer.Exit(130) from None
        except OSError as exc:
            line = _disk_error_line(exc)
            if line is None:
                raise
            _err().print(f"[bold red]error:[/] {line}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        finally:
            undo()
    return wrapper


def _disk_error_line(exc: OSError) -> str | None:
    """One line for a full disk or a read-only / forbidden file system (``None``: another fault, re-raised)."""
    import errno

    where = exc.filename or "a file"
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return (f"no space left on the device while writing {where}; free space (or use another --out / "
                "--cache-dir) and rerun the same command: every file already written is whole")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (f"cannot write {where} ({exc.strerror}); choose a writable folder (--out / --cache-dir) and rerun "
                "the same command")
    return None


def _metrics_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    for col in ("strategy", "AP [95% CI]", "ROC-AUC", "recall", "precision", "F1", "accuracy", "always-negative acc."):
        t.add_column(col, justify="left" if col == "strategy" else "right")
    for r in rows:
        m = r["metrics"]
        if "ap" not in m:  # no test positive: only the false-alarm rate (printed below the table) can be known
            t.add_row(r["name"], "needs positives", "—", "—", "—", "—", "—", "—")
            continue
        ci = m.get("ap_ci")
        ap = f"{m['ap']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f" ({m.get('ap_ci_note', 'no interval')})")
        t.add_row(r["name"], ap, f"{m['roc_auc']:.3f}", f"{m['recall']:.3f}", f"{m['precision']:.3f}",
                  f"{m['f1']:.3f}", f"{m['accuracy']:.3f}", f"{m['always_negative_accuracy']:.3f}")
    return t


def _run_notes(res: Any) -> list[str]:
    """Lines under a run's table: no-positive note, the false-alarm rate with its intervals, the maps' localisation."""
    from .evaluation._report_sections import false_alarm_text

    m, lines = res.metrics, []
    if m.get("needs_positives"):
        lines.append(m["needs_positives"])
    if m.get("false_alarm_target") is not None or "ap" not in m:
        lines.append(false_alarm_text(m))
    try:
        from ._io import read_json
        loc = read_json(Path(res.out) / "results.json").get("localisation")
    except Exception:  # noqa: BLE001 - the table is already printed; a missing line is no error
        loc = None
    if loc:
        lines.append(f"heat maps: pixel AUROC {loc['pixel_auroc']:.3f}, AUPRO {loc['aupro']:.3f} (FPR ≤ "
                     f"{loc['fpr_limit']:g}) on {loc['masked_positives']} masked test positives and the test negatives")
    return [ln for ln in lines if ln]


@app.command()
@_friendly
def strategies(family: Optional[str] = typer.Option(None, help="Only this family: loss, sampler, resampler, synthesis, mixing, head")) -> None:
    """List every remedy with its family, parameters and reference."""
    from .catalog import strategy_catalog

    rows = strategy_catalog()
    families = list(dict.fromkeys(r["family"] for r in rows))
    if family is not None and family not in families:
        from .errors import ConfigError
        raise ConfigError(f"unknown family {family!r}; valid: {', '.join(families)}")
    t = Table(title="imbvision strategies (compose with '+', parameters as name:key=value,key=value)")
    for col in ("name", "family", "what it does", "parameters (default, valid)", "reference"):
        t.add_column(col, overflow="fold")
    for r in rows:
        if family is not None and r["family"] != family:
            continue
        params = "; ".join(f"{k}={p['default']} ({p['describe']})" for k, p in r["params"].items())
        t.add_row(r["name"], r["family"], r["description"], params or "-", r["reference"])
    _out().print(t)


@app.command()
@spec_options(RunSpec, only=("positive", "backbone", "weights", "tiles", "cache_dir", "skip_bad"))
@_friendly
def embed(
    data: str = typer.Option(..., "--data", help=DATA_HELP),
    out: Path = typer.Option(..., "--out", help="Output folder: features.safetensors, paths.csv, embed.json"),
    image_size: int = typer.Option(224, help="Square input size (whole image, not cropped)"),
    engine: str = typer.Option("auto", help="auto (ONNX when exact), onnx or torch"),
    batch_size: int = typer.Option(32),
    workers: Optional[int] = typer.Option(None, help="DataLoader workers for decoding"),
    **pipeline: Any,
) -> None:
    """Embed images with a frozen backbone (cached: a second run reads the cache)."""
    from ._io import ensure_output_dir
    from .backbones.embed import check_embed_settings
    RunSpec(data=data, image_size=image_size, **pipeline)  # the same validators as train and compare
    positive, backbone, weights, tiles, cache_dir, skip_bad = (
        pipeline[k] for k in ("positive", "backbone", "weights", "tiles", "cache_dir", "skip_bad"))
    check_embed_settings(image_size=image_size, tiles=tiles, batch_size=batch_size, workers=workers)
    from ._rundir import folder_lock

    with folder_lock(out):  # one writer per output folder
        _embed_into(ensure_output_dir(out), data, positive, skip_bad, backbone, weights, image_size, tiles, cache_dir,
                    batch_size, workers, engine)


def _embed_into(out: Path, data: str, positive: Optional[str], skip_bad: bool, backbone: str, weights: Optional[str],
                image_size: int, tiles: int, cache_dir: Optional[str], batch_size: int, workers: Optional[int],
                engine: str) -> None:
    """The body of ``embed``, run while holding the lock on ``out``."""
    from safetensors.numpy import save as st_save

    from ._io import write_json
    from .backbones import embed_dataset
    from .data.checks import load_checked
    from .data.sources import cache_root

    rep = load_checked(data, positive=positive, skip_bad=skip_bad, out_dir=out, progress=True)
    emb = embed_dataset(rep.dataset, backbone=backbone, weights=weights, image_size=image_size, tiles=tiles,
                        cache_dir=cache_dir or cache_root(), batch_size=batch_size, workers=workers, engine=engine)
    arrays = {"global": emb.global_}
    if emb.tiles is not None:
        arrays["tiles"] = emb.tiles
    arrays["labels"] = rep.dataset.labels
    from ._io import atomic_write
    with atomic_write(out / "features.safetensors", "wb") as fh:
        fh.write(st_save(arrays))
    write_csv(out / "paths.csv", ["row", "path", "label"],
              ([i, str(r.path), r.label] for i, r in enumerate(rep.dataset.records)))
    write_json(out / "embed.json", {"data": data, "settings": emb.settings, "stats": emb.stats,
                                     "shape": list(emb.global_.shape)})
    s = emb.stats
    rate = f", {s['images_per_s']:.1f} img/s ({s.get('engine')})" if s.get("images_per_s") else ""
    _out().print(f"{s['images']} images: {s['computed']} computed, {s['from_cache']} from cache{rate} → {out}")


@app.command()
@spec_options(TrainConfig, skip=("data",), first=("strategy", "mode"))
@_friendly
def train(
    ctx: typer.Context,
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP + " (required unless --from)"),
    out: Path = typer.Option(..., "--out", help="Run folder"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in --out (once the new one is done)"),
    from_compare: Optional[Path] = typer.Option(
        None, "--from", metavar="CMP_DIR",
        help="Train the strategy a `compare` folder recommends, with its settings (options given here override)"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (no table, no progress bars)"),
    **pipeline: Any,
) -> None:
    """Train one model, tune its threshold on validation, report on test."""
    settings = {k: v for k, v in ctx.params.items() if k not in ("out", "resume", "overwrite", "from_compare", "as_json")}
    why = None
    if from_compare is not None:
        from click.core import ParameterSource

        from .workflows.promote import settings_from_compare

        chosen, why = settings_from_compare(from_compare)
        # by name: typer and click each define a ParameterSource enum, and ctx may return either
        given = {k for k in settings if getattr(ctx.get_parameter_source(k), "name", "") == ParameterSource.COMMANDLINE.name}
        settings.update({k: v for k, v in chosen.items() if k not in given})
        from .workflows.promote import why_trained

        why = why_trained(chosen["strategy"], why, settings["strategy"])  # --strategy X: X was asked for
        settings["extra"] = {"from_compare": str(from_compare), "chosen_because": why}  # kept in config.json
        _err().print(f"training [bold]{settings['strategy']}[/] with the settings of {from_compare}: {why}",
                     highlight=False, soft_wrap=True)
    res = _train(settings, out, resume=resume, overwrite=overwrite, as_json=as_json)
    if as_json:
        _print_json({"run": str(res.out), "strategy": res.recipe, "threshold": res.threshold,
                     "metrics": res.metrics, "report": str(res.report), "chosen_because": why})
        return
    chosen = "fixed" if str(settings.get("threshold", "")).startswith("fixed") else "chosen on validation"
    _out().print(_metrics_table([{"name": res.recipe, "metrics": res.metrics}],
                                     f"test metrics at threshold {_fmt_t(res.threshold)} ({chosen})"))
    for line in _run_notes(res):
        _out().print(line, highlight=False, soft_wrap=True)
    _out().print(f"report: {res.report}")


def _fmt_t(t: float) -> str:
    """A threshold in 4 significant digits, or in full when those would round it to 0 or 1 (as 0.9999999999999997)."""
    short = f"{t:.4g}"
    return repr(float(t)) if float(short) in (0.0, 1.0) and float(short) != t else short


def _train(settings: dict[str, Any], out: Path, *, resume: bool = False, overwrite: bool = False,
           as_json: bool = False) -> Any:
    """Check the strategy names fast, then build the config and train (imports torch)."""
    from .catalog import precheck_strategies
    from .errors import ConfigError

    if not settings.get("data"):
        raise ConfigError("--data is required (the dataset to train on), or --from CMP_DIR to train what a "
                          "comparison recommends")
    precheck_strategies(settings["strategy"])  # a typo fails here, before torch is imported
    cfg = TrainConfig(**settings)  # every value checked before the folder is (a bad value names itself first)
    from ._rundir import check_run_dir

    check_run_dir(out, overwrite=overwrite, resume=resume)  # an occupied --out too
    from .workflows.train import train as run_train

    return run_train(cfg, out, resume=resume, overwrite=overwrite, progress=not as_json)


@app.command()
@_friendly
def evaluate(
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder made by `imbvision train`"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout"),
) -> None:
    """Re-score a run's test split and rewrite its report."""
    from .workflows.train import evaluate_run

    res = evaluate_run(run)
    if as_json:
        _print_json({"run": str(res.out), "strategy": res.recipe, "threshold": res.threshold,
                     "metrics": res.metrics, "report": str(res.report)})
        return
    _out().print(_metrics_table([{"name": res.recipe, "metrics": res.metrics}],
                                     f"test metrics at threshold {_fmt_t(res.threshold)}"))
    _out().print(f"report: {res.report}")


@app.command()
@spec_options(RunSpec, only=("positive", "cache_dir"))
@_friendly
def predict(
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder made by `imbvision train`"),
    images: list[Path] = typer.Argument(None, metavar="[IMAGE]...", help="Image files"),
    data: Optional[str] = typer.Option(None, "--data", help="Or a data source (" + DATA_HELP + ")"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write predictions CSV here (default: print)"),
    weights: Optional[str] = typer.Option(None, "--weights", help="Backbone weights file, when it has moved since training (checked by SHA-256)"),
    heatmaps: Optional[Path] = typer.Option(None, "--heatmaps", help="Write heat-map overlays (PNG) here (patch, normality, fusion heads)"),
    **pipeline: Any,
) -> None:
    """Probability and decision (at the stored threshold) per image; unreadable files are listed, not fatal.

    Columns: path, label (from --data; empty for loose files), split (train/val/test when the image
    was in the run's data, else empty), probability, decision, error.
    """
    from .errors import ConfigError

    positive = pipeline["positive"]  # --cache-dir is applied by _friendly (cache_override)
    if not images and not data:  # before the imports below load torch
        raise ConfigError("no images given: pass image files or --data SOURCE")
    from ._io import write_text
    from .data.sources import load_source
    from .model import Model

    from ._rundir import check_output_file
    from .data.checks import check_file_name

    if out is not None:
        check_output_file(out, run)
    model = Model.load(run, weights=weights)
    paths = [str(p) for p in images or []]
    labels: dict[str, int] = {}
    mask_of: dict[str, str] = {}
    if data:
        recs = load_source(data, positive=positive).records
        paths += [str(r.path) for r in recs]
        labels = {str(r.path): int(r.label) for r in recs}
        mask_of = {str(r.path): str(r.mask) for r in recs if r.mask is not None}
    if not paths:
        raise ConfigError("no images given: pass image files or --data SOURCE")
    for p in paths:
        check_file_name(p)
    split_of = _run_splits(run)
    raw: dict[str, float] = {}
    if heatmaps is not None:
        from ._rundir import folder_lock
        from .explain import write_heatmaps
        with folder_lock(heatmaps, "--heatmaps"):  # one writer per folder
            n_maps = write_heatmaps(model, paths, heatmaps, masks=mask_of, scores=raw)
        _err().print(f"{n_maps} heat maps → {heatmaps}")
    rows, bad = model.predict_files(paths, raw=raw)  # the images the maps scored are not computed again
    text = csv_text(["path", "label", "split", "probability", "decision", "error"],
                    [[r["path"], labels.get(r["path"], ""), _split_of(split_of, r["path"]), repr(float(r['probability'])),
                      r["decision"], ""] for r in rows]
                    + [[p, labels.get(p, ""), _split_of(split_of, p), "", "", reason] for p, reason in bad])
    seen = [_split_of(split_of, p) for p in paths]
    n_train, n_val = seen.count("train"), seen.count("val")
    if n_train or n_val:
        _err().print(f"[yellow]warning[/]: {n_train} of these images trained the model and {n_val} chose its "
                     "threshold (column 'split'): their scores are optimistic. Judge the model on its test split "
                     f"({Path(run) / 'scores_test.csv'}).", highlight=False, soft_wrap=True)
    if out:
        write_text(out, text)
        _out().print(f"{len(rows)} scored, {len(bad)} unreadable → {out}")
    else:
        sys.stdout.write(text)
    for p, reason in bad:
        _err().print(f"[yellow]unreadable[/]: {p}: {reason}")
    if bad and not rows:  # nothing could be scored: a script must see the failure (the CSV is still written)
        raise typer.Exit(code=2)


def _run_splits(run: Path) -> dict[str, str]:
    """Path -> train/val/test from the run's ``split.csv`` (keys: as written and resolved)."""
    from .data.splits import read_split_rows  # cells exactly as written (formula quoting undone)

    out: dict[str, str] = {}
    try:
        for r in read_split_rows(Path(run) / "split.csv").values():
            out[r["path"]] = r["split"]
            out[str(Path(r["path"]).resolve())] = r["split"]
    except (OSError, KeyError, ValueError):
        pass
    return out


def _split_of(split_of: dict[str, str], path: str) -> str:
    return split_of.get(path) or split_of.get(str(Path(path).resolve()), "")


@app.command("derive-masks")
@spec_options(RunSpec, only=("positive",))
@_friendly
def derive_masks_cmd(
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder of a patch, normality or fusion model"),
    data: str = typer.Option(..., "--data", help=DATA_HELP),
    out: Path = typer.Option(..., "--out", help="Folder for masks/ and manifest.csv"),
    **pipeline: Any,
) -> None:
    """Derive missing masks of positives from heat maps; writes a manifest copy-paste can train on."""
    positive = pipeline["positive"]
    from .data.sources import load_source
    from .explain import derive_masks
    from .model import Model

    manifest = derive_masks(Model.load(run), load_source(data, positive=positive).records, out)
    _out().print(f"manifest with derived masks: {manifest} (use --data {manifest})")


@app.command()
@spec_options(TrainConfig, only=("positive", "backbone", "weights", "tiles", "seed", "cache_dir", "skip_bad"))
@_friendly
def audit(
    data: str = typer.Option(..., "--data", help=DATA_HELP + " (with --review: the source the suspects came from)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder: audit.html, suspects.csv, duplicates.csv, audit.json"),
    k: int = typer.Option(10, help="Neighbours for the hardness and noise signals"),
    split_file: Optional[str] = typer.Option(None, "--split-file", help="CSV path,split (train/val/test): duplicates straddling its parts are counted as split leaks"),
    review: Optional[Path] = typer.Option(None, "--review", help="A suspects.csv with your decisions (keep/relabel/drop): write a new manifest"),
    manifest_out: Optional[Path] = typer.Option(None, "--manifest-out", help="With --review: the new manifest (default OUT/reviewed_manifest.csv)"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary (audit.json, or the review's counts) as JSON on stdout"),
    **pipeline: Any,
) -> None:
    """Know the imbalance before training: counts, duplicates, hardness and suspect minority labels (never deletes)."""
    from .errors import ConfigError

    if review is None and out is None:
        raise ConfigError("--out is required for an audit (or --review SUSPECTS_CSV to apply your decisions)")
    TrainConfig(data=data, **pipeline)  # the same validators as train (one line naming the option)
    positive, backbone, weights, tiles, seed, cache_dir, skip_bad = (
        pipeline[k] for k in ("positive", "backbone", "weights", "tiles", "seed", "cache_dir", "skip_bad"))
    from ._io import ensure_output_dir
    from .data.sources import load_source

    ds = load_source(data, positive=positive)
    if review is not None:
        from .audit import apply_review

        target = manifest_out or (Path(out) if out else review.parent) / "reviewed_manifest.csv"
        summary = apply_review(review, ds, target)
        if as_json:
            _print_json(summary)
            return
        _out().print(f"new manifest: {target}: {summary['images']} images ({summary['positive']} positive, "
                     f"{summary['negative']} negative); kept {summary['kept']}, relabelled {summary['relabelled']}, "
                     f"dropped {summary['dropped']}. The source {summary['source'] or data} is untouched.",
                     highlight=False)
        return
    from ._rundir import folder_lock

    with folder_lock(out):  # one writer per output folder
        _audit_into(ensure_output_dir(out), ds, data, skip_bad, backbone, weights, tiles, cache_dir, k, seed, as_json,
                    split_file)


def _audit_into(out: Path, ds: Any, data: str, skip_bad: bool, backbone: str, weights: Optional[str], tiles: int,
                cache_dir: Optional[str], k: int, seed: int, as_json: bool, split_file: Optional[str] = None) -> None:
    """The body of ``audit``, run while holding the lock on ``out``."""
    from .audit import run_audit
    from .backbones import embed_dataset
    from .data.checks import load_checked
    from .data.sources import cache_root

    from .training.prepare import duplicate_features

    rep = load_checked(ds, skip_bad=skip_bad, out_dir=out, progress=not as_json, require_both_classes=False)
    part = None
    if split_file is not None:
        from .data.split_file import read_split_file

        part, _ = read_split_file(split_file, rep.dataset, skipped=tuple(p for p, _ in rep.bad))
    emb = embed_dataset(rep.dataset, backbone=backbone, weights=weights, tiles=tiles, cache_dir=cache_dir or cache_root(),
                        progress=not as_json)
    feats = emb.features("both" if tiles else "global")
    embed_group = duplicate_features(cache_dir=Path(cache_dir) if cache_dir else cache_root(), progress=not as_json)
    audited = rep.dataset
    from ._progress import step

    with step("auditing: hardness, label noise, duplicates", enabled=not as_json):
        res = run_audit(audited, feats, out, k=k, seed=seed, data_arg=data, split=part,
                        grouping=lambda idx: embed_group(audited.subset(idx)))
    if as_json:
        _print_json(res.summary)
        return
    from .audit._report import counts_line

    _out().print(counts_line(res.summary), highlight=False, soft_wrap=True)
    _out().print(f"suspects ranked in {out / 'suspects.csv'}; nothing was deleted. Fill its 'decision' column "
                 f"(keep/relabel/drop) and run: {res.summary['review_command']}", highlight=False, soft_wrap=True)
    _out().print(f"report: {out / 'audit.html'}")


@app.command()
@spec_options(CompareConfig, skip=("data",), first=("strategies", "seeds", "folds", "primary"))
@_friendly
def compare(
    data: str = typer.Option(..., "--data", help=DATA_HELP),
    out: Path = typer.Option(..., "--out", help="Output folder (resumable: rerun to continue)"),
    save_best: bool = typer.Option(False, "--save-best", help="Then train the recommended strategy into OUT/best (as `train --from OUT`)"),
    as_json: bool = typer.Option(False, "--json", help="Print the leaderboard and recommendation as JSON on stdout (no progress bars)"),
    **pipeline: Any,
) -> None:
    """Which remedy helps on my data? A leaderboard with paired tests against the plain baseline."""
    from .catalog import precheck_strategies

    precheck_strategies(pipeline["strategies"])  # a typo fails here, before torch is imported
    from .workflows.compare import print_leaderboard, run_compare

    res = run_compare(data, out=out, progress=not as_json, **pipeline)
    payload: dict[str, Any] = {"out": str(res.out), "leaderboard": res.leaderboard,
                               "recommendation": res.recommendation, "report": str(res.report)}
    if not as_json:
        print_leaderboard(res, _out())
        _out().print(f"report: {res.report}")
    if save_best:
        from .workflows.promote import settings_from_compare

        settings, why = settings_from_compare(res.out)
        settings["cache_dir"] = pipeline["cache_dir"]
        settings["skip_bad"] = pipeline["skip_bad"]
        settings["extra"] = {"from_compare": str(res.out), "chosen_because": why}
        if not as_json:
            _err().print(f"training [bold]{settings['strategy']}[/] into {res.out / 'best'}: {why}",
                         highlight=False, soft_wrap=True)
        best = _train(settings, res.out / "best", as_json=as_json)
        payload["best"] = {"run": str(best.out), "strategy": best.recipe, "threshold": best.threshold,
                           "metrics": best.metrics, "report": str(best.report), "chosen_because": why}
        if not as_json:
            _out().print(_metrics_table([{"name": best.recipe, "metrics": best.metrics}],
                                        f"saved model {best.out}: test metrics at threshold {_fmt_t(best.threshold)}"))
    if as_json:
        _print_json(payload)


@app.command()
@_friendly
def backbones() -> None:
    """List the registered backbones (any timm model name works too)."""
    from .backbones.offline import ANY_TIMM_NOTE, embedded_backbones  # plain data: no torch import

    for name, description in embedded_backbones():
        _out().print(f"{name}: {description}")
    _out().print(ANY_TIMM_NOTE)


@app.command()
@_friendly
def sources() -> None:
    """List the data sources --data reads (folder, CSV, benchmark layouts, the demo generator)."""
    from .data.sources import SOURCES  # importing registers the built-in sources (no torch)

    for spec in SOURCES:
        _out().print(f"{spec.syntax}: {spec.description}", highlight=False, soft_wrap=True)
    _out().print("More: docs/sources.md (layouts, masks, groups, splits, odd files).", highlight=False)


def _demo_quick(out: Path, data: str, seed: int) -> None:
    from .workflows.train import train as run_train

    rows = []
    for strat in ("ce", "weighted-ce"):
        res = run_train(None, out / strat, data=data, strategy=strat, seed=seed, n_boot=500,
                        progress=False, overwrite=True)
        rows.append({"name": strat, "metrics": res.metrics})
    _out().print(_metrics_table(rows, "demo: logistic-regression head on frozen EfficientNet-Lite0 features"))


@app.command()
@_friendly
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder"),
    n: int = typer.Option(DEMO_DATA["n"], help="Images in the generated demo set"),
    rate: float = typer.Option(DEMO_DATA["positive_rate"], help="Fraction of images with the object"),
    size: int = typer.Option(DEMO_DATA["size"], help="Image size of the demo set in px (objects keep their size in px)"),
    seed: int = typer.Option(DEMO_DATA["seed"], help="Data seed of the demo set"),
    seeds: int = typer.Option(DEMO_SEEDS, help="Seeds for the comparison (each a split: the unit of evidence)"),
    full: bool = typer.Option(False, "--full", help="Compare every default strategy (remedies and the three patch heads; about 15 CPU-minutes) instead of ce, weighted-ce and patch"),
    quick: bool = typer.Option(False, help="Only ce vs weighted-ce, one seed, no comparison"),
) -> None:
    """Generate the demo set, compare the plain classifier with a remedy and a patch head, train the winner (about 2 minutes on 2 cores)."""
    from ._io import ensure_output_dir
    from .data.sources import load_source
    from .data.synthetic import demo_source
    from .workflows.demo import DEMO_STRATEGIES, FULL_STRATEGIES, demo_spec, describe

    spec = demo_spec(n=n, positive_rate=rate, seed=seed, size=size)
    out = ensure_output_dir(out)
    strategies = FULL_STRATEGIES if full else DEMO_STRATEGIES
    if quick:
        _err().print(f"generating/reading demo data: {n} images, {rate:.0%} with the object (seed {seed})")
        load_source(demo_source(spec))
        _demo_quick(out, demo_source(spec), seed)
        return
    from .workflows.compare import print_leaderboard
    from .workflows.demo import run_demo

    _err().print(describe(spec, strategies, seeds), highlight=False, soft_wrap=True)
    res = run_demo(out, spec=spec, strategies=strategies, seeds=seeds)
    print_leaderboard(res.compare, _out())
    if res.best is not None:
        _out().print(f"trained [bold]{res.best.recipe}[/] into {res.best.out}: {res.chosen_because}",
                     highlight=False, soft_wrap=True)
    best = "" if res.best is None else f" · {res.best.report} (the saved model" + (
        ": heat maps of the objects found and missed)" if res.heatmaps else ": its misses and false alarms)")
    _out().print(f"reports: {res.compare.report} (leaderboard){best}", highlight=False, soft_wrap=True)
    _out().print(f"the same on your own images: {res.own_data}", highlight=False, soft_wrap=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
