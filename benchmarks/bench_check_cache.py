"""The image check with a cold and a warm check cache (Magnetic-tile, read in place).

    python benchmarks/bench_check_cache.py

A fresh cache folder, then ``check_dataset`` twice: the first decodes every
image and mask, the second finds every answer in the cache. JSON result:
``benchmarks/results/bench_check_cache.json``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from _common import ROOT, magnetic_tile, save

sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    os.environ["IMBVISION_CACHE"] = tempfile.mkdtemp(prefix="bench_check_")
    from imbvision.data.checks import check_dataset
    from imbvision.data.sources import load_source

    ds = load_source(f"magnetic-tile:{magnetic_tile()}")
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        rep = check_dataset(ds, skip_bad=True)
        times.append(time.perf_counter() - t0)
    print(f"{len(ds)} images: cold {times[0]:.2f} s, warm {times[1]:.2f} s")
    save("bench_check_cache", {"images": len(ds), "good": len(rep.dataset), "cold_s": round(times[0], 2),
                               "warm_s": round(times[1], 2)})


if __name__ == "__main__":
    main()
