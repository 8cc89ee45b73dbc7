"""A self-contained HTML report: one file, inline CSS, images as data URIs.

Build a page block by block with :class:`Report` and :meth:`Report.save` it;
:func:`build_run_report` assembles the standard page of a training run from
label and score arrays. Every piece of user text (titles, captions, table
cells, class names, file paths, configuration values) is HTML-escaped, the page
loads nothing from outside, needs no JavaScript, and carries a
Content-Security-Policy that forbids scripts and remote resources.

Why one file: the run report is one page built top to bottom; its sections share the scores
and the threshold, and each section is a short function.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .._io import atomic_write
from ..errors import ConfigError, DataError
from ..htmlreport import GalleryItem, Report, _sniff_image, format_prob, format_value, thumbnail_jpeg
from .calibration import brier, expected_calibration_error
from .metrics import check_binary_scores, evaluate_scores, threshold_metrics
from .plots import (
    figure_to_png,
    plot_image_grid,
    plot_pr_curve,
    plot_reliability,
    plot_roc_curve,
    plot_score_histograms,
    plot_seed_dots,
    plot_training_history,
)
from .threshold import DEFAULT_THRESHOLD_GRID, ThresholdChoice, threshold_table, tune_threshold

__all__ = ["Report", "build_run_report", "format_value", "applied_config", "masks_for_paths", "add_per_seed"]

# ================================================================================ run page
def _split(results: Mapping[str, Any], name: str, required: bool) -> dict[str, Any] | None:
    part = results.get(name)
    if part is None:
        if required:
            raise ConfigError(
                f"results needs a '{name}' entry {{'y': labels, 'score': scores}}; "
                f"got keys {sorted(results)}"
            )
        return None
    if not isinstance(part, Mapping) or "y" not in part or "score" not in part:
        raise ConfigError(
            f"results['{name}'] must be a dict with 'y' and 'score' arrays; got "
            f"{sorted(part) if isinstance(part, Mapping) else type(part).__name__}"
        )
    y, s = check_binary_scores(part["y"], part["score"], what=f"{name} scores", require_both=False)
    if y.all():
        check_binary_scores(y, s, what=f"{name} scores")  # no negative: the one-class error
    out = dict(part)
    out["y"], out["score"] = y, s
    masks = out.get("masks")
    if masks is not None and len(masks) != len(y):
        raise DataError(f"results['{name}']['masks'] has {len(masks)} entries for {len(y)} samples; "
                        "give one mask path (or None) per sample")
    if out.get("heatmap") is not None and not callable(out["heatmap"]):
        raise ConfigError(f"results['{name}']['heatmap'] must be a function path -> (h, w) array or None; "
                          f"got {type(out['heatmap']).__name__}")
    for key in ("score_uncalibrated",):
        if out.get(key) is not None:
            _, out[key] = check_binary_scores(y, out[key], what=f"{name} {key}")
    paths = out.get("paths")
    if paths is not None:
        paths = [str(p) for p in paths]
        if len(paths) != len(y):
            raise DataError(
                f"results['{name}']['paths'] has {len(paths)} entries for {len(y)} samples; "
                "give one path per sample"
            )
        out["paths"] = paths
    return out


def _threshold_choice(results: Mapping[str, Any], val: dict | None) -> tuple[ThresholdChoice, str]:
    t = results.get("threshold")
    if isinstance(t, ThresholdChoice):
        return t, ""
    if isinstance(t, Mapping):
        return ThresholdChoice.from_dict(dict(t)), ""
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return ThresholdChoice.from_dict({"threshold": float(t)}), ""
    if t is not None:
        raise ConfigError(
            "results['threshold'] must be a ThresholdChoice, its to_dict() or a number; "
            f"got {type(t).__name__}"
        )
    if val is not None:
        return tune_threshold(val["y"], val["score"], "max-f1"), (
            "No threshold was given; it was tuned here with max-f1 on the validation scores."
        )
    return ThresholdChoice.from_dict({"threshold": 0.5}), (
        "No threshold and no validation scores were given; 0.5 was used."
    )


def _ci(m: Mapping[str, Any], key: str) -> str:
    ci = m.get(f"{key}_ci")
    if not ci:
        return m.get(f"{key}_ci_note", "")
    return f"{round(100 * m['ci_level'])}% CI {ci[0]:.3f} – {ci[1]:.3f}"


_MAX_DIRECT_BYTES = 3 * 1024 * 1024


def _embeddable(image: Any) -> bytes | None:
    """Bytes of a small PNG/JPEG/GIF/WebP file to embed as is, else None."""
    if not isinstance(image, (str, os.PathLike)):
        return None
    try:
        p = Path(image)
        if not p.is_file() or p.stat().st_size > _MAX_DIRECT_BYTES:
            return None
        data = p.read_bytes()
        _sniff_image(data)
    except (OSError, ConfigError):
        return None
    return data


FINETUNE_ONLY = ("epochs", "batch_size", "lr", "head_lr", "weight_decay", "unfreeze", "patience",
                 "accelerator", "devices", "precision", "dist_strategy", "workers")
HEAD_ONLY = ("tiles", "features")


def applied_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration without settings that did not apply to this run's ``mode``.

    Head mode drops the fine-tune settings (epochs, learning rates, devices...);
    fine-tune mode drops the tile-feature settings; an empty ``extra`` is dropped.
    ``config.json`` in the run folder keeps everything.
    """
    cfg = dict(config)
    mode = cfg.get("mode")
    drop = FINETUNE_ONLY if mode == "head" else HEAD_ONLY if mode == "finetune" else ()
    for k in drop:
        cfg.pop(k, None)
    if not cfg.get("extra"):
        cfg.pop("extra", None)
    return cfg


