"""Start-up time of the ``imbvision`` command: help, listing, and argument errors.

Each command runs in a fresh interpreter (as a user types it) ``--repeat``
times after one warm-up run (which also fills the strategy catalog cache);
the median wall time is reported. Target: every case under 1.5 s.

    python benchmarks/bench_cli_startup.py [--src PATH] [--label before|after] [--repeat 5]

``--src`` points at another checkout's ``src`` folder to measure a version
before a change; results go to ``benchmarks/results/bench_cli_startup.json``
(one entry per label, earlier labels kept).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, ROOT, save

CASES = {
    "--help": ["--help"],
    "strategies": ["strategies"],
    "backbones": ["backbones"],
    "sources": ["sources"],
    "train --help": ["train", "--help"],
    "unknown option": ["train", "--bogus"],
    "missing --data": ["audit", "--out", "x"],
    "strategy typo": ["train", "--data", "demo", "--out", "{tmp}/r", "--strategy", "focall"],
    "unknown strategy parameter": ["train", "--data", "demo", "--out", "{tmp}/r", "--strategy", "focal:gama=2"],
    "compare strategy typo": ["compare", "--data", "demo", "--out", "{tmp}/c", "--strategies", "ce,smote-tomk"],
}


def _time(src: Path, args: list[str], env: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "imbvision.cli", *args], env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, res.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT / "src")
    ap.add_argument("--label", default="after")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_cli_")
    env = {**os.environ, "PYTHONPATH": str(a.src), "IMBVISION_CACHE": os.path.join(tmp, "cache"),
           "OMP_NUM_THREADS": "1"}
    rows = {}
    for name, args in CASES.items():
        args = [x.replace("{tmp}", tmp) for x in args]
        _time(a.src, args, env)  # warm-up: page cache, strategy catalog
        times, codes = zip(*(_time(a.src, args, env) for _ in range(a.repeat)))
        rows[name] = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
                      "exit_code": codes[0], "command": "imbvision " + " ".join(args).replace(tmp, "TMP")}
        print(f"{a.label:>7} {name:<28} {rows[name]['median_s']:6.2f} s (exit {codes[0]})")
    path = RESULTS / "bench_cli_startup.json"
    prev = json.loads(path.read_text()) if path.exists() else {}
    runs = prev.get("runs", {})
    runs[a.label] = {"src": str(a.src), "repeat": a.repeat, "cases": rows}
    save("bench_cli_startup", {"target_s": 1.5, "runs": runs})


if __name__ == "__main__":
    main()
