"""Evaluation figures (matplotlib, Agg canvas, no pyplot global state).

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure`; every
``save_*`` wrapper takes an output path first, writes a PNG atomically and
returns the path. The figures are built on the Agg canvas directly, so they
work on headless machines and from threads without touching ``pyplot``.

Why one file: every figure shares the same Agg set-up, colours and layout helpers; each
function is short and independent.
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from .._io import atomic_write
from ..errors import ConfigError
from .calibration import _check_probs, brier, expected_calibration_error, reliability_curve
from .metrics import check_binary_scores, threshold_metrics

__all__ = [
    "plot_pr_curve",
    "plot_pr_curves",
    "plot_roc_curve",
    "plot_roc_curves",
    "plot_score_histograms",
    "plot_reliability",
    "merged_reliability_bins",
    "plot_seed_dots",
    "plot_training_history",
    "plot_image_grid",
    "figure_to_png",
    "save_figure",
    "save_pr_curve",
    "save_pr_curves",
    "save_roc_curve",
    "save_roc_curves",
    "save_score_histograms",
    "save_reliability",
    "save_image_grid",
]

_STYLE = {
    "font.size": 12,
    "axes.titlesize": 14,
    "axes.titleweight": "bold",
    "axes.labelsize": 12.5,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 10.5,
    "legend.framealpha": 0.9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}
_NEG_COLOR = "#4c72b0"
_POS_COLOR = "#dd8452"
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")


@contextmanager
def _style() -> Iterator[None]:
    with rc_context(_STYLE):
        yield


def _new_figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _plain(text: Any) -> str:
    """User text for titles/legends: no mathtext surprises from '$'."""
    return str(text).replace("$", r"\$")


def _short(text: Any, n: int = 42) -> str:
    """A legend label: '$'-safe and at most ``n`` characters."""
    s = str(text)
    return _plain(s if len(s) <= n else s[: n - 1] + "…")


def _curves_arg(curves: Mapping[str, tuple[Any, Any]]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    if not isinstance(curves, Mapping) or not curves:
        raise ConfigError(
            "curves must be a non-empty dict {label: (y, score)}; "
            f"got {type(curves).__name__}"
        )
    out = []
    for label, pair in curves.items():
        try:
            y, s = pair
        except (TypeError, ValueError):
            raise ConfigError(f"curve {label!r} must be a (y, score) pair") from None
        y_i, s_f = check_binary_scores(y, s)
        out.append((str(label), y_i, s_f))
    return out


# --------------------------------------------------------------------------- PR / ROC
def plot_pr_curves(
    curves: Mapping[str, tuple[Any, Any]],
    *,
    thresholds: Mapping[str, float] | None = None,
    shown: Mapping[str, float] | None = None,
    title: str = "Precision–recall curve",
    figsize: tuple[float, float] = (6.4, 5.0),
) -> Figure:
    """Overlay PR curves ``{label: (y, score)}``; AP in the legend, positive-rate baseline.

    ``thresholds`` (by label) marks each curve's operating point; ``shown`` (by label) is the
    decision threshold the legend names when the curve's scores are on another scale (e.g. the
    ranking score before calibration, where the point is the lowest flagged score).
    """
    data = _curves_arg(curves)
    thresholds = dict(thresholds or {})
    with _style():
        fig = _new_figure(figsize)
        ax = fig.add_subplot()
        rates: dict[float, None] = {}
        for k, (label, y, s) in enumerate(data):
            color = _COLORS[k % len(_COLORS)]
            prec, rec, _ = precision_recall_curve(y, s)
            ap = average_precision_score(y, s)
            ax.plot(rec, prec, drawstyle="steps-post", lw=2, color=color,
                    label=f"{_short(label)} (AP {ap:.3f})")
            if label in thresholds:
                m = threshold_metrics(y, s, thresholds[label])
                ax.plot([m["recall"]], [m["precision"]], "o", ms=8, color=color, mec="black",
                        label=f"threshold {dict(shown or {}).get(label, m['threshold']):.4g}: P {m['precision']:.2f}, "
                              f"R {m['recall']:.2f}")
            rates[round(float(y.mean()), 6)] = None
        for rate in rates:
            ax.axhline(rate, ls="--", lw=1.2, color="grey",
                       label=f"chance (positive rate {rate:.3g})")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(0.0, 1.03)
        ax.set_xlabel("Recall (fraction of positives found)")
        ax.set_ylabel("Precision (fraction of flags correct)")
        ax.set_title(_plain(title))
        ax.legend(loc="lower left")
    return fig


def plot_pr_curve(
    y: Any,
    score: Any,
    *,
    label: str = "model",
    threshold: float | None = None,
    shown_threshold: float | None = None,
    title: str = "Precision–recall curve",
) -> Figure:
    """One PR curve (see :func:`plot_pr_curves`)."""
    return plot_pr_curves(
        {label: (y, score)}, thresholds=None if threshold is None else {label: threshold},
        shown=None if shown_threshold is None else {label: shown_threshold}, title=title,
    )


def plot_roc_curves(
    curves: Mapping[str, tuple[Any, Any]],
    *,
    thresholds: Mapping[str, float] | None = None,
    shown: Mapping[str, float] | None = None,
    title: str = "ROC curve",
    figsize: tuple[float, float] = (6.4, 5.0),
) -> Figure:
    """Overlay ROC curves ``{label: (y, score)}``; ROC-AUC in the legend, chance diagonal."""
    data = _curves_arg(curves)
    thresholds = dict(thresholds or {})
    with _style():
        fig = _new_figure(figsize)
        ax = fig.add_subplot()
        for k, (label, y, s) in enumerate(data):
            color = _COLORS[k % len(_COLORS)]
            fpr, tpr, _ = roc_curve(y, s)
            auc = roc_auc_score(y, s)
            ax.plot(fpr, tpr, lw=2, color=color, label=f"{_short(label)} (AUC {auc:.3f})")
            if label in thresholds:
                m = threshold_metrics(y, s, thresholds[label])
                ax.plot([1 - m["specificity"]], [m["recall"]], "o", ms=8, color=color,
                        mec="black", label=f"threshold {dict(shown or {}).get(label, m['threshold']):.4g}")
        ax.plot([0, 1], [0, 1], ls="--", lw=1.2, color="grey", label="chance (AUC 0.5)")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.03)
        ax.set_xlabel("False positive rate (negatives flagged)")
        ax.set_ylabel("True positive rate (recall)")
        ax.set_title(_plain(title))
        ax.legend(loc="lower right")
    return fig


def plot_roc_curve(
    y: Any,
    score: Any,
    *,
    label: str = "model",
    threshold: float | None = None,
    shown_threshold: float | None = None,
    title: str = "ROC curve",
) -> Figure:
    """One ROC curve (see :func:`plot_roc_curves`)."""
    return plot_roc_curves(
        {label: (y, score)}, thresholds=None if threshold is None else {label: threshold},
        shown=None if shown_threshold is None else {label: shown_threshold}, title=title,
    )


# --------------------------------------------------------------------------- histograms
def plot_score_histograms(
    y: Any,
    score: Any,
    threshold: float | None = None,
    *,
    log: bool = True,
    bins: int = 40,
    title: str = "Scores by true class",
    figsize: tuple[float, float] = (7.0, 4.4),
) -> Figure:
    """Histograms of the scores of negatives and positives, with the threshold line.

    ``log=True`` puts counts on a log scale so the few positives stay visible.
    """
    y_i, s = check_binary_scores(y, score, require_both=False)
    lo, hi = float(s.min()), float(s.max())
    if 0.0 <= lo and hi <= 1.0:
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, int(bins) + 1)
    with _style():
        fig = _new_figure(figsize)
        ax = fig.add_subplot()
        for cls, name, color in ((0, "negative", _NEG_COLOR), (1, "positive", _POS_COLOR)):
            v = s[y_i == cls]
            if len(v) == 0:
                continue
            ax.hist(v, bins=edges, color=color, alpha=0.45, histtype="stepfilled",
                    label=f"{name} (n={len(v)})")
            ax.hist(v, bins=edges, color=color, histtype="step", lw=1.6)
        if threshold is not None:
            ax.axvline(float(threshold), color="black", ls="--", lw=1.6,
                       label=f"threshold {float(threshold):.3g}")
        if log:
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.7)
        ax.set_xlim(lo, hi)
        ax.set_xlabel("Score (predicted probability of positive)")
        ax.set_ylabel("Count (log scale)" if log else "Count")
        ax.set_title(_plain(title))
        ax.legend(loc="best")
    return fig


# --------------------------------------------------------------------------- calibration
def merged_reliability_bins(y: Any, p: Any, n_bins: int = 10, min_count: int = 10) -> dict[str, np.ndarray]:
    """Quantile probability bins with about ``min_count`` predictions or more each.

    Uniform bins on a small test set leave most images in the lowest bin and a few
    lone ones elsewhere; merging those collapses the curve to one dot. Quantile bins
    (equal counts, as ``sklearn.calibration.calibration_curve(strategy="quantile")``)
    keep every point an average of about the same number of images: ``min(n_bins,
    N // min_count)`` bins, but never fewer than 3 while there are 3 distinct
    predictions (a curve needs points to show a slope). Tied predictions stay in
    one bin. Written here rather than calling sklearn because the counts and edges
    of the bins are needed for the count panel, which sklearn does not return.

    Returns
    -------
    dict
        ``prob_pred`` (mean prediction), ``prob_true`` (observed positive rate),
        ``count`` and ``lo``/``hi`` (bin edges: the lowest and highest prediction in
        the bin's range, adjacent bins touching), one entry per non-empty bin, in
        increasing order of prediction.
    """
    y_i = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    out: dict[str, list[float]] = {"prob_pred": [], "prob_true": [], "count": [], "lo": [], "hi": []}
    if p.size == 0:
        return {k: np.asarray(v) for k, v in out.items()}
    distinct = np.unique(p)
    k = int(min(int(n_bins), max(p.size // max(int(min_count), 1), min(3, distinct.size)), distinct.size))
    k = max(k, 1)
    srt = np.sort(p)
    # cut points at the k-quantiles, as predictions: a prediction equal to a cut opens the next bin
    cuts = np.unique(srt[[int(round(j * p.size / k)) for j in range(1, k)]]) if k > 1 else np.array([])
    cuts = cuts[cuts > srt[0]]
    ids = np.searchsorted(cuts, p, side="right")
    bounds = np.concatenate([[srt[0]], cuts, [srt[-1]]])
    for b in range(len(cuts) + 1):
        sel = ids == b
        if not sel.any():
            continue
        out["prob_pred"].append(float(p[sel].mean()))
        out["prob_true"].append(float(y_i[sel].mean()))
        out["count"].append(int(sel.sum()))
        out["lo"].append(float(bounds[b]))
        out["hi"].append(float(bounds[b + 1]))
    return {k: np.asarray(v) for k, v in out.items()}


def plot_reliability(
    y: Any,
    p_before: Any,
    p_after: Any | None = None,
    *,
    labels: tuple[str, str] = ("before calibration", "after calibration"),
    n_bins: int = 10,
    min_count: int = 10,
    title: str = "Reliability diagram",
    figsize: tuple[float, float] = (6.4, 6.0),
) -> Figure:
    """Reliability diagram of one or two sets of probabilities, Brier and ECE in the legend.

    Bins hold equal shares of the predictions (:func:`merged_reliability_bins`:
    about ``min_count`` or more per point, at least 3 points when the predictions
    spread) and each point is labelled with its count; a lower panel shows how many
    predictions fall in each of those same bins (log scale). When ``p_after`` equals
    ``p_before`` (calibration ``none``) one line is drawn and the legend says so.
    """
    series = [(labels[0], _check_probs(p_before))]
    if p_after is not None:
        after = _check_probs(p_after)
        if after.shape == series[0][1].shape and np.allclose(after, series[0][1], rtol=0, atol=1e-12):
            series = [("model (unchanged by calibration)", after)]
        else:
            series.append((labels[1], after))
    y_i, _ = check_binary_scores(y, series[0][1], require_both=False, what="probabilities")
    for _, p in series[1:]:
        check_binary_scores(y_i, p, require_both=False, what="probabilities")
    with _style():
        fig = _new_figure(figsize)
        gs = fig.add_gridspec(2, 1, height_ratios=(3, 1))
        ax = fig.add_subplot(gs[0])
        axh = fig.add_subplot(gs[1], sharex=ax)
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1.2, label="perfectly calibrated")
        for k, (label, p) in enumerate(series):
            color = _COLORS[k]
            rb = merged_reliability_bins(y_i, p, n_bins, min_count)
            b = brier(y_i, p)
            ece = expected_calibration_error(y_i, p, n_bins)
            ax.plot(rb["prob_pred"], rb["prob_true"], "o-", color=color, lw=2, ms=6,
                    label=f"{_short(label, 48)} (Brier {b:.4f}, ECE {ece:.3f})")
            placed: list[tuple[float, float]] = []  # points crowded in a corner would stack their labels
            for x, yy, c in zip(rb["prob_pred"], rb["prob_true"], rb["count"]):
                if any(np.hypot(x - a, yy - b) < 0.07 for a, b in placed):
                    continue
                ax.annotate(f"n={int(c)}", (x, yy), textcoords="offset points", xytext=(6, -12 - 12 * k),
                            fontsize=8.5, color=color)
                placed.append((x, yy))
            # the count panel shows the very bins of the curve above (not a separate uniform histogram)
            axh.stairs(rb["count"], np.concatenate([rb["lo"], rb["hi"][-1:]]) if len(rb["lo"]) else [0, 1],
                       color=color, lw=1.6, baseline=0.7)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("Observed positive rate")
        ax.set_title(_plain(title))
        ax.legend(loc="upper left", fontsize=9.5)
        ax.tick_params(labelbottom=False)
        axh.set_yscale("log")
        axh.set_ylim(bottom=0.7)
        axh.set_xlabel(f"Mean predicted probability (quantile bins)")
        axh.set_ylabel("Count")
    return fig


# --------------------------------------------------------------------------- thumbnails
def _thumb(item: Any, size: int) -> tuple[np.ndarray | None, str | None]:
    """(uint8 RGB thumbnail, None) or (None, error text) — never raises."""
    from PIL import Image

    from ..htmlreport import image_array

    try:
        arr = image_array(item)
        im = Image.fromarray(np.ascontiguousarray(arr))
        im.thumbnail((size, size))
        return np.asarray(im), None
    except Exception as exc:  # a bad file must show as a tile, never a traceback
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        return None, reason


def plot_image_grid(
    items: Sequence[tuple[Any, str]],
    *,
    ncols: int = 6,
    title: str | None = None,
    thumb_size: int = 192,
    max_caption_lines: int = 3,
) -> Figure:
    """Thumbnails with captions; ``items`` are ``(path or (H, W, 3) uint8 array, caption)``.

    A file that cannot be decoded shows as a grey tile with the reason.
    """
    items = list(items)
    for k, it in enumerate(items):
        if not (isinstance(it, (tuple, list)) and len(it) == 2):
            raise ConfigError(f"image grid item {k} must be an (image, caption) pair; got {it!r}")
    n = len(items)
    ncols = max(1, min(int(ncols), n or 1))
    nrows = max(1, math.ceil(n / ncols))
    tile_w, tile_h = 1.95, 1.95 + 0.19 * max_caption_lines
    with _style():
        fig = _new_figure((tile_w * ncols, tile_h * nrows + (0.4 if title else 0.0)))
        if title:
            fig.suptitle(_plain(title), fontsize=13, fontweight="bold")
        if n == 0:
            ax = fig.add_subplot()
            ax.axis("off")
            ax.text(0.5, 0.5, "no images", ha="center", va="center", fontsize=12, color="grey")
            return fig
        axes = fig.subplots(nrows, ncols, squeeze=False)
        wrap = max(12, int(tile_w * 11))
        for k, ax in enumerate(axes.ravel()):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for sp in ax.spines.values():
                sp.set_visible(False)
            if k >= n:
                ax.axis("off")
                continue
            image, caption = items[k]
            arr, err = _thumb(image, thumb_size)
            lines = textwrap.wrap(str(caption), wrap)[:max_caption_lines] or [""]
            if arr is not None:
                ax.imshow(arr, interpolation="lanczos" if max(arr.shape[:2]) > 8 else "nearest")
            else:
                ax.imshow(np.full((8, 8, 3), 200, dtype=np.uint8))
                ax.set_xlim(-0.5, 7.5)
                msg = "\n".join(textwrap.wrap(f"cannot show: {err}", 24)[:5])
                ax.text(0.5, 0.5, msg, transform=ax.transAxes, ha="center", va="center",
                        fontsize=8.5, color="#8b0000", parse_math=False)
            ax.set_xlabel("\n".join(lines), fontsize=9.5, parse_math=False)
    return fig


# --------------------------------------------------------------------------- compare / history
def plot_seed_dots(
    per_seed: Mapping[str, Sequence[float]],
    *,
    metric: str = "AP",
    baseline: str | None = None,
    title: str = "Every seed behind each mean",
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """One row per strategy: a dot per seed (split) and a bar at the mean.

    ``per_seed`` maps a strategy name to its metric values, one per seed or fold,
    in leaderboard order (the first row is drawn at the top). ``baseline`` draws
    that strategy's mean as a dashed vertical line. NaN values are skipped.
    """
    if not isinstance(per_seed, Mapping) or not per_seed:
        raise ConfigError("per_seed must be a non-empty dict {strategy: [value per seed]}")
    names = list(per_seed)
    h = figsize or (7.2, 1.2 + 0.42 * len(names))
    with _style():
        fig = _new_figure(h)
        ax = fig.add_subplot()
        for row, name in enumerate(names):
            v = np.asarray([x for x in per_seed[name] if x is not None], dtype=float)
            v = v[np.isfinite(v)]
            yy = len(names) - 1 - row
            if len(v):
                jitter = np.linspace(-0.12, 0.12, len(v)) if len(v) > 1 else np.zeros(1)
                ax.plot(v, yy + jitter, "o", ms=6, alpha=0.75, color=_COLORS[0], mec="white", mew=0.6)
                ax.plot([v.mean()] * 2, [yy - 0.3, yy + 0.3], color="black", lw=2.2)
        if baseline is not None and baseline in per_seed:
            b = np.asarray([x for x in per_seed[baseline] if x is not None], dtype=float)
            b = b[np.isfinite(b)]
            if len(b):
                ax.axvline(b.mean(), ls="--", color="grey", lw=1.2, label=f"{_short(baseline, 30)} mean")
                ax.legend(loc="lower right", fontsize=9)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([_short(n, 36) for n in reversed(names)])
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.set_xlabel(f"{_plain(metric)} per seed (dots) and mean (bar)")
        ax.set_title(_plain(title))
        ax.grid(axis="y", alpha=0)
    return fig


def plot_training_history(
    history: Sequence[Mapping[str, Any]],
    *,
    kept_epoch: int | None = None,
    title: str = "Fine-tuning history",
    figsize: tuple[float, float] = (7.2, 7.0),
) -> Figure:
    """Per-epoch training loss, validation AP and learning rate, the kept epoch marked.

    ``history`` is a list of ``{"epoch": int, "train_loss": float, "val_ap": float,
    "lr": float}`` (missing keys are skipped); ``kept_epoch`` (the checkpoint
    restored by early stopping) is drawn as a vertical line on every panel.
    """
    rows = [dict(r) for r in history]
    if not rows:
        raise ConfigError("history is empty: the fine-tune loop recorded no epoch")
    ep = np.asarray([float(r.get("epoch", k + 1)) for k, r in enumerate(rows)])
    panels = [(key, label) for key, label in (("train_loss", "training loss"), ("val_ap", "validation AP"),
                                              ("lr", "learning rate"))
              if any(r.get(key) is not None for r in rows)]
    with _style():
        fig = _new_figure(figsize)
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, (key, label) in zip(axes, panels):
            v = np.asarray([np.nan if r.get(key) is None else float(r[key]) for r in rows])
            ax.plot(ep, v, "o-", lw=2, ms=5, color=_COLORS[0])
            ax.set_ylabel(label)
            if key == "lr" and np.nanmax(v) > 0 and np.nanmin(v) > 0 and np.nanmax(v) / np.nanmin(v) > 20:
                ax.set_yscale("log")
            if kept_epoch is not None:
                ax.axvline(kept_epoch, color=_COLORS[1], ls="--", lw=1.6,
                           label=f"kept: epoch {kept_epoch}" if key == panels[0][0] else None)
        if kept_epoch is not None:
            axes[0].legend(loc="best")
        axes[0].set_title(_plain(title))
        axes[-1].set_xlabel("epoch")
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


# --------------------------------------------------------------------------- saving
def figure_to_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG atomically; return the path."""
    path = Path(path)
    data = figure_to_png(fig, dpi=dpi)
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return path


def save_pr_curve(path: str | os.PathLike[str], y: Any, score: Any, **kwargs: Any) -> Path:
    """:func:`plot_pr_curve` written to ``path`` (PNG)."""
    return save_figure(plot_pr_curve(y, score, **kwargs), path)


def save_pr_curves(path: str | os.PathLike[str], curves: Mapping[str, tuple[Any, Any]],
                   **kwargs: Any) -> Path:
    """:func:`plot_pr_curves` written to ``path`` (PNG)."""
    return save_figure(plot_pr_curves(curves, **kwargs), path)


def save_roc_curve(path: str | os.PathLike[str], y: Any, score: Any, **kwargs: Any) -> Path:
    """:func:`plot_roc_curve` written to ``path`` (PNG)."""
    return save_figure(plot_roc_curve(y, score, **kwargs), path)


def save_roc_curves(path: str | os.PathLike[str], curves: Mapping[str, tuple[Any, Any]],
                    **kwargs: Any) -> Path:
    """:func:`plot_roc_curves` written to ``path`` (PNG)."""
    return save_figure(plot_roc_curves(curves, **kwargs), path)


def save_score_histograms(path: str | os.PathLike[str], y: Any, score: Any,
                          threshold: float | None = None, **kwargs: Any) -> Path:
    """:func:`plot_score_histograms` written to ``path`` (PNG)."""
    return save_figure(plot_score_histograms(y, score, threshold, **kwargs), path)


def save_reliability(path: str | os.PathLike[str], y: Any, p_before: Any,
                     p_after: Any | None = None, **kwargs: Any) -> Path:
    """:func:`plot_reliability` written to ``path`` (PNG)."""
    return save_figure(plot_reliability(y, p_before, p_after, **kwargs), path)


def save_image_grid(path: str | os.PathLike[str], items: Sequence[tuple[Any, str]],
                    **kwargs: Any) -> Path:
    """:func:`plot_image_grid` written to ``path`` (PNG)."""
    return save_figure(plot_image_grid(items, **kwargs), path)