def add_per_seed(rep: Report, cells: Mapping[str, Sequence[Mapping[str, Any]]], *, metric: str = "ap",
                 baseline: str = "ce") -> Report:
    """Add the per-seed view of a comparison: a dot per split behind each mean, and its table.

    ``cells`` maps each strategy (leaderboard order) to its cell results, each a
    dict with ``seed``, optional ``fold`` and the ``metric`` value.
    """
    per_seed = {name: [c.get(metric) for c in cs] for name, cs in cells.items()}
    if not per_seed:
        return rep
    rep.add_heading("Every split behind each mean")
    rep.add_image(plot_seed_dots(per_seed, metric=metric.upper() if metric == "ap" else metric,
                                 baseline=baseline if baseline in per_seed else None),
                  "Test AP of each split (dot) and the mean (bar); a mean carried by one lucky split shows here.")
    first = next(iter(cells.values()))
    cols = [f"seed {c.get('seed')}" + (f" fold {c['fold']}" if c.get("fold") is not None else "") for c in first]
    rows = [[name, *[c.get(metric) for c in cs]] for name, cs in cells.items()]
    rep.add_table(rows, header=["strategy", *cols], caption=f"Test {metric.upper()} per split", digits=3)
    return rep


def masks_for_paths(data: str, positive: str | None, paths: Sequence[str]) -> list[str | None] | None:
    """The mask file of each path in the data source ``data`` (None where it has none).

    For the report's outlines only: returns None (no outlines) when the source
    cannot be read now or has no masks; never raises.
    """
    try:
        from ..data.sources import load_source

        by_path = {str(r.path): r.mask for r in load_source(data, positive=positive).records}
    except Exception:  # the report is still useful without outlines
        return None
    masks = [None if by_path.get(p) is None else str(by_path[p]) for p in paths]
    return masks if any(m is not None for m in masks) else None


def _threshold_rows(y: np.ndarray, s: np.ndarray, t: float) -> list[dict[str, Any]]:
    """Test operating points on the standard grid plus the chosen threshold.

    Grid points that would print like the chosen one (0.200 next to a chosen
    0.1996) are dropped, and the threshold column is text so the chosen row reads
    ``0.1996 (chosen)`` rather than a second ``0.200``. Every row has the same number of
    decimals (3, or 4 when the chosen threshold needs them).
    """
    grid = [g for g in DEFAULT_THRESHOLD_GRID if f"{g:.3f}" != f"{t:.3f}" and abs(g - t) > 1e-12]
    table = threshold_table(y, s, [*grid, t])
    # one format for every row: 3 decimals, or 4 for all when the chosen one needs them
    # (a fixed 0.5 reads "0.500 (chosen)" beside "0.400", a tuned 0.1996 beside "0.1000")
    dec = 3 if abs(round(t, 3) - t) <= 1e-12 else 4
    for r in table:
        r["threshold"] = f"{t:.{dec}f} (chosen)" if r["threshold"] == t else f"{r['threshold']:.{dec}f}"
    return table


