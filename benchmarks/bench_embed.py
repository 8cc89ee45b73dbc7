"""End-to-end `embed` throughput on Magnetic-tile vs the bare engine on ready tensors.

Both measured in the same run on the same engine (ONNX Runtime when exact,
else PyTorch): ``ratio = end_to_end / bare``. No cache is used for the timed
pass. Target (issue 2): ratio >= 0.85 and >= 90 img/s on 2 cores.

    .venv/bin/python benchmarks/bench_embed.py [--image-size 224] [--engine auto]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from _common import magnetic_tile, peak_rss_mb, save


def draft_decode(size: int, reps: int = 10) -> dict:
    """Decode + resize time of a camera-sized 4000x3000 JPEG, in full vs in draft mode (issue 15)."""
    import os

    from PIL import Image

    from imbvision.backbones.embed import preprocess
    from imbvision.data.decode import load_image_array

    yy, xx = np.mgrid[0:3000, 0:4000] / 60.0
    pic = np.stack([128 + 100 * np.sin(xx), 128 + 100 * np.cos(yy), 128 + 60 * np.sin(xx + yy)], -1).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "photo.jpg")
        Image.fromarray(pic).save(path, quality=92)
        out = {"image": "4000x3000 JPEG, quality 92"}
        for name, side in (("full_ms", None), ("draft_ms", size)):
            t = time.perf_counter()
            for _ in range(reps):
                preprocess(load_image_array(path, min_side=side), size)
            out[name] = (time.perf_counter() - t) / reps * 1000
    out["speed_up"] = out["full_ms"] / out["draft_ms"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()

    from imbvision.backbones import create_backbone, embed_dataset
    from imbvision.backbones.engine import make_engine
    from imbvision.data.sources import load_source

    ds = load_source(f"magnetic-tile:{magnetic_tile()}")
    bb = create_backbone("efficientnet_lite0")
    with tempfile.TemporaryDirectory() as tmp:
        eng = make_engine(bb, args.image_size, kind=args.engine, cache_dir=tmp)
        # Bare engine on ready uint8 tensors (same batch size, same engine).
        rng = np.random.default_rng(0)
        batch = rng.integers(0, 256, (args.batch_size, 3, args.image_size, args.image_size), dtype=np.uint8)
        eng(batch)
        n_bare, t = 0, time.perf_counter()
        while time.perf_counter() - t < 15:
            eng(batch)
            n_bare += args.batch_size
        bare = n_bare / (time.perf_counter() - t)
        # End to end: file hashing, decoding, resizing in workers, engine, cache writes.
        t = time.perf_counter()
        emb = embed_dataset(ds, backbone=bb, image_size=args.image_size, cache_dir=tmp, engine=args.engine,
                            batch_size=args.batch_size, workers=args.workers, progress=False)
        wall = time.perf_counter() - t
        e2e = len(ds) / wall
        t = time.perf_counter()
        embed_dataset(ds, backbone=bb, image_size=args.image_size, cache_dir=tmp, progress=False)
        cached = time.perf_counter() - t
    draft = draft_decode(args.image_size)
    res = {"images": len(ds), "image_size": args.image_size, "engine": emb.stats.get("engine"), "draft_decode": draft,
           "end_to_end_img_per_s": e2e, "bare_engine_img_per_s": bare, "ratio": e2e / bare,
           "wall_seconds": wall, "cached_rerun_seconds": cached, "peak_rss_mb": peak_rss_mb(),
           "targets": {"ratio": 0.85, "img_per_s": 90}}
    print(f"engine {res['engine']}: end-to-end {e2e:.1f} img/s, bare {bare:.1f} img/s, ratio {e2e / bare:.2f}, "
          f"cached rerun {cached:.2f} s, peak RSS {res['peak_rss_mb']:.0f} MB")
    save("bench_embed", res)


if __name__ == "__main__":
    main()
