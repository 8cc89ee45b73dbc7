"""`make demo` from a cold cache: wall time, CPU-seconds, peak memory and the conclusion it prints.

    python benchmarks/bench_demo.py                        # label "after": this tree's `imbvision demo`
    python benchmarks/bench_demo.py --label before --src /tmp/old/src   # another source tree
    python benchmarks/bench_demo.py --label before --ingest TIME_LOG RUN_DIR   # a run timed by /usr/bin/time -v
    python benchmarks/bench_demo.py --label before --recorded WALL_S CPU_S RSS_MB --source TEXT --conclusion TEXT

Each run gets a fresh ``IMBVISION_CACHE`` and output folder (nothing cached: the demo set, the
ONNX export, the features are all made), the command's CPU time is taken from ``RUSAGE_CHILDREN``
(user + system of the process and its workers), and the leaderboard and recommendation are read
from the run's ``leaderboard.json``. Results are merged into ``benchmarks/results/bench_demo.json``
under ``runs[LABEL]``; the decision line is computed from the runs. Wall time depends on the load
of the machine (recorded beside it); CPU-seconds much less.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, save  # noqa: E402

TARGET_WALL_S = 120
TARGET_CPU_S = 180


def _board(run_dir: Path) -> dict:
    d = json.loads((run_dir / "leaderboard.json").read_text(encoding="utf-8"))
    keep = ("strategy", "ap_mean", "delta_ap", "delta_ci", "p_holm", "beyond_noise", "splits_better",
            "splits_worse", "fit_seconds", "gate")
    rows = [{k: r.get(k) for k in keep} for r in d["leaderboard"]]
    cfg = d["config"]
    steps = {"compare (wall, incl. data check and features)": {"wall_s": d["timing"]["wall_seconds"]}}
    for r in d["leaderboard"]:
        steps[f"fit {r['strategy']} × {r['cells']} splits"] = {"wall_s": r["fit_seconds"] * r["cells"]}
    best = run_dir / "best" / "results.json"
    if best.exists():
        steps["train the winner + report"] = {"wall_s": json.loads(best.read_text())["elapsed_seconds"]}
    return {"data": cfg["data"], "strategies": ",".join(cfg["strategies"]), "seeds": cfg["seeds"],
            "leaderboard": rows, "recommendation": d["recommendation"], "steps": steps,
            "conclusion": _conclusion(rows)}


def _conclusion(rows: list[dict]) -> str:
    better = [r for r in rows if r.get("beyond_noise") and (r.get("delta_ap") or 0) > 0]
    if better:
        b = max(better, key=lambda r: r["delta_ap"])
        test = "declared primary, p" if b.get("gate") == "primary" else "Holm p"
        return f"{b['strategy']} beats ce beyond noise (ΔAP {b['delta_ap']:+.3f}, {test} {b['p_holm']:.2g})"
    return "no remedy beyond noise"


def run(label: str, src: Path | None, extra: list[str]) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench_demo_"))
    out = tmp / "demo"
    env = {**os.environ, "IMBVISION_CACHE": str(tmp / "cache")}
    env.pop("IMBVISION_CHECK_CACHE", None)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, "-m", "imbvision.cli", "demo", "--out", str(out), *extra]
    load0 = os.getloadavg()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    res = {"command": "imbvision demo " + " ".join(extra) if extra else "imbvision demo",
           "src": str(src or ROOT / "src"), "wall_s": wall,
           "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
           "peak_rss_mb": r1.ru_maxrss / 1024.0, "load_avg_start": load0, "load_avg_end": os.getloadavg(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), **_board(out), "stdout_tail": proc.stdout[-1500:]}
    shutil.rmtree(tmp, ignore_errors=True)
    return res


def ingest(time_log: Path, run_dir: Path, src: str) -> dict:
    """A run timed by ``/usr/bin/time -v`` (its report in ``time_log``), its output in ``run_dir``."""
    text = time_log.read_text(encoding="utf-8", errors="replace")

    def num(pattern: str) -> float:
        return float(re.search(pattern, text).group(1))

    parts = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text).group(1).split(":")
    wall = sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts)))
    return {"command": "imbvision demo", "src": src, "wall_s": wall,
            "cpu_s": num(r"User time \(seconds\): ([\d.]+)") + num(r"System time \(seconds\): ([\d.]+)"),
            "peak_rss_mb": num(r"Maximum resident set size \(kbytes\): (\d+)") / 1024.0,
            "timed_by": "/usr/bin/time -v", **_board(run_dir)}


def decision(runs: dict) -> str:
    parts = []
    for name, r in runs.items():
        met = [f"wall {r['wall_s']:.0f} s ({'met' if r['wall_s'] <= TARGET_WALL_S else 'not met'}"
               + (f"; load {r['load_avg_start'][0]:.1f}" if r.get("load_avg_start") else "") + ")",
               f"CPU {r['cpu_s']:.0f} s ({'met' if r['cpu_s'] <= TARGET_CPU_S else 'not met'})",
               f"conclusion: {r['conclusion']}"]
        parts.append(f"`{name}`: " + ", ".join(met))
    return "; ".join(parts) + "."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default="after")
    ap.add_argument("--src", type=Path, default=None, help="source tree to run (default: this one)")
    ap.add_argument("--ingest", nargs=2, type=Path, metavar=("TIME_LOG", "RUN_DIR"))
    ap.add_argument("--recorded", nargs=3, type=float, metavar=("WALL_S", "CPU_S", "RSS_MB"),
                    help="a measurement made elsewhere (say where with --source)")
    ap.add_argument("--source", default="", help="where a --recorded measurement comes from")
    ap.add_argument("--conclusion", default="", help="the conclusion that run printed (--recorded)")
    ap.add_argument("--strategies", default="default", help="its strategies (--recorded)")
    ap.add_argument("--seeds", type=int, default=10, help="its splits (--recorded)")
    ap.add_argument("demo_args", nargs="*", help="extra arguments for `imbvision demo`")
    args = ap.parse_args()
    path = RESULTS / "bench_demo.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    runs = old.get("runs", {})
    if args.recorded:
        wall, cpu, rss = args.recorded
        runs[args.label] = {"command": "imbvision demo", "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss,
                            "source": args.source, "conclusion": args.conclusion, "strategies": args.strategies,
                            "seeds": args.seeds}
    elif args.ingest:
        runs[args.label] = ingest(*args.ingest, src=str(args.src or "?"))
    else:
        runs[args.label] = run(args.label, args.src, args.demo_args)
    save("bench_demo", {
        "what": "`imbvision demo` (what `make demo` runs) from a cold cache: a fresh cache folder and output "
                "folder, so the demo set, the ONNX export and every feature are made; CPU-seconds are user + "
                "system of the command and its workers.",
        "targets": {"wall_s": TARGET_WALL_S, "cpu_s": TARGET_CPU_S},
        "runs": runs, "decision": decision(runs)})


if __name__ == "__main__":
    main()
