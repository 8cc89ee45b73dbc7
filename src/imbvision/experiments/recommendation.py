"""The leaderboard's recommendation: one paragraph whose decisions are the table's own flags.

Owns the wording of ``compare``'s conclusion -- use a remedy that is beyond noise, "likely better"
with the number of paired splits that would decide (:func:`~imbvision.experiments.stats.seeds_to_decide`),
or keep the plain baseline -- and of the declared primary comparison. Reads only the aggregated
rows (:func:`imbvision.workflows.compare._aggregate`), so it cannot disagree with them.
"""

from __future__ import annotations

import warnings
from typing import Any

from .._text import plural
from ..strategies.registry import compose
from .config import BASELINE
from .stats import ALPHA, few_splits_note, seeds_to_decide

__all__ = ["recommend", "delta_text"]

def delta_text(r: dict[str, Any]) -> str:
    """ΔAP with the interval behind its decision and the adjusted p, as one parenthesis."""
    ci = r.get("delta_ci")
    if ci is None:
        return f"ΔAP {r['delta_ap']:+.3f}, no interval ({r.get('test_note') or 'no test possible'})"
    if r.get("gate") == "primary":
        return (f"ΔAP {r['delta_ap']:+.3f}, {100 * r['delta_ci_level']:.3g}% CI {ci[0]:+.3f} to {ci[1]:+.3f}, "
                f"p = {r['p_holm']:.2g} as the declared primary comparison")
    return (f"ΔAP {r['delta_ap']:+.3f}, {100 * r['delta_ci_level']:.3g}% CI {ci[0]:+.3f} to {ci[1]:+.3f} "
            f"at Holm's level, Holm-adjusted p = {r['p_holm']:.2g}")


def _likely_better(top: dict[str, Any], k: int, n_train, n_test, folds) -> str | None:
    """The sentence for a remedy ahead on every split yet not beyond noise: how many splits would decide."""
    if top.get("delta_ap") is None or top["delta_ap"] <= 0 or top.get("splits_better") != k or k < 2:
        return None
    level = 1.0 - (top.get("delta_ci_level") or 0.95)
    need = seeds_to_decide(top["delta_per_split"], n_train, n_test, level=level)
    unit = (lambda n: f"--seeds {-(-n // folds)} with --folds {folds}") if folds else (lambda n: f"--seeds {n}")
    more = (f"about {need} paired splits at today's spread would decide ({unit(need)}), or add data"
            if need is not None else
            "more seeds alone cannot decide it at today's spread (overlapping splits share images): add data")
    return (f"{top['strategy']} is likely better than the plain baseline — ahead on all {k} paired splits, AP "
            f"{top['ap_mean']:.3f} ({delta_text(top)}) — but not beyond noise yet; {more}.")


def recommend(rows: list[dict[str, Any]], baseline: str = BASELINE, *, n_train=None, n_test=None, folds=None,
               primary: str | None = None) -> str:
    """One paragraph that agrees with the table: decisions are the rows' ``beyond_noise`` flags."""
    base = next(r for r in rows if r["strategy"] == baseline)
    others = [r for r in rows if r["strategy"] != baseline]  # in table order (by AP)
    better = [r for r in others if r.get("beyond_noise") and r["delta_ap"] > 0]
    worse = [r for r in others if r.get("beyond_noise") and r["delta_ap"] < 0]
    k = base["cells"]
    lines = []
    if better:
        b = better[0]  # the highest AP among those beyond noise (same baseline, so also the largest ΔAP)
        lines.append(f"Use {b['strategy']} (rank {b['rank']}): AP {b['ap_mean']:.3f} vs {base['ap_mean']:.3f} for the "
                     f"plain baseline {baseline}, {delta_text(b)}, over {plural(k, 'paired split')}.")
        if len(better) > 1:
            lines.append("Also better than the baseline beyond noise: "
                         + ", ".join(r["strategy"] for r in better[1:]) + ".")
    elif others and (likely := _likely_better(others[0], k, n_train, n_test, folds)) is not None:
        lines.append(likely)
    else:
        msg = f"No remedy beats the baseline beyond noise over {plural(k, 'paired split')}"
        if others:
            top = others[0]
            if base["rank"] < top["rank"]:
                msg += (f": the plain baseline {baseline} ranks first (AP {base['ap_mean']:.3f}); the best remedy, "
                        f"{top['strategy']}, ranks {top['rank']} with AP {top['ap_mean']:.3f} ({delta_text(top)})")
            else:
                msg += (f": the top-ranked remedy, {top['strategy']}, has AP {top['ap_mean']:.3f} vs "
                        f"{base['ap_mean']:.3f} ({delta_text(top)})")
        lines.append(msg + ". Keep the plain baseline and tune its threshold; more data would narrow the intervals "
                           "(more seeds only up to about 10: overlapping splits share images).")
    if worse:
        lines.append("Worse than the baseline beyond noise: "
                     + "; ".join(f"{r['strategy']} ({delta_text(r)})" for r in worse) + ".")
    if primary is not None:
        p = next(r for r in others if r["strategy"] == primary)
        lines.append(f"Declared primary comparison: {primary} vs {baseline}, tested at the full 5% level"
                     + ("; the other remedies were then tested by Holm." if p.get("beyond_noise") else
                        "; it is not beyond noise, so the other remedies were not tested."))
    note = few_splits_note(k, ALPHA)
    if note:
        lines.append(note)
    rec_best = max(rows, key=lambda r: r["recall"])
    if rec_best["strategy"] != baseline and rec_best["recall"] > base["recall"] + 0.02:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reweights = any(s.record.corrects_prior(s.params) for s in compose(rec_best["strategy"]).specs)
        why = (": re-weighting moves the threshold more than the ranking" if reweights
               else "")
        lines.append(
            f"At the tuned threshold, {rec_best['strategy']} finds more of the rare class (recall "
            f"{rec_best['recall']:.2f} vs {base['recall']:.2f}, precision {rec_best['precision']:.2f} vs "
            f"{base['precision']:.2f}; means over splits, not tested){why}."
        )
    return " ".join(lines)
