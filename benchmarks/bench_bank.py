"""Memory bank and fusion cost: sharded vs exact coreset, one-bank vs per-fold fusion, cost growth, peak RSS.

Parts (``--parts``, default all), all on Magnetic-tile patch features (224 px keep-aspect, default layers),
stratified 60/20/20 splits with duplicate sets kept on one side:

* ``coreset`` – the ``normality`` head on the training negatives alone (zero positives) with the exact
  greedy coreset (one shard) and with shards of 32k / 16k / 8k patches: coverage radius of the training
  patches (max, 99th percentile, mean of the distance to the nearest bank row, on 8,192 sampled
  patches, full 432 dimensions), validation AP (which chose the default), test AP, fit CPU-seconds.
* ``fusion`` – ``fusion`` at 5% training positives with ``oof=one-bank`` and ``oof=refit``: test AP and
  fit CPU-seconds.
* ``scaling`` – fit + score CPU-seconds of ``normality`` and ``fusion`` against the number of training
  negatives (250 → 8,000) and peak RSS at 10,000 training images, each in its own process. The images are
  Magnetic-tile feature grids drawn with replacement (training negatives of split 0, plus 5% positives for
  fusion) with Gaussian jitter (5% of the feature std) so that no two are equal, stored in a memory-mapped
  float16 file like the real cache; 1/4 as many test images are scored.

Every CPU figure is user + system time of the process (``resource.getrusage``), wall time beside it.

    PYTHONPATH=src nice -n 10 .venv/bin/python benchmarks/bench_bank.py [--seeds 3] [--parts coreset,fusion,scaling]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from _common import RESULTS, magnetic_tile, save

SCALE_NS = (250, 500, 1000, 2000, 4000, 8000)
RSS_N = 10000


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _ap(y, s) -> float:
    from sklearn.metrics import average_precision_score
    return float(average_precision_score(y, s))


def _data(cache: str):
    from imbvision.backbones import embed_dataset
    from imbvision.backbones.patches import patch_features
    from imbvision.data.checks import load_checked
    from imbvision.training.patch_fit import grid_masks, image_groups

    ds = load_checked(f"magnetic-tile:{magnetic_tile()}", group_duplicates=True,
                      features=lambda d: embed_dataset(d, cache_dir=cache, progress=False).global_).dataset
    pf = patch_features(ds, image_size=224, resize="keep-aspect", cache_dir=cache)
    pf.global_ = embed_dataset(ds, cache_dir=cache, progress=False).global_
    pf.masks, _ = grid_masks(ds.records, pf, skip_bad=True)
    pf.groups = image_groups(ds.records)
    return ds, pf


def coreset_part(ds, pf, seeds: int, shards=(10**9, 32768, 16384, 8192)) -> dict:
    from imbvision.data.splits import train_val_test_split
    from imbvision.strategies._bank_index import BankIndex
    from imbvision.strategies._patch_common import _valid_rows
    from imbvision.strategies.normality_head import NormalityHead

    y = ds.labels
    rows = []
    for seed in range(seeds):
        sp = train_val_test_split(ds, seed=seed)
        neg = sp.train[y[sp.train] == 0]
        q = np.concatenate([_valid_rows(pf, int(i))[0] for i in neg])
        q = q[np.random.default_rng(seed).choice(len(q), min(len(q), 8192), replace=False)]
        for sh in shards:
            c0, t0 = _cpu(), time.perf_counter()
            h = NormalityHead(seed=seed, shard=sh).fit(pf.take(neg), y[neg])
            fit_cpu, fit_wall = _cpu() - c0, time.perf_counter() - t0
            d = BankIndex(h.bank_, "exact").search(q, 1)[0][:, 0]
            row = {"seed": seed, "shard": "exact" if sh >= 10**9 else sh, "patches": int(sum(
                       pf.valid(int(i)).sum() for i in neg)), "bank": int(len(h.bank_)),
                   "fit_cpu_s": fit_cpu, "fit_wall_s": fit_wall, "radius_max": float(d.max()),
                   "radius_p99": float(np.percentile(d, 99)), "radius_mean": float(d.mean()),
                   "val_ap": _ap(y[sp.val], h.decision_function(pf.take(sp.val))),
                   "test_ap": _ap(y[sp.test], h.decision_function(pf.take(sp.test)))}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for sh in {r["shard"] for r in rows}:
        rs = [r for r in rows if r["shard"] == sh]
        ex = [r for r in rows if r["shard"] == "exact"]
        summary[str(sh)] = {k: float(np.mean([r[k] for r in rs])) for k in
                            ("val_ap", "test_ap", "fit_cpu_s", "radius_max", "radius_p99", "radius_mean")}
        summary[str(sh)]["val_ap_minus_exact"] = float(np.mean([a["val_ap"] - b["val_ap"] for a, b in zip(rs, ex)]))
        summary[str(sh)]["test_ap_minus_exact"] = float(np.mean([a["test_ap"] - b["test_ap"] for a, b in zip(rs, ex)]))
        summary[str(sh)]["radius_max_ratio"] = float(np.mean([a["radius_max"] / b["radius_max"] for a, b in zip(rs, ex)]))
    return {"per_seed": rows, "summary": summary}


def fusion_part(ds, pf, seeds: int, rate: float = 0.05) -> dict:
    from imbvision.data.splits import train_val_test_split
    from imbvision.strategies.patch_heads import FusionHead
    from imbvision.training.prepare import limit_train_positives

    y = ds.labels
    rows = []
    for seed in range(seeds):
        sp = limit_train_positives(train_val_test_split(ds, seed=seed), y, rate, seed)
        ftr, fte = pf.take(sp.train), pf.take(sp.test)
        row = {"seed": seed, "train_positives": int(y[sp.train].sum())}
        for oof in ("one-bank", "refit"):
            c0, t0 = _cpu(), time.perf_counter()
            h = FusionHead(seed=seed, oof=oof).fit(ftr, y[sp.train])
            row[f"{oof}_fit_cpu_s"], row[f"{oof}_fit_wall_s"] = _cpu() - c0, time.perf_counter() - t0
            row[f"{oof}_test_ap"] = _ap(y[sp.test], h.decision_function(fte))
            row[f"{oof}_val_ap"] = _ap(y[sp.val], h.decision_function(pf.take(sp.val)))
            row[f"{oof}_weights"] = h.weights
        rows.append(row)
        print(json.dumps(row), flush=True)
    diff = [r["one-bank_test_ap"] - r["refit_test_ap"] for r in rows]
    return {"per_seed": rows, "test_ap_one_bank_minus_refit": {"mean": float(np.mean(diff)),
            "std": float(np.std(diff, ddof=1)) if len(diff) > 1 else 0.0, "per_seed": diff},
            "mean": {k: float(np.mean([r[k] for r in rows])) for k in
                     ("one-bank_test_ap", "refit_test_ap", "one-bank_fit_cpu_s", "refit_fit_cpu_s")}}


def _synthetic_store(pf, ds, n_neg: int, n_pos: int, path: str, seed: int = 0):
    """Jittered draws of split-0 training images' feature grids in a float16 memmap (bounded RAM)."""
    from imbvision.backbones.patches import PatchFeatures
    from imbvision.data.splits import train_val_test_split

    y = ds.labels
    sp = train_val_test_split(ds, seed=0)
    rng = np.random.default_rng(seed)
    src = np.r_[rng.choice(sp.train[y[sp.train] == 0], n_neg), rng.choice(sp.train[y[sp.train] == 1], n_pos)]
    h, w = pf.grid
    store = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(len(src), h, w, pf.dim))
    sd = float(np.asarray(pf.store[pf.rows[:64]], np.float32).std())
    for s in range(0, len(src), 256):
        part = np.asarray(pf.store[pf.rows[src[s:s + 256]]], np.float32)
        store[s:s + 256] = part + rng.normal(0, 0.05 * sd, part.shape).astype(np.float32)
    store.flush()
    del store
    back = np.load(path, mmap_mode="r")
    feats = PatchFeatures(back, np.arange(len(src)), pf.boxes[src], pf.sizes[src], pf.image_size, pf.settings, None,
                          (pf.global_[src] + rng.normal(0, 0.05, (len(src), pf.global_.shape[1]))).astype(np.float32),
                          [pf.masks[int(i)] for i in src], np.arange(len(src)))
    return feats, np.r_[np.zeros(n_neg), np.ones(n_pos)]


