"""Cost of verifying cached artefacts when they are read, on a cached Magnetic-tile compare (issue 19 §1).

Every cached artefact is checked when read: embedding shards against the SHA-256 in their metadata, each
patch-feature row against its own SHA-256 (once per process), every compare cell against its checksum. This
measures what that costs a cached run.

A third of Magnetic-tile (every third image, in the source's order) is compared with
``--strategies ce,patch,normality --seeds 3`` from an empty cache folder (cold: decoding, the ONNX export,
global and patch features are made). Then, each in a fresh process and alternating, the same compare:

* into the same ``--out`` (every feature and every cell reused: the cheapest run, where verification weighs most);
* into a new ``--out`` (features reused, cells fitted again);

once as shipped and once with the verification functions replaced by versions that skip the checks
(``--no-verify``, in this script only: ``embed._read_shard`` without its digest, ``PatchStore.verify`` a no-op,
``cellstore.load_cell`` without its checksum). Reports wall and CPU-seconds (user + system of the process and
its workers) of each, the median over ``--repeat`` runs, and the verification's share -- both as the
median paired difference of the two (each pair runs back to back; still noisy on a shared machine) and as the
seconds spent inside the checks themselves, added up in the verified runs.

    PYTHONPATH=src python benchmarks/bench_trust_verify.py [--repeat 2]

Writes ``benchmarks/results/bench_trust_verify.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, magnetic_tile, save

STRATEGIES = "ce,patch,normality"
SEEDS = 3

# One compare in a fresh process, timed by its parent (this wrapper): its own children's CPU alone.
WRAPPER = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.perf_counter() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": wall, "cpu_s": r.ru_utime + r.ru_stime, "peak_rss_mb": r.ru_maxrss / 1024}))
"""


def _skip_verification() -> None:
    """Replace the read-time checks by versions that trust what they read (benchmark only)."""
    import json as _json

    from safetensors import safe_open

    from imbvision.backbones import embed, patch_store
    from imbvision.experiments import cellstore

    def read_shard(path: Path):
        try:
            with safe_open(str(path), framework="numpy") as fh:
                if (fh.metadata() or {}).get("format") != embed.SHARD_FORMAT:
                    return None
                return {k: fh.get_tensor(k) for k in fh.keys()}
        except Exception:  # noqa: BLE001
            return None

    def load_cell(path: Path, key: str):
        try:
            cell = _json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(cell, dict) or cell.get("key") != key:
            return None
        if len(cell.get("test_index", [])) != len(cell.get("test_score", [None])):
            return None
        return cell

    embed._read_shard = read_shard
    patch_store.PatchStore.verify = lambda self, digests: []
    cellstore.load_cell = load_cell
    from imbvision.experiments import compare
    compare.load_cell = load_cell


def _time_verification(dest: str) -> None:
    """Add up the seconds spent in the checks themselves (shard digests, row SHA-256s, cell checksums) and
    write them to ``dest`` at exit: the exact cost, beside the noisier difference of two runs."""
    import atexit

    from imbvision.backbones import embed, patch_store
    from imbvision.experiments import cellstore

    spent = {"embedding_shards": 0.0, "patch_rows": 0.0, "cells": 0.0}

    def timed(fn, what):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[what] += time.perf_counter() - t
        return wrapper

    embed.arrays_digest = timed(embed.arrays_digest, "embedding_shards")
    patch_store.PatchStore.verify = timed(patch_store.PatchStore.verify, "patch_rows")
    cellstore.json_digest = timed(cellstore.json_digest, "cells")
    atexit.register(lambda: Path(dest).write_text(json.dumps(spent), encoding="utf-8"))


def child(argv: list[str]) -> None:
    """``--child [--no-verify] -- imbvision compare arguments``: run the CLI in this process."""
    sys.path.insert(0, str(ROOT / "src"))
    if argv and argv[0] == "--no-verify":
        _skip_verification()
        argv = argv[1:]
    elif os.environ.get("BENCH_VERIFY_TIMES"):
        _time_verification(os.environ["BENCH_VERIFY_TIMES"])
    from imbvision.cli import app

    sys.argv = ["imbvision", *argv]
    app()


def _subset(out: Path) -> Path:
    """A manifest of every third Magnetic-tile image (masks and groups kept)."""
    sys.path.insert(0, str(ROOT / "src"))
    from imbvision._csv import write_csv
    from imbvision.data.sources import read_magnetic_tile

    ds = read_magnetic_tile(magnetic_tile())
    rows = [[str(Path(r.path).resolve()), r.label, "" if r.mask is None else str(Path(r.mask).resolve()), r.group or ""]
            for r in ds.records[::3]]
    write_csv(out, ["path", "label", "mask", "group"], rows)
    return out