def _worst(y: np.ndarray, s: np.ndarray, t: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` lowest-scored positives below ``t`` and highest-scored negatives at or above."""
    fn = np.flatnonzero((y == 1) & (s < t))
    fp = np.flatnonzero((y == 0) & (s >= t))
    return fn[np.argsort(s[fn], kind="stable")][:k], fp[np.argsort(-s[fp], kind="stable")][:k]


def _add_split_and_types(rep: Report, results: Mapping[str, Any]) -> None:
    """The split as realised beside the request (``results["split"]``) and the AP per type (``results["ap_by_type"]``)."""
    bal = results.get("split")
    if bal:
        rep.add_heading("The split as realised", level=3)
        rows = [[k, p["images"], f"{p['fraction']:.1%}", f"{bal['requested'][k]:.0%}", p["positives"],
                 f"{p['prevalence']:.1%}"] for k, p in bal["parts"].items()]
        rep.add_table(rows, header=["part", "images", "share", "asked", "positives", "prevalence"],
                      caption=(f"Data prevalence {bal['prevalence']:.1%}; within "
                               f"{100 * bal['tolerance']:g} points of the request: "
                               + ("yes" if not bal["off"] else "no — " + "; ".join(bal["off"]))))
    if results.get("ap_by_type"):
        from .by_type import add_type_section
        add_type_section(rep, {str(results.get("name") or "model"): results["ap_by_type"]})


def _found(y: np.ndarray, s: np.ndarray, t: float, k: int) -> np.ndarray:
    """Indices of up to ``k`` true positives (positives scored at or above ``t``), highest scores first."""
    tp = np.flatnonzero((y == 1) & (s >= t))
    return tp[np.argsort(-s[tp], kind="stable")][:k]


def build_run_report(
    run_dir: str | os.PathLike[str],
    results: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    images: Mapping[str, Sequence[tuple[Any, str]]] | None = None,
    title: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    n_worst: int = 12,
) -> Path:
    """Write ``run_dir/report.html`` (and ``run_dir/plots/*.png``) for one run.

    Everything is computed here from labels and scores; callers pass arrays.

    Parameters
    ----------
    run_dir
        The run folder; created if needed.
    results
        A dict with these keys (arrays may be lists or numpy arrays)::

            "test": {                     # required: the held-out split
                "y": (n,) 0/1 labels,     # 1 = rare positive
                "score": (n,) final probabilities (after any prior correction /
                         calibration) — the values the threshold applies to,
                "score_uncalibrated": (n,) optional, before calibration —
                         enables the before/after reliability diagram; AP,
                         ROC-AUC and the curves are then computed on it, so
                         the calibration method cannot move them,
                "paths": n image paths, optional — enables the worst false
                         negative / false positive thumbnails,
                "masks": n mask paths or None, optional — outlined in red on
                         the thumbnails,
                "heatmap": optional function ``path -> (h, w) array in [0, 1]
                         or None`` (e.g. ``Model.explain``); called only for the
                         images shown, drawn over the thumbnails,
            },
            "val": {...same keys...},     # optional: where the threshold was tuned
            "threshold": ThresholdChoice | ThresholdChoice.to_dict() | float,
                                          # optional: tuned here with max-f1 on
                                          # "val" if absent (0.5 without "val")
            "calibration": {              # optional, shown as given
                "method": "none" | "platt" | "isotonic",
                "prior_correction": {"train_prior": 0.5, "true_prior": 0.02} | None,
                ... any other JSON-able details (e.g. Calibrator.to_dict()),
            },
            "name": "focal+balanced-sampler",   # optional: run / strategy label
            "notes": ["...", ...],               # optional: shown as callouts on top
            "warnings": ["...", ...],            # optional: warning callouts on top
                                                 # (double prior correction, duplicates...)
            "history": {"epochs": [{"epoch", "train_loss", "val_ap", "lr"}, ...],
                        "kept_epoch": int},      # optional: fine-tune curves

    config
        The resolved configuration, shown as JSON without the settings that did
        not apply (fine-tune settings in head mode, tile settings in fine-tune mode).
    images
        Optional ``{section title: [(image path or array, caption), ...]}``,
        e.g. strategy examples (augmented / synthesised minority images). A
        section is drawn as a thumbnail grid; a section holding a single image
        file (a ready-made figure up to 3 MB) is embedded full size instead.
    title
        Page title; default ``"imbvision run — <name or folder>"``.
    n_boot, seed
        Bootstrap replicates and seed for the confidence intervals.
    n_worst
        How many worst false negatives / false positives to show.

    Returns
    -------
    pathlib.Path
        The written ``report.html``.
    """
    if not isinstance(results, Mapping):
        raise ConfigError(f"results must be a dict; got {type(results).__name__}")
    run_dir = Path(run_dir)
    plots_dir = run_dir / "plots"
    test = _split(results, "test", required=True)
    val = _split(results, "val", required=False)
    assert test is not None
    choice, auto_note = _threshold_choice(results, val)
    t = float(choice.threshold)
    y, s = test["y"], test["score"]
    s_rank = test.get("score_uncalibrated")  # ranking metrics and curves: calibration cannot move them
    m = evaluate_scores(y, s, t, n_boot=n_boot, seed=seed, rank_score=s_rank, rule_info=results.get("rule_info"))
    name = str(results.get("name") or run_dir.name)

    def png(fig: Figure, stem: str) -> bytes:
        data = figure_to_png(fig)
        with atomic_write(plots_dir / f"{stem}.png", "wb") as fh:
            fh.write(data)
        return data

    if "needs_positives" in m:  # no test positive: what can be known without one
        from ._report_sections import negatives_only_page
        rep = negatives_only_page(title or f"imbvision run — {name}", run_dir, m, choice, s, png)
        rep.add_heading("Configuration")
        rep.add_code(applied_config(config) if isinstance(config, Mapping) else config,
                     caption="Resolved configuration of this run (settings that applied)")
        return rep.save(run_dir / "report.html")

    rep = Report(
        title or f"imbvision run — {name}",
        subtitle=(
            f"Run folder {run_dir} · test split: {m['n']:,} images, {m['n_pos']:,} positive "
            f"({100 * m['positive_rate']:.2f}%)"
        ),
    )
    notes = results.get("notes") or []
    for note in [notes] if isinstance(notes, str) else notes:
        rep.add_callout(str(note), "note")
    warns = results.get("warnings") or []
    for note in dict.fromkeys([warns] if isinstance(warns, str) else warns):
        rep.add_callout(str(note), "warning")
    if auto_note:
        rep.add_callout(auto_note, "warning")
    if m["n_pos"] < 30:
        rep.add_callout(
            f"Only {m['n_pos']} positives in the test split: every number below is uncertain — "
            "read the confidence intervals, not the point estimates.",
            "warning",
        )

    # ---- summary
    rep.add_heading("Summary")
    rep.add_cards(
        [
            ("Average precision", m["ap"],
             " · ".join(filter(None, [_ci(m, "ap"), f"chance {m['positive_rate']:.3f}"]))),
            ("ROC-AUC", m["roc_auc"], " · ".join(filter(None, [_ci(m, "roc_auc"), "chance 0.500"]))),
            ("Precision", m["precision"], f"at threshold {t:.3g}"),
            ("Recall", m["recall"], f"at threshold {t:.3g}"),
            ("F1", m["f1"], f"at threshold {t:.3g}"),
            ("MCC", m["mcc"], "−1 … 1, 0 = chance"),
        ]
    )
    from ._report_sections import add_false_alarms, add_localisation
    add_false_alarms(rep, m)
    add_localisation(rep, results.get("localisation"))
    rep.add_text(
        f"At threshold **{t:.4g}** the model flags {m['tp'] + m['fp']:,} of {m['n']:,} test images "
        f"({100 * m['flagged_rate']:.2f}%), finding {m['tp']:,} of {m['n_pos']:,} positives. "
        f"Accuracy is {m['accuracy']:.3f}, but answering negative for every image would already "
        f"score {m['always_negative_accuracy']:.3f} — judge the model by AP, recall and precision."
    )
    rep.add_table(
        [
            ["average precision", m["ap"], m["positive_rate"], "random ranking = positive rate"],
            ["ROC-AUC", m["roc_auc"], 0.5, "random ranking"],
            ["accuracy", m["accuracy"], m["always_negative_accuracy"], "misleading under imbalance"],
            ["balanced accuracy", m["balanced_accuracy"], 0.5, "mean of recall and specificity"],
            ["precision", m["precision"], None, "flags that are right"],
            ["recall (sensitivity)", m["recall"], 0.0, "positives found"],
            ["specificity", m["specificity"], 1.0, "negatives left alone"],
            ["F1", m["f1"], 0.0, ""],
            ["MCC", m["mcc"], 0.0, ""],
            ["G-mean", m["g_mean"], 0.0, "√(recall · specificity)"],
            [f"recall at precision ≥ {m['at_precision']:g}", m["recall_at_precision"], 0.0, "best threshold"],
            [f"precision at recall ≥ {m['at_recall']:g}", m["precision_at_recall"], m["positive_rate"], "best threshold"],
        ],
        header=["metric (test)", "model", "always negative / chance", "meaning"],
        caption=f"Test metrics at threshold {t:.4g}, next to a model that never flags anything",
    )
    _add_split_and_types(rep, results)
    rep.add_heading("Confusion matrix", level=3)
    rep.add_table(
        [
            ["actually positive", m["tp"], m["fn"], m["n_pos"]],
            ["actually negative", m["fp"], m["tn"], m["n"] - m["n_pos"]],
            ["total", m["tp"] + m["fp"], m["tn"] + m["fn"], m["n"]],
        ],
        header=["test", "flagged positive", "not flagged", "total"],
        caption="Rows: truth; columns: decision at the threshold",
    )

    # ---- curves
    rep.add_heading("Curves")
    sr = s if s_rank is None else s_rank  # the operating point: the lowest ranking score still flagged
    t_r = float(sr[s >= t].min()) if (s >= t).any() else None
    pr = png(plot_pr_curve(y, sr, label=name, threshold=t_r, shown_threshold=t), "pr_curve")
    roc = png(plot_roc_curve(y, sr, label=name, threshold=t_r, shown_threshold=t), "roc_curve")
    rep.add_images(
        [
            (pr, "Precision–recall on test. The dashed line is the positive rate (a random "
                 "ranking); the dot is the operating threshold."),
            (roc, "ROC on test. ROC looks flattering under imbalance; prefer the PR curve."),
        ]
    )
    hist = png(plot_score_histograms(y, s, t, title="Test scores by true class"), "score_histograms")
    rep.add_image(hist, "Test score distributions (log-scale counts) with the threshold.")

    # ---- threshold
    rep.add_heading("Threshold")
    rep.add_table(
        [
            ["rule", str(choice.rule)],
            ["threshold", f"{t:.6g}"],
            ["constraint met on validation", choice.feasible],
            ["note", choice.note or "—"],
        ],
        header=["setting", "value"],
        digits=4,
    )
    if not choice.feasible:
        rep.add_callout(
            f"The threshold rule `{choice.rule}` could not be met on validation. {choice.note}",
            "warning",
        )
    compare = []
    keys = ("precision", "recall", "f1", "flagged_rate", "tp", "fp", "fn")
    if val is not None and val["y"].any():
        mv = threshold_metrics(val["y"], val["score"], t)
        compare.append({"split": "validation (threshold chosen here)", **{k: mv[k] for k in keys}})
    elif choice.achieved:
        compare.append({"split": "validation (as recorded)",
                        **{k: choice.achieved.get(k) for k in keys}})
    compare.append({"split": "test", **{k: m[k] for k in keys}})
    rep.add_table(compare, caption="The chosen threshold on validation and on test")
    table = _threshold_rows(y, s, t)
    hl = [k for k, r in enumerate(table) if str(r["threshold"]).endswith("(chosen)")]
    rep.add_table(
        table,
        caption="Test operating points (the chosen threshold highlighted). For information "
        "only: pick thresholds on validation, never from this table.",
        digits=3,
        highlight_rows=hl,
    )

    # ---- calibration
    rep.add_heading("Calibration")
    cal = results.get("calibration") or {}
    raw = test.get("score_uncalibrated")
    if raw is not None and np.array_equal(raw, s):
        raw = None  # calibration "none": one line and one column, not two identical ones
    from .calibration import calibration_in_the_large
    ratio = "mean probability / prevalence (1 = calibrated in the large)"
    if raw is not None:
        rel = png(plot_reliability(y, raw, s), "reliability")
        rep.add_table(
            [
                ["Brier score (lower is better)", brier(y, raw), brier(y, s)],
                ["expected calibration error", expected_calibration_error(y, raw),
                 expected_calibration_error(y, s)],
                [ratio, calibration_in_the_large(y, raw)["ratio"], calibration_in_the_large(y, s)["ratio"]],
            ],
            header=["test", "before calibration", "after calibration"],
            digits=4,
        )
    else:
        rel = png(plot_reliability(y, s, labels=("model", "")), "reliability")
        rep.add_table(
            [["Brier score (lower is better)", brier(y, s)],
             ["expected calibration error", expected_calibration_error(y, s)],
             [ratio, calibration_in_the_large(y, s)["ratio"]]],
            header=["test", "model"],
            digits=4,
        )
    rep.add_image(rel, "Reliability on test: observed positive rate per bin of predicted "
                       "probability; the lower panel counts predictions per bin.")
    if cal:
        rep.add_code(dict(cal), caption="Calibration settings")

    # ---- errors
    rep.add_heading("Errors")
    paths = test.get("paths")
    if paths is None:
        rep.add_text("Give `results['test']['paths']` to see the worst false negatives and false "
                     "positives here.")
    else:
        from ..data.names import display_names, source_root
        shown = display_names(paths, source_root(config.get("data")))  # test/crack/003.png, not 003.png
        fn_idx, fp_idx = _worst(y, s, t, n_worst)
        # With heat maps, the objects found too: whether the model looked at the object, not only that it scored.
        found = [("Objects found (positives at or above the threshold, highest scores first)", _found(y, s, t, n_worst),
                  "objects_found", "No positive reaches the threshold.")] if test.get("heatmap") is not None else []
        for label, idx, stem, empty in (
            *found,
            ("Worst false negatives (positives with the lowest scores)", fn_idx,
             "false_negatives", "No false negatives at this threshold."),
            ("Worst false positives (negatives with the highest scores)", fp_idx,
             "false_positives", "No false positives at this threshold."),
        ):
            rep.add_heading(label, level=3)
            if len(idx) == 0:
                rep.add_text(empty)
                continue
            masks = test.get("masks")
            heat = test.get("heatmap")
            gallery = []
            for i in idx:
                overlay = heat(paths[i]) if heat is not None else None  # heat-map hook (Model.explain)
                jpeg = thumbnail_jpeg(paths[i], mask=masks[i] if masks is not None else None, overlay=overlay)
                gallery.append(GalleryItem(jpeg, f"score {format_prob(s[i])} · {shown[i]}",
                                           alt=f"{stem.replace('_', ' ')}: {shown[i]}"))
            rep.add_gallery(gallery)
            rep.add_table([{"score": format_prob(s[i]), "file": paths[i]} for i in idx])
        note = "Click an image to enlarge it, click again to close."
        if test.get("masks") is not None:
            note += " Red outline: the object's mask."
        if test.get("heatmap") is not None:
            note += (" Colours: the model's patch evidence, scaled per image (bright = the patches it found most "
                     "object-like in that image); the score under each image is the image's probability.")
        rep.add_text(note)

    # ---- examples
    if images:
        rep.add_heading("Examples")
        for k, (section, items) in enumerate(images.items()):
            rep.add_heading(str(section), level=3)
            items = list(items)
            if not items:
                rep.add_text("(no images)")
                continue
            direct = _embeddable(items[0][0]) if len(items) == 1 else None
            if direct is not None:  # one ready-made figure (e.g. a saved grid): show it full size
                rep.add_image(direct, str(items[0][1]))
                continue
            stem = "examples_" + (re.sub(r"[^a-z0-9]+", "_", str(section).lower()).strip("_")[:40]
                                  or str(k))
            rep.add_image(png(plot_image_grid(items, ncols=6), f"{stem}_{k}"), str(section))

    # ---- training history
    hist_info = results.get("history")
    if hist_info and hist_info.get("epochs"):
        rep.add_heading("Training history")
        kept = hist_info.get("kept_epoch")
        fig = png(plot_training_history(hist_info["epochs"], kept_epoch=kept), "training_history")
        rep.add_image(fig, "Per-epoch training loss, validation AP and learning rate"
                      + (f"; the weights of epoch {kept} (best validation AP) were kept." if kept else "."))

    # ---- configuration
    rep.add_heading("Configuration")
    rep.add_code(applied_config(config) if isinstance(config, Mapping) else config,
                 caption="Resolved configuration of this run (settings that applied)")
    return rep.save(run_dir / "report.html")
