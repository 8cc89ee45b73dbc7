"""Patch-level heads on Magnetic-tile: AP per head, zero positives, localisation, derived masks, speed.

Defect vs. free; stratified 60/20/20 splits with duplicate sets kept on one side
(exact copies and near duplicates by the global embedding); training positives subsampled to 5% of the training split, so
about 30 defects against 571 free; validation and test at the natural rate.
Features are computed once (patch features at 224 px keep-aspect, global
embedding at 224 px) and reused by every seed and head. Writes
``benchmarks/results/bench_patch.json``.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_patch.py [--seeds 3] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings

import numpy as np

from _common import RESULTS, magnetic_tile, peak_rss_mb, save


def _ap(y, s):
    from sklearn.metrics import average_precision_score
    return float(average_precision_score(y, s))


def speed(ds, cache: str, n: int = 1024) -> dict:
    """Cold-cache patch features end to end (hashing, decoding, engine, cache writes, and the one-time
    ONNX export and check) vs the bare engine on the same, already decoded images."""
    from imbvision.backbones import create_backbone
    from imbvision.backbones.patches import canvas_view, make_patch_engine, patch_features
    from imbvision.data.decode import load_image_array

    bb = create_backbone("efficientnet_lite0")
    recs = ds.records[:n]
    load0 = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="bench-patch-")
    try:
        shutil.copytree(os.path.join(cache, "onnx"), os.path.join(tmp, "onnx"), dirs_exist_ok=True) \
            if os.path.isdir(os.path.join(cache, "onnx")) else None
        t = time.perf_counter()
        pf = patch_features(recs, backbone=bb, image_size=224, resize="keep-aspect", cache_dir=tmp)
        e2e_s = time.perf_counter() - t
        e2e = n / e2e_s
        eng = make_patch_engine(bb, 224, cache_dir=tmp)
        views = np.stack([canvas_view(load_image_array(r.path), 224, "keep-aspect")[0] for r in recs])
        t = time.perf_counter()
        for s in range(0, n, 32):
            eng(views[s:s + 32])
        bare = n / (time.perf_counter() - t)
        size = os.path.getsize(next(p for p in __import__("pathlib").Path(tmp).rglob("rows.f16")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"images": n, "engine": pf.stats.get("engine"), "layers": pf.settings["layers"], "grid": list(pf.grid),
            "dim": pf.dim, "end_to_end_seconds": e2e_s, "end_to_end_img_per_s": e2e, "bare_engine_img_per_s": bare,
            "bytes_per_image": size / n, "cache_5000_images_gb": size / n * 5000 / 1e9,
            "load_avg_before": load0}


def scoring_speed(ds, cache: str) -> dict:
    """Warm scoring speed of the heads on seed 0's test split (cached features; one warm-up call first)."""
    from imbvision.backbones.patches import patch_features
    from imbvision.data.splits import train_val_test_split
    from imbvision.strategies.patch_heads import NormalityHead, PatchHead
    from imbvision.training.prepare import limit_train_positives

    pf = patch_features(ds, image_size=224, resize="keep-aspect", cache_dir=cache)
    y = ds.labels
    sp = limit_train_positives(train_val_test_split(ds, seed=0), y, 0.05, 0)
    out = {}
    for name, head in (("normality", NormalityHead(seed=0)), ("patch", PatchHead(seed=0))):
        t = time.perf_counter()
        head.fit(pf.take(sp.train), y[sp.train])
        fit_s = time.perf_counter() - t
        head.decision_function(pf.take(sp.test[:8]))
        t = time.perf_counter()
        head.decision_function(pf.take(sp.test))
        out[f"{name}_score_img_per_s"] = len(sp.test) / (time.perf_counter() - t)
        out[f"{name}_fit_s"] = fit_s
        if name == "normality":
            out["normality_bank"] = int(len(head.bank_))
            out["normality_index"] = type(head._index).__name__
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "imbv-cache"))
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--speed-only", action="store_true",
                    help="measure only the speeds (on a quiet machine) into the existing bench_patch.json")
    ap.add_argument("--more-seeds", type=int, default=0,
                    help="add this many seeds to an existing bench_patch.json (its seeds and localisation are kept)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from imbvision.backbones import embed_dataset
    from imbvision.backbones.patches import grid_to_image, patch_features
    from imbvision.data.decode import load_mask
    from imbvision.data.checks import load_checked
    from imbvision.data.splits import train_val_test_split
    from imbvision.explain import derive_mask, mask_iou
    from imbvision.strategies.heads import LogRegHead
    from imbvision.strategies.patch_heads import FusionHead, NormalityHead, PatchHead
    from imbvision.training.patch_fit import grid_masks
    from imbvision.training.prepare import limit_train_positives

    t_all = time.perf_counter()
    before = json.loads((RESULTS / "bench_patch.json").read_text()) if (RESULTS / "bench_patch.json").exists() else {}
    ds = load_checked(f"magnetic-tile:{magnetic_tile()}", group_duplicates=True,
                      features=lambda d: embed_dataset(d, cache_dir=args.cache, progress=False).global_).dataset
    y = ds.labels
    from imbvision.backbones.patches import DEFAULT_PATCH_LAYERS
    from imbvision.strategies.normality_head import NormalityHead as _NH

    out: dict = {"data": "magnetic-tile", "rate": args.rate,
                 "splits": "stratified 60/20/20, duplicate-grouped (exact and near duplicates)",
                 "patch_features": {"image_size": 224, "resize": "keep-aspect", "backbone": "efficientnet_lite0",
                                    "layers": DEFAULT_PATCH_LAYERS},
                 "normality_defaults": _NH().params(),
                 "load_avg_start": os.getloadavg()}
    speed_file = os.path.join(args.cache, "bench_patch_speed.json")
    if args.speed_only:
        old = json.loads((RESULTS / "bench_patch.json").read_text())
        old["speed"] = {**speed(ds, args.cache), **scoring_speed(ds, args.cache)}
        old["speed"]["load_avg_after"] = os.getloadavg()
        print(old["speed"])
        old.pop("machine", None)
        save("bench_patch", old)
        return
    if not args.skip_speed or not os.path.exists(speed_file):
        out["speed"] = {**speed(ds, args.cache), **scoring_speed(ds, args.cache)}
        with open(speed_file, "w") as fh:
            json.dump(out["speed"], fh)
    else:  # measured by an earlier run of this script (same cache folder)
        with open(speed_file) as fh:
            out["speed"] = json.load(fh)
    out["speed"]["load_avg_after"] = os.getloadavg()
    print(out["speed"], flush=True)
    rss0 = peak_rss_mb()
    t = time.perf_counter()
    pf = patch_features(ds, image_size=224, resize="keep-aspect", cache_dir=args.cache)
    out["features_seconds"] = time.perf_counter() - t
    pf.global_ = embed_dataset(ds, cache_dir=args.cache, progress=False).global_
    masks, bad = grid_masks(ds.records, pf, skip_bad=True)  # empty masks: those positives train by MIL
    out["empty_masks"] = [b[0] for b in bad]
    per_seed, loc, first = [], {}, 0
    if args.more_seeds:
        old = json.loads((RESULTS / "bench_patch.json").read_text())
        per_seed, loc = old["per_seed"], old["localisation_seed0"]
        first = len(per_seed)
        args.seeds = first + args.more_seeds
    for seed in range(first, args.seeds):
        sp = limit_train_positives(train_val_test_split(ds, seed=seed), y, args.rate, seed)
        tr, te = sp.train, sp.test
        ftr, fte = pf.take(tr), pf.take(te)
        mtr = [masks[i] for i in tr]
        row: dict = {"seed": seed, "train_positives": int(y[tr].sum()), "train_negatives": int((y[tr] == 0).sum())}
        times: dict = {}
        t = time.perf_counter()
        g = LogRegHead(C=0.01, seed=seed).fit(pf.global_[tr], y[tr])
        row["global"] = _ap(y[te], g.decision_function(pf.global_[te]))
        times["global"] = time.perf_counter() - t
        heads = {}
        for name, make, kw in (("patch", PatchHead, {"masks": mtr}), ("patch_mil_only", PatchHead, {}),
                               ("normality", NormalityHead, {}), ("fusion", FusionHead, {"masks": mtr})):
            t = time.perf_counter()
            h = make(seed=seed).fit(ftr, y[tr], **kw)
            fit_s = time.perf_counter() - t
            t = time.perf_counter()
            row[name] = _ap(y[te], h.decision_function(fte))
            times[name] = {"fit_s": fit_s, "score_img_per_s": len(te) / (time.perf_counter() - t)}
            heads[name] = h
        row["fusion_weights"] = heads["fusion"].weights
        # Zero training positives: the normality head on the training negatives alone.
        neg = tr[y[tr] == 0]
        t = time.perf_counter()
        h0 = NormalityHead(seed=seed).fit(pf.take(neg), y[neg])
        row["normality_zero_positives"] = _ap(y[te], h0.decision_function(fte))
        times["normality_zero_positives_fit_s"] = time.perf_counter() - t
        row["timing"] = times
        per_seed.append(row)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k != "timing"}, flush=True)
        if seed == 0:
            loc = localisation(ds, pf, te, heads, grid_to_image, load_mask, derive_mask, mask_iou)
            print(loc, flush=True)
    keys = ("global", "patch", "patch_mil_only", "normality", "fusion", "normality_zero_positives")
    out["ap"] = {k: {"mean": float(np.mean([r[k] for r in per_seed])), "std": float(np.std([r[k] for r in per_seed], ddof=1))
                     if len(per_seed) > 1 else 0.0} for k in keys}
    out["fusion_minus_global"] = [r["fusion"] - r["global"] for r in per_seed]
    out["per_seed"] = per_seed
    out["localisation_seed0"] = loc
    out["peak_rss_mb"] = peak_rss_mb()
    out["rss_before_features_mb"] = rss0
    out["wall_seconds"] = time.perf_counter() - t_all
    out["load_avg_end"] = os.getloadavg()
    out["targets"] = {"best_ap": 0.90, "zero_positive_ap": 0.85, "pixel_auroc": 0.90, "patch_img_per_s": 100,
                      "normality_img_per_s": 200}
    # The previous run's figures, kept for comparison (a rerun with --more-seeds keeps the older "before").
    out["before"] = before.get("before") if args.more_seeds else {
        k: before[k] for k in ("splits", "ap", "localisation_seed0", "speed", "per_seed") if k in before}
    save("bench_patch", out)