def _timed(env: dict, args: list[str], verify: bool) -> dict:
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, str(Path(__file__).resolve()), "--child",
           *([] if verify else ["--no-verify"]), *args]
    times = Path(tempfile.mkdtemp(prefix="bench-verify-times-")) / "times.json"
    out = json.loads(subprocess.run(cmd, check=True, env={**env, "BENCH_VERIFY_TIMES": str(times)},
                                    capture_output=True, text=True).stdout)
    if times.is_file():  # seconds inside the checks (verified runs)
        out["in_checks_s"] = round(sum(json.loads(times.read_text(encoding="utf-8")).values()), 3)
        out["in_checks"] = {k: round(v, 3) for k, v in json.loads(times.read_text(encoding="utf-8")).items()}
    shutil.rmtree(times.parent, ignore_errors=True)
    return out


def summarise(runs: dict[str, dict[str, list[dict]]]) -> dict:
    """Medians per case and variant, the verification's cost as the median of the paired differences (run ``i``
    verified minus run ``i`` unverified: the pairs ran back to back, so slow phases of a shared machine cancel)
    and the seconds spent inside the checks."""
    summary = {}
    for case, by in runs.items():
        med = {tag: {k: round(statistics.median(r[k] for r in rs), 2) for k in ("wall_s", "cpu_s")}
               for tag, rs in by.items()}
        cost = {k: round(statistics.median(v[k] - u[k] for v, u in zip(by["verified"], by["unverified"])), 2)
                for k in ("wall_s", "cpu_s")}
        share = {k: round(cost[k] / med["verified"][k], 4) if med["verified"][k] else None for k in cost}
        inside = statistics.median(r["in_checks_s"] for r in by["verified"])
        summary[case] = {**med, "verification_cost": cost, "verification_share": share,
                         "in_checks_s": round(inside, 3), "in_checks_share_of_cpu": round(inside / med["verified"]["cpu_s"], 4),
                         "runs": {tag: [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}
                                        for r in rs] for tag, rs in by.items()}}
    return summary


def resummarise(path: Path) -> None:
    """Recompute the summary of a results file from the runs it stores (no compare is run)."""
    d = json.loads(path.read_text(encoding="utf-8"))
    d.pop("machine", None)
    runs = {case: d[case]["runs"] for case in ("cells_reused", "cells_fitted")}
    d.update(summarise(runs))
    save("bench_trust_verify", d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--resummarise", action="store_true", help="recompute the summary of the stored results file")
    a = ap.parse_args()
    if a.resummarise:
        resummarise(ROOT / "benchmarks" / "results" / "bench_trust_verify.json")
        return
    work = Path(tempfile.mkdtemp(prefix="bench-trust-verify-"))
    env = {**os.environ, "IMBVISION_CACHE": str(work / "cache"), "PYTHONPATH": str(ROOT / "src")}
    man = _subset(work / "mt-third.csv")
    n = sum(1 for _ in man.open(encoding="utf-8")) - 1
    base = ["compare", "--data", str(man), "--strategies", STRATEGIES, "--seeds", str(SEEDS), "--skip-bad"]
    cold = _timed(env, [*base, "--out", str(work / "cmp")], verify=True)
    print("cold", cold)
    runs: dict[str, dict[str, list[dict]]] = {"cells_reused": {"verified": [], "unverified": []},
                                              "cells_fitted": {"verified": [], "unverified": []}}
    for i in range(a.repeat):
        for verify in (True, False) if i % 2 == 0 else (False, True):
            tag = "verified" if verify else "unverified"
            runs["cells_reused"][tag].append(_timed(env, [*base, "--out", str(work / "cmp")], verify))
            fresh = work / f"fresh-{i}-{tag}"
            runs["cells_fitted"][tag].append(_timed(env, [*base, "--out", str(fresh)], verify))
            shutil.rmtree(fresh, ignore_errors=True)
            print(i, tag, runs["cells_reused"][tag][-1], runs["cells_fitted"][tag][-1])
    summary = summarise(runs)
    store = work / "cache" / "patches"
    rows_bytes = sum(p.stat().st_size for p in store.rglob("rows.f16")) if store.is_dir() else 0
    save("bench_trust_verify", {
        "what": f"imbvision compare on every third Magnetic-tile image ({n} images) --strategies {STRATEGIES} "
                f"--seeds {SEEDS}, cached; as shipped vs with the read-time checks skipped",
        "images": n, "strategies": STRATEGIES, "seeds": SEEDS, "repeat": a.repeat,
        "cold": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in cold.items()}, **summary,
        "patch_rows_mb": round(rows_bytes / 2**20, 1), "load_avg_end": os.getloadavg(),
    })
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        t0 = time.perf_counter()
        main()
        print(f"{time.perf_counter() - t0:.0f} s")
