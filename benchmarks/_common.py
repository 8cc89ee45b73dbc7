"""Shared helpers for the benchmark scripts (paths, JSON results, machine facts)."""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "cache"


def magnetic_tile() -> Path:
    """The Magnetic-tile folder in ../shared/data (read in place, never copied)."""
    for cand in (ROOT.parent / "shared" / "data" / "magnetic-tile", Path("/work/shared/data/magnetic-tile")):
        if cand.is_dir():
            return cand
    sys.exit("Magnetic-tile data not found in ../shared/data/magnetic-tile")


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def save(name: str, payload: dict) -> Path:
    sys.path.insert(0, str(ROOT / "src"))
    from imbvision._io import write_json

    path = RESULTS / f"{name}.json"
    write_json(path, {**payload, "machine": machine()})
    print(f"→ {path}")
    return path
