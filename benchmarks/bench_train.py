"""Training benchmarks on Magnetic-tile.

(a) Head mode: ``train`` + evaluation (bootstrap CIs, report) wall time with the
    embeddings already cached in ``benchmarks/results/cache``. Target < 30 s.
(b) Fine-tune mode on the CPU, EfficientNet-Lite0 at 128 px: samples/s of the
    full loop (DataLoader workers decoding, pixel-space strategies, forward,
    backward, AdamW step; the loop's own steady-state timing, the first steps
    left out) versus a bare forward-backward-step on ready tensors in the same
    process with the same threads. Target ratio >= 0.85. Bare and full loops
    are interleaved and compared by their per-step medians (a shared machine drifts).
    The CPU time the workers spend making batches (decoding, strategies, mixing)
    is reported per sample too: it is what the loop adds on top of the compute.

    .venv/bin/python benchmarks/bench_train.py [--skip-head] [--strategies ce,balanced-sampler+mixup]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import CACHE, magnetic_tile, peak_rss_mb, save


def bench_head(src: str, out: Path) -> dict:
    import json

    import imbvision

    t = time.perf_counter()
    run = imbvision.train(data=src, mode="head", strategy="ce", cache_dir=str(CACHE), out=out / "head", progress=False)
    wall = time.perf_counter() - t
    emb = json.loads((run.out / "results.json").read_text())["train"].get("embedding", {})
    res = {"wall_seconds": wall, "embedded_now": emb.get("computed"), "from_cache": emb.get("from_cache"),
           "test_ap": run.metrics["ap"]}
    if emb.get("computed"):  # cold cache: time a second, warm run
        t = time.perf_counter()
        run = imbvision.train(data=src, mode="head", strategy="ce", cache_dir=str(CACHE), out=out / "head2",
                              progress=False)
        res["cold_wall_seconds"], res["wall_seconds"] = wall, time.perf_counter() - t
    return res


def bare_loop(image_size: int, batch_size: int, steps: int) -> tuple[list[float], list[float]]:
    """Forward + backward + AdamW step on ready uint8 tensors (same network as the loop).

    Returns per-step samples/s (wall clock) and per-step CPU seconds per sample (this process, all threads).
    """
    import torch

    from imbvision.backbones import create_backbone
    from imbvision.training.finetune import _param_groups, build_network

    net = build_network(create_backbone("efficientnet_lite0"))
    net.train()
    opt = torch.optim.AdamW(_param_groups(net, 3e-4, 3e-3, 1e-4))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch_size, 3, image_size, image_size), generator=g, dtype=torch.uint8)
    y = (torch.rand(batch_size, generator=g) < 0.3).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    rates, cpu = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        step()
        rates.append(batch_size / (time.perf_counter() - t))
        cpu.append((time.process_time() - c) / batch_size)
    return rates, cpu


def full_loop(src: str, strategy: str, out: Path, *, image_size: int, batch_size: int, n_train: int,
              workers: int) -> dict:
    from imbvision.data.sources import load_source
    from imbvision.data.splits import Split, train_val_test_split
    from imbvision.strategies.registry import compose
    from imbvision.training.config import TrainConfig
    from imbvision.training.finetune import run_finetune
    from imbvision.training.prepare import Prepared

    ds = load_source(src)
    split = train_val_test_split(ds, seed=0)
    rng = np.random.default_rng(0)
    sub = Split(np.sort(rng.choice(split.train, n_train, replace=False)),
                np.sort(rng.choice(split.val, 32, replace=False)), np.sort(rng.choice(split.test, 32, replace=False)))
    cfg = TrainConfig(data=src, mode="finetune", strategy=strategy, backbone="efficientnet_lite0",
                      image_size=image_size, epochs=1, batch_size=batch_size, workers=workers, n_boot=0,
                      accelerator="cpu", cache_dir=str(CACHE))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_finetune(cfg, Prepared(ds, sub, []), compose(strategy), out, progress=False)
    h = res.info["history"][0]
    return {"strategy": strategy, "samples_per_s": h["samples_per_s_median"],
            "steady_mean_samples_per_s": h["samples_per_s_steady"], "epoch_samples_per_s": h["samples_per_s"],
            "data_wait_s": h["data_wait_s"], "data_cpu_s": h["data_cpu_s"], "cpu_s_per_sample": h["cpu_s_per_sample"],
            "epoch_seconds": h["seconds"], "samples": h["samples"],
            "synthetic_per_epoch": res.info["synthetic_per_epoch"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-head", action="store_true")
    ap.add_argument("--strategies", default="ce,focal+balanced-sampler+copy-paste+mixup")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n-train", type=int, default=384)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--bare-steps", type=int, default=8)
    args = ap.parse_args()

    import torch

    src = f"magnetic-tile:{magnetic_tile()}"
    result: dict = {"torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_head:
            result["head"] = bench_head(src, Path(tmp))
            print(f"(a) head mode train + evaluate: {result['head']['wall_seconds']:.1f} s "
                  f"(target < 30 s), test AP {result['head']['test_ap']:.3f}")
        # Interleaved (bare, loop, bare, loop, ..., bare): the machine may be shared, so
        # per-step medians are compared, not means that one busy spell can drag down.
        bare, bare_cpu = bare_loop(args.image_size, args.batch_size, args.bare_steps)
        loops = []
        for i, s in enumerate(args.strategies.split(",")):
            loops.append(full_loop(src, s, Path(tmp) / f"ft{i}", image_size=args.image_size,
                                   batch_size=args.batch_size, n_train=args.n_train, workers=args.workers))
            r, c = bare_loop(args.image_size, args.batch_size, args.bare_steps)
            bare, bare_cpu = bare + r, bare_cpu + c
    b, bc = float(np.median(bare)), float(np.median(bare_cpu))
    for row in loops:
        row["ratio"] = row["samples_per_s"] / b
        row["ratio_steady_mean"] = row["steady_mean_samples_per_s"] / float(np.mean(bare))
        row["data_cpu_ms_per_sample"] = 1000 * row["data_cpu_s"] / row["samples"]
    result["finetune"] = {"backbone": "efficientnet_lite0", "image_size": args.image_size,
                          "batch_size": args.batch_size, "workers": args.workers, "train_images": args.n_train,
                          "bare_samples_per_s": b, "bare_step_rates": bare,
                          "bare_cpu_s_per_sample": bc, "loops": loops, "target_ratio": 0.85}
    result["peak_rss_mb"] = peak_rss_mb()
    print(f"(b) fine-tune, efficientnet_lite0 @ {args.image_size} px, batch {args.batch_size}, "
          f"{args.workers} worker(s), {torch.get_num_threads()} threads")
    print(f"    {'loop':<42} {'samples/s':>9} {'ratio':>6} {'data CPU ms/sample':>19} {'data wait':>9}")
    print(f"    {'bare forward+backward+step':<42} {b:>9.1f} {1.0:>6.2f} {'-':>19} {'-':>9}")
    for row in loops:
        print(f"    {row['strategy']:<42} {row['samples_per_s']:>9.1f} {row['ratio']:>6.2f} "
              f"{row['data_cpu_ms_per_sample']:>19.1f} {row['data_wait_s']:>8.1f}s")
    print("    samples/s: per-step median after 2 warm-up steps, wall clock; data CPU: worker time to make batches")
    save("bench_train", result)


if __name__ == "__main__":
    main()
