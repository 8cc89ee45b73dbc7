"""Collect compare leaderboards before and after issue 12 into one JSON (AP mean, ΔAP, interval, p).

The runs themselves are ordinary ``imbvision compare`` calls; "before" ran the code of commit
89d06c0 from a separate checkout (``git worktree add /tmp/before 89d06c0``, ``PYTHONPATH=/tmp/before/src``),
"after" this branch, with one shared ``--cache-dir`` so embeddings were computed once:

    imbvision compare --data demo --strategies default --seeds 3 --out R/before_demo3     # old code
    imbvision compare --data demo --strategies default --out R/after_demo10              # new default: 10 seeds
    imbvision compare --data magnetic-tile:PATH --strategies ce,weighted-ce,balanced-sampler,focal,augment-oversample \\
        --train-positive-rate 0.05 [--seeds 3] --out R/...

The 3-seed "after" runs reuse the 10-seed run's cells of seeds 0–2 (the same splits and fits).
Usage: ``python benchmarks/compare_before_after.py LABEL=RUN_DIR ...``; writes
``benchmarks/results/compare_before_after.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _common import save


def _row(r: dict) -> dict:
    p = r.get("p", r.get("p_bootstrap"))
    return {"strategy": r["strategy"], "ap_mean": r["ap_mean"], "ap_ci": r.get("ap_ci"),
            "delta_ap": r.get("delta_ap"), "delta_ci": r.get("delta_ci"), "delta_ci_level": r.get("delta_ci_level", 0.95),
            "p_unadjusted": p, "p_holm": r.get("p_holm"), "beyond_noise": r.get("beyond_noise"),
            "fit_seconds": r.get("fit_seconds")}


def main() -> None:
    runs = {}
    for arg in sys.argv[1:]:
        label, path = arg.split("=", 1)
        d = json.loads((Path(path) / "leaderboard.json").read_text())
        # A run re-aggregated from its finished cells keeps the timing of its first, computing pass.
        first = Path(path) / "first_timing.json"
        timing = json.loads(first.read_text()) if first.exists() else d["timing"]
        cells = list((Path(path) / "cells").glob("*.json"))
        fits = sorted(json.loads(c.read_text())["timing"]["fit_seconds"] for c in cells)
        runs[label] = {
            "data": d["config"]["data"], "seeds": d["config"]["seeds"],
            "train_positive_rate": d["config"].get("train_positive_rate"),
            "statistics": d.get("statistics", {"test": "paired stratified bootstrap of test images, Holm "
                                                       "(the code before issue 12)"}),
            "leaderboard": [_row(r) for r in d["leaderboard"]], "recommendation": d["recommendation"],
            "wall_seconds": timing["wall_seconds"],
            "cell_fit_seconds": {"cells": len(fits), "median": fits[len(fits) // 2], "max": fits[-1],
                                 "total": sum(fits)},
        }
        print(f"{label}: {d['recommendation'][:160]}")
    save("compare_before_after", {"runs": runs})


if __name__ == "__main__":
    main()
