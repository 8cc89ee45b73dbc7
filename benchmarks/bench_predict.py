"""`imbvision predict --heatmaps` speed on Magnetic-tile with no cached features (issue 22 target: ≥ 10 img/s).

Trains ``--strategy`` (default ``fusion``, the slowest patch head: memory bank + patch head + global head)
on Magnetic-tile with the default settings (resolution policy, duplicate-grouped split), then runs
``imbvision predict RUN --data magnetic-tile:PATH --heatmaps DIR`` with an EMPTY cache folder, so every
image is decoded, embedded and scored once, and a heat-map overlay is written for each. Reports wall
seconds, CPU-seconds (user + system of the predict process and its workers), images per second on
both clocks, and peak RSS. Writes ``benchmarks/results/bench_predict.json``.

    nice .venv/bin/python benchmarks/bench_predict.py [--strategy fusion] [--train-cache DIR]
"""

from __future__ import annotations

import argparse
import csv
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


def _children_cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strategy", default="fusion")
    ap.add_argument("--train-cache", default=os.environ.get("IMBVISION_CACHE"))
    args = ap.parse_args()
    data = f"magnetic-tile:{magnetic_tile()}"
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    run = work / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    train_cmd = [str(BIN), "train", "--data", data, "--strategy", args.strategy, "--out", str(run), "--skip-bad"]
    if args.train_cache:
        train_cmd += ["--cache-dir", args.train_cache]
    c0, _ = _children_cpu()
    t0 = time.perf_counter()
    subprocess.run(train_cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    train_wall, (c1, _) = time.perf_counter() - t0, _children_cpu()
    cold = work / "empty-cache"
    cold.mkdir()
    heat = work / "heatmaps"
    preds = work / "predictions.csv"
    t0 = time.perf_counter()
    subprocess.run([str(BIN), "predict", str(run), "--data", data, "--heatmaps", str(heat), "--out", str(preds),
                    "--cache-dir", str(cold)], check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    c2, rss = _children_cpu()
    with preds.open() as fh:
        rows = list(csv.DictReader(fh))
    n = sum(1 for r in rows if not r.get("error"))
    maps = len(list(heat.rglob("*.png")))
    cpu = c2 - c1
    out = {"what": "imbvision predict RUN --data magnetic-tile --heatmaps DIR, empty cache (features computed once "
                   "per image), after imbvision train --strategy " + args.strategy + " with the defaults",
           "strategy": args.strategy, "images": n, "heatmaps_written": maps, "wall_s": wall, "cpu_s": cpu,
           "img_per_s_wall": n / wall, "img_per_s_cpu": n / cpu, "peak_rss_mb_children": rss,
           "train_wall_s": train_wall, "train_cpu_s": c1 - c0, "load_avg_end": os.getloadavg(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "targets": {"img_per_s": 10}}
    print(out)
    save("bench_predict", out)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
