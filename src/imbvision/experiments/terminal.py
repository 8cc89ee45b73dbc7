"""The compare leaderboard in a terminal (rich), fitting 80 columns plus the localisation columns."""

from __future__ import annotations

from typing import Any

from .._text import plural

__all__ = ["print_leaderboard"]


def _ci_cell(ci: list[float] | None, fmt: str = "{:.2f}", sep: str = ", ") -> str:
    return "no interval" if ci is None else f"[{fmt.format(ci[0])}{sep}{fmt.format(ci[1])}]"


def print_leaderboard(res: CompareResult, console) -> None:
    """Print the leaderboard (fits 80 columns) and the recommendation with rich."""
    from rich import box
    from rich.table import Table

    k = res.leaderboard[0]["cells"]
    t = Table(title=f"test AP over {plural(k, 'split')} · ΔAP vs {res.baseline}: corrected resampled t-test over splits, "
                    "interval at Holm's level · * beyond noise (Holm p < 0.05)",
              box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    t.add_column("strategy", no_wrap=True)
    loc = any("aupro" in r for r in res.leaderboard)  # heat-map heads on data with masks
    for col in ("AP [CI]", "ROC-AUC", "ΔAP [CI]", "Holm p", "recall", *(("pxAUROC", "AUPRO") if loc else ())):
        t.add_column(col, justify="right", no_wrap=True)
    for r in res.leaderboard:
        has = "delta_ap" in r
        t.add_row(r["strategy"], f"{r['ap_mean']:.3f} {_ci_cell(r['ap_ci'], sep=',')}", f"{r['roc_auc']:.3f}",
                  f"{r['delta_ap']:+.3f} {_ci_cell(r['delta_ci'], '{:+.2f}', ',')}" if has else "",
                  "" if r.get("p_holm") is None else f"{r['p_holm']:.2g}" + (" *" if r.get("beyond_noise") else "  "),
                  f"{r['recall']:.2f}",
                  *((f"{r['pixel_auroc']:.3f}", f"{r['aupro']:.3f}") if "aupro" in r else ("", "")) if loc else ())
    console.print(t)
    if loc:
        console.print("pxAUROC, AUPRO: heat maps vs test masks (AUPRO to FPR 0.3), mean over splits", highlight=False)
    console.print(res.recommendation)
    if getattr(res, "fixed_test", False):
        from .split_plan import FIXED_TEST_REPLICATION
        console.print(FIXED_TEST_REPLICATION)
