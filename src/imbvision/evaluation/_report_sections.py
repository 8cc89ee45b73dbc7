"""Run-report sections for false alarms, heat-map localisation, and a test split without positives."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..htmlreport import Report
from .plots import plot_score_histograms

__all__ = ["add_false_alarms", "add_localisation", "negatives_only_page", "false_alarm_text"]


def false_alarm_text(m: Mapping[str, Any]) -> str:
    """One sentence: the realised false-alarm rate, its interval and (``fpr<=`` rule) the target's interval."""
    if "false_alarm_rate" not in m:
        return ""
    lo, hi = m["false_alarm_ci"]
    level = round(100 * m["false_alarm_ci_level"])
    text = (f"false-alarm rate on the {m['negatives']:,} test negatives: {m['false_alarm_rate']:.4f} "
            f"({m['false_alarms']:,} flagged; {level}% Clopper–Pearson interval {lo:.4f} – {hi:.4f})")
    if "false_alarm_target" in m:
        elo, ehi = m["false_alarm_expected"]
        text += (f"; target {m['false_alarm_target']:g}: a threshold set on the validation negatives gives a rate in "
                 f"{elo:.4f} – {ehi:.4f} on this many negatives ({level}% of the time) — "
                 + ("inside" if m["false_alarm_within_expected"] else "OUTSIDE: the test negatives differ from the "
                    "validation negatives"))
    return text


def add_false_alarms(rep: Report, m: Mapping[str, Any]) -> None:
    """The realised false-alarm rate with its binomial interval (and the target's, for an ``fpr<=`` threshold)."""
    text = false_alarm_text(m)
    if text:
        rep.add_text(text[0].upper() + text[1:] + ".")
        if m.get("false_alarm_within_expected") is False:
            rep.add_callout("The realised false-alarm rate lies outside the interval the threshold rule predicts: "
                            "the test negatives look unlike the validation negatives (a shift in the data?).",
                            "warning")


def add_localisation(rep: Report, loc: Mapping[str, Any] | None) -> None:
    """Pixel AUROC and AUPRO of the heat maps, with what they were computed on (nothing without masks)."""
    if not loc:
        return
    rep.add_heading("Localisation of the heat maps")
    sampled = (f" The negative images' pixels were sampled (every {loc['negative_pixel_stride']}th, weighted) to "
               "bound memory." if loc.get("negative_pixel_stride", 1) > 1 else "")
    rep.add_text(
        f"How well the heat maps point at the object, on the test split's {loc['masked_positives']} masked positives "
        f"({loc['regions']} object regions) and its negatives, maps at a long side of at most {loc.get('max_side')} "
        "pixels. Pixel AUROC ranks every pixel against the masks; AUPRO (Bergmann et al., MVTec AD, 2019/2021) is "
        f"the mean overlap per object region integrated up to a false-positive rate of {loc['fpr_limit']:g} over the "
        "object-free pixels, normalised (1 = perfect, about 0.15 for a random map), so a small object counts as "
        "much as a large one." + sampled
        + (f" {loc['unmasked_positives']} positives without a usable mask were left out."
           if loc.get("unmasked_positives") else ""))
    rep.add_table([["pixel AUROC", loc["pixel_auroc"], 0.5], [f"AUPRO (FPR ≤ {loc['fpr_limit']:g})", loc["aupro"], None]],
                  header=["localisation (test)", "model", "random map"], digits=3)


def negatives_only_page(title: str, run_dir: Path, m: Mapping[str, Any], choice: Any, s: np.ndarray,
                        png: Callable[[Any, str], bytes]) -> Report:
    """The run page of a test split without a positive: false alarms and the score histogram, and why no more."""
    rep = Report(title, subtitle=f"Run folder {run_dir} · test split: {m['n']:,} images, no positive")
    rep.add_callout("The test split holds no positive: average precision, ROC-AUC, recall and precision need "
                    "positives and are not reported. What can be known without one is below: how often the model "
                    "raises a false alarm, and how its scores are spread.", "warning")
    rep.add_heading("Summary")
    lo, hi = m["false_alarm_ci"]
    rep.add_cards([("False-alarm rate", m["false_alarm_rate"], f"{round(100 * m['false_alarm_ci_level'])}% CI "
                    f"{lo:.4f} – {hi:.4f}"), ("Flagged", m["fp"], f"of {m['n_neg']:,} negatives"),
                   ("Threshold", f"{float(choice.threshold):.4g}", str(choice.rule))])
    add_false_alarms(rep, m)
    if choice.note:
        rep.add_callout(choice.note, "warning")
    y = np.zeros(len(s), dtype=np.int8)
    rep.add_image(png(plot_score_histograms(y, s, float(choice.threshold), title="Test scores (negatives)"),
                      "score_histograms"), "Test score distribution (log-scale counts) with the threshold.")
    return rep
