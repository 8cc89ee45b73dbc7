"""Each head's test AP on the demo data (small blobs, exact masks) through ``compare``.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_patch_demo.py [--seeds 3]

Writes ``benchmarks/results/bench_patch_demo.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from _common import RESULTS, save


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "imbv-cache"))
    args = ap.parse_args()
    from imbvision.experiments.compare import run_compare

    t = time.perf_counter()
    res = run_compare("demo", strategies="ce,patch,normality,fusion", seeds=args.seeds, cache_dir=args.cache,
                      out=os.path.join(tempfile.mkdtemp(prefix="demo-patch-"), "cmp"), progress=False)
    board = [{k: r.get(k) for k in ("strategy", "ap_mean", "ap_std", "ap_ci", "delta_ap", "delta_ci", "p_holm",
                                      "fusion_weights", "fusion_winner")} for r in res.leaderboard]
    for r in board:
        print(r)
    save("bench_patch_demo", {"data": "demo (600 images, 5% positive, 128 px)", "seeds": args.seeds,
                              "leaderboard": board, "recommendation": res.recommendation,
                              "wall_seconds": time.perf_counter() - t})


if __name__ == "__main__":
    RESULTS.mkdir(parents=True, exist_ok=True)
    main()
