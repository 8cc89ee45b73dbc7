"""Each head's test AP on the demo data (small blobs, exact masks) through ``compare``.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_patch_demo.py [--seeds 3] [--layers s16+s32,s8+s16]

Runs once per patch-feature setting (``--patch-layers``); the first one's leaderboard is the headline.

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
    ap.add_argument("--layers", default="s16+s32,s8+s16")
    args = ap.parse_args()
    from imbvision.workflows.compare import run_compare

    runs = {}
    for layers in args.layers.split(","):
        t = time.perf_counter()
        res = run_compare("demo", strategies="ce,patch,normality,fusion", seeds=args.seeds, cache_dir=args.cache,
                          out=os.path.join(tempfile.mkdtemp(prefix="demo-patch-"), "cmp"), progress=False,
                          patch_layers=layers)
        board = [{k: r.get(k) for k in ("strategy", "ap_mean", "ap_std", "ap_ci", "delta_ap", "delta_ci", "p_holm",
                                          "fusion_weights", "fusion_winner")} for r in res.leaderboard]
        for r in board:
            print(layers, r)
        runs[layers] = {"leaderboard": board, "recommendation": res.recommendation,
                        "wall_seconds": time.perf_counter() - t}
    first = next(iter(runs.values()))
    save("bench_patch_demo", {"data": "demo (600 images, 5% positive, 128 px)", "seeds": args.seeds,
                              "patch_layers": list(runs), **first, "by_patch_layers": runs})


if __name__ == "__main__":
    RESULTS.mkdir(parents=True, exist_ok=True)
    main()