def localisation(ds, pf, te, heads, grid_to_image, load_mask, derive_mask, mask_iou) -> dict:
    """Pixel AUROC of the heat maps on seed 0's test images (every 2nd pixel), IoU of derived masks."""
    from sklearn.metrics import roc_auc_score

    fte = pf.take(te)
    out = {}
    for name in ("patch", "patch_mil_only", "normality", "fusion"):
        z = heads[name].patch_scores(fte)
        ys, ss, ious = [], [], []
        for j, i in enumerate(te):
            r = ds.records[int(i)]
            W, H = (int(v) for v in fte.sizes[j])
            g = np.where(np.isfinite(z[j]), z[j], np.nanmin(np.where(np.isfinite(z[j]), z[j], np.nan)))
            heat = grid_to_image(g, fte.boxes[j], fte.image_size, (W, H))
            m = load_mask(r.mask).numpy() if (r.label == 1 and r.mask is not None) else np.zeros((H, W), bool)
            ys.append(m[::2, ::2].reshape(-1))
            ss.append(heat[::2, ::2].reshape(-1))
            if r.label == 1 and m.any():
                d = derive_mask(heat, 1)
                ious.append(mask_iou(d, m))
        out[name] = {"pixel_auroc": float(roc_auc_score(np.concatenate(ys), np.concatenate(ss))),
                     "derived_mask_iou_mean": float(np.mean(ious)), "derived_mask_iou_median": float(np.median(ious)),
                     "positives": len(ious)}
    return out


if __name__ == "__main__":
    main()