def scaling_one(head: str, n: int, cache: str) -> dict:
    """One point of the cost curve, in this process (its peak RSS is this point's)."""
    from imbvision.strategies.normality_head import NormalityHead
    from imbvision.strategies.patch_heads import FusionHead

    ds, pf = _data(cache)
    n_pos = max(2, int(round(0.05 * n))) if head == "fusion" else 0
    tmp = tempfile.mkdtemp(prefix="bench-bank-")
    feats, y = _synthetic_store(pf, ds, n, n_pos, os.path.join(tmp, "train.npy"))
    test, _ = _synthetic_store(pf, ds, max(1, n // 4), 0, os.path.join(tmp, "test.npy"), seed=1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    c0, t0 = _cpu(), time.perf_counter()
    h = (NormalityHead(seed=0) if head == "normality" else FusionHead(seed=0)).fit(feats, y)
    fit_cpu = _cpu() - c0
    h.decision_function(test)
    out = {"head": head, "train_negatives": n, "train_positives": n_pos, "test_images": len(test),
           "fit_cpu_s": fit_cpu, "fit_score_cpu_s": _cpu() - c0, "fit_score_wall_s": time.perf_counter() - t0,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_fit_mb": rss0,
           "bank": int(len(h.bank_ if head == "normality" else h.bases["normality"].bank_))}
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
    return out


def scaling_part(cache: str, ns=SCALE_NS, heads=("normality", "fusion")) -> dict:
    rows = []
    for head in heads:
        for n in (*ns, RSS_N):
            out = subprocess.run([sys.executable, __file__, "--one", f"{head}:{n}", "--cache", cache],
                                 capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            rows.append(json.loads(out))
            print(out, flush=True)
    slopes = {}
    for head in heads:
        pts = [(r["train_negatives"], r["fit_score_cpu_s"]) for r in rows if r["head"] == head and r["train_negatives"]
               in ns]
        x, t = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
        slopes[head] = float(np.polyfit(x, t, 1)[0])
    return {"points": rows, "log_log_slope": slopes,
            "peak_rss_mb_at_10000": {r["head"]: r["peak_rss_mb"] for r in rows if r["train_negatives"] == RSS_N}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--parts", default="coreset,fusion,scaling")
    ap.add_argument("--cache", default=os.environ.get("IMBVISION_CACHE", os.path.join(tempfile.gettempdir(), "imbv-cache")))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--ns", default=",".join(map(str, SCALE_NS)))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.one:
        head, n = args.one.split(":")
        print(json.dumps(scaling_one(head, int(n), args.cache)))
        return
    old = json.loads((RESULTS / "bench_bank.json").read_text()) if (RESULTS / "bench_bank.json").exists() else {}
    old.pop("machine", None)
    from imbvision.backbones.patches import DEFAULT_PATCH_LAYERS, PATCH_VERSION

    out = {**old, "data": "magnetic-tile", "splits": "stratified 60/20/20, duplicate-grouped",
           "patch_features": {"image_size": 224, "resize": "keep-aspect", "layers": DEFAULT_PATCH_LAYERS,
                              "version": PATCH_VERSION}, "load_avg_start": os.getloadavg()}
    parts = args.parts.split(",")
    if "coreset" in parts or "fusion" in parts:
        ds, pf = _data(args.cache)
    if "coreset" in parts:
        out["coreset"] = {"seeds": args.seeds, **coreset_part(ds, pf, args.seeds)}
    if "fusion" in parts:
        out["fusion"] = {"seeds": args.seeds, "rate": 0.05, **fusion_part(ds, pf, args.seeds)}
    if "scaling" in parts:
        out["scaling"] = scaling_part(args.cache, tuple(int(v) for v in args.ns.split(",")))
    out["load_avg_end"] = os.getloadavg()
    out["targets"] = {"log_log_slope": 1.15, "peak_rss_mb_at_10000": 4096, "coreset_ap_loss": 0.005}
    save("bench_bank", out)


if __name__ == "__main__":
    main()
