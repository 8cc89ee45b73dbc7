"""Cost of the trust checks on the real Magnetic-tile set: data fingerprint, bundle load, ONNX verification.

    PYTHONPATH=src python benchmarks/bench_trust.py

Writes benchmarks/results/bench_trust.json. The fingerprint is read once per
process (memoised by path, size, mtime and inode), so the warm figure is what a
second artefact keyed in the same run costs.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import magnetic_tile, save  # noqa: E402


def main() -> None:
    from imbvision import _fingerprint as fp
    from imbvision.backbones import create_backbone
    from imbvision.backbones.engine import make_engine
    from imbvision.data.sources import read_magnetic_tile

    ds = read_magnetic_tile(magnetic_tile())
    t = time.perf_counter()
    fp.records_fingerprint(ds.records)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    fp.records_fingerprint(ds.records)
    warm = time.perf_counter() - t
    bb = create_backbone("efficientnet_lite0")
    with tempfile.TemporaryDirectory() as d:
        make_engine(bb, 224, kind="onnx", cache_dir=Path(d))
        fp._MEMO.clear()  # as in a new process: the export is hashed again
        t = time.perf_counter()
        make_engine(bb, 224, kind="onnx", cache_dir=Path(d))
        reuse = time.perf_counter() - t
    save("bench_trust", {
        "images": len(ds), "masks": sum(r.mask is not None for r in ds.records),
        "fingerprint_cold_s": round(cold, 3), "fingerprint_warm_s": round(warm, 4),
        "onnx_cached_reuse_with_hash_check_s": round(reuse, 3),
    })
    print(f"{len(ds)} images: fingerprint {cold:.2f} s cold, {warm:.3f} s warm; ONNX reuse with hash check {reuse:.2f} s")


if __name__ == "__main__":
    main()
