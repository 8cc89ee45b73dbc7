"""`compare --strategies default --seeds 10` on Magnetic-tile: CPU-seconds and the decision, with and without a declared primary.

Runs ``imbvision compare --data magnetic-tile:PATH --strategies default --seeds 10 --primary fusion``
from an empty cache folder (so decoding, the ONNX export, global and patch features are all made
and timed), then the same comparison into a copy of the folder without the declaration (every cell
is reused by its key, so only the statistics are redone: Holm over every remedy). Reports wall and
CPU-seconds (user + system of the command and its workers), peak RSS, per-strategy mean test AP,
ROC-AUC, ΔAP, p and the decision under both rules. Writes ``benchmarks/results/bench_compare_mt.json``.

    nice .venv/bin/python benchmarks/bench_compare_mt.py [--seeds 10] [--primary fusion] [--keep DIR]

The primary (``fusion``, the head that uses every label) was declared before this benchmark was
first run; it is not chosen from these results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, magnetic_tile, save

BIN = Path(sys.executable).parent / "imbvision"
KEEP = ("strategy", "ap_mean", "roc_auc", "pixel_auroc", "aupro", "delta_ap", "p", "p_holm", "beyond_noise", "splits_better",
        "splits_worse", "gate", "fit_seconds", "cells")


def _cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024


def _board(out: Path) -> dict:
    d = json.loads((out / "leaderboard.json").read_text(encoding="utf-8"))
    return {"leaderboard": [{k: r.get(k) for k in KEEP} for r in d["leaderboard"]],
            "recommendation": d["recommendation"], "compare_wall_s": d.get("timing", {}).get("wall_seconds")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--primary", default="fusion")
    ap.add_argument("--keep", type=Path, default=None, help="keep the compare folder here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-compare-mt-"))
    out = args.keep or work / "cmp"
    env = {**os.environ, "IMBVISION_CACHE": str(work / "cache"), "PYTHONPATH": str(ROOT / "src")}
    base = [str(BIN), "compare", "--data", f"magnetic-tile:{magnetic_tile()}", "--strategies", "default",
            "--seeds", str(args.seeds), "--skip-bad", "--json"]
    c0, _ = _cpu()
    t0 = time.perf_counter()
    subprocess.run([*base, "--primary", args.primary, "--out", str(out)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    c1, rss = _cpu()
    declared = _board(out)
    holm_dir = work / "holm"
    shutil.copytree(out, holm_dir)
    (holm_dir / "config.json").unlink()  # a folder's declaration is fixed: a new folder, cells reused by key
    subprocess.run([*base, "--out", str(holm_dir)], check=True, env=env, stdout=subprocess.DEVNULL)
    holm = _board(holm_dir)
    save("bench_compare_mt", {
        "what": f"imbvision compare --data magnetic-tile --strategies default --seeds {args.seeds} (cold cache), "
                f"declared primary {args.primary}; then the same cells under Holm over every remedy",
        "wall_s": wall, "cpu_s": c1 - c0, "peak_rss_mb": rss, "load_avg_end": os.getloadavg(),
        "primary": args.primary, "declared": declared, "holm_only": holm})
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
