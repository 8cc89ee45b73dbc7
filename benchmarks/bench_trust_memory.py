"""Peak memory of `imbvision predict --heatmaps` on images of extreme aspect (issue 19 §4).

Trains a ``normality`` model with the default backbone (EfficientNet-Lite0) on a small generated demo set,
then runs ``imbvision predict RUN IMAGE --heatmaps DIR`` once per image, each in a fresh process under a
small wrapper, so ``getrusage(RUSAGE_CHILDREN)`` of the wrapper is that predict alone: peak RSS, CPU-seconds
(user + system) and wall seconds. Images: 1000×1000, 10000×100, 100×10000 and 100000×10 PNGs (1 Mpx each);
the last is beyond the 100:1 aspect the image check accepts and is refused in one line. Before the bound,
the 100000×10 PNG peaked at 7.8 GB and wrote a 2,560,000×256 overlay.

    PYTHONPATH=src python benchmarks/bench_trust_memory.py

Writes ``benchmarks/results/bench_trust_memory.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import ROOT, save

sys.path.insert(0, str(ROOT / "src"))

SHAPES = [(1000, 1000), (10000, 100), (100, 10000), (100000, 10)]

# Runs one command and prints its own children's usage: that command's peak RSS and CPU time alone.
WRAPPER = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": p.returncode, "wall_s": wall, "cpu_s": r.ru_utime + r.ru_stime,
                  "peak_rss_mb": r.ru_maxrss / 1024, "stderr": p.stderr[-2000:]}))
"""


def _image(path: Path, width: int, height: int) -> Path:
    from PIL import Image

    yy, xx = np.mgrid[0:height, 0:width]
    arr = (128 + 60 * np.sin(xx / 7.0) + 40 * np.cos(yy / 5.0)).astype(np.uint8)
    Image.fromarray(np.repeat(arr[..., None], 3, axis=2)).save(path)
    return path


def main() -> None:
    from PIL import Image

    from imbvision.data.synthetic import DemoSpec, generate_demo_dataset

    work = Path(tempfile.mkdtemp(prefix="bench-trust-memory-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "IMBVISION_CACHE": str(work / "cache"), "COLUMNS": "4000"}
    cli = [sys.executable, "-m", "imbvision.cli"]
    man = generate_demo_dataset(work / "demo", DemoSpec(n=60, positive_rate=0.15, seed=0, size=128))
    run = work / "run"
    subprocess.run([*cli, "train", "--data", str(man), "--strategy", "normality", "--out", str(run)],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cases = []
    for w, h in SHAPES:
        img = _image(work / f"img_{w}x{h}.png", w, h)
        maps = work / f"maps_{w}x{h}"
        res = json.loads(subprocess.run([sys.executable, "-c", WRAPPER, *cli, "predict", str(run), str(img),
                                         "--heatmaps", str(maps)], check=True, env=env, capture_output=True,
                                        text=True).stdout)
        overlays = sorted(maps.glob("*.png")) if maps.is_dir() else []
        size = list(Image.open(overlays[0]).size) if overlays else None
        refusal = [ln.strip() for ln in res.pop("stderr").splitlines() if img.name in ln]
        case = {"image": f"{w}x{h}", "pixels": w * h, "exit_code": res["rc"], "wall_s": round(res["wall_s"], 2),
                "cpu_s": round(res["cpu_s"], 2), "peak_rss_mb": round(res["peak_rss_mb"], 1), "overlay": size,
                "refused": refusal[0].replace(str(work) + "/", "") if res["rc"] and refusal else None}
        print(case)
        cases.append(case)
    from imbvision.data.decode import MAX_ASPECT
    from imbvision.explain import HEATMAP_MAX_SIDE, OVERLAY_MAX_SIDE
    save("bench_trust_memory", {
        "what": "imbvision predict RUN IMAGE --heatmaps DIR, one fresh process per image (normality head, "
                "EfficientNet-Lite0, default settings); peak RSS, CPU and wall of that process alone",
        "cases": cases, "heatmap_max_side": HEATMAP_MAX_SIDE, "overlay_max_side": OVERLAY_MAX_SIDE,
        "max_aspect": MAX_ASPECT, "before": {"image": "100000x10", "peak_rss_mb": 7800,
                                             "overlay": [2560000, 256], "source": "issue 19"},
        "load_avg_end": os.getloadavg(),
    })
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t0:.0f} s")
