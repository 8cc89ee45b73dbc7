"""Resolution policy and embedded backbones: AP per head at 224 px vs the policy, cost per image, Lite0/1/2.

Two sets: ``demo-tall`` (300 generated images of 500×1250 px with thin scratches, 10% positives,
masks) and Magnetic-tile (defect vs free, 1,344 images of about 250×370 px). Splits as
``compare`` makes them: stratified 60/20/20 with exact and near duplicates on one side, seeds
0..S-1, natural positive rate. Every cell goes through the product's own cell path
(``embed_features`` + ``fit_and_score``, as ``compare`` and ``train`` do) and reports AP on the
validation split (what the defaults are chosen on) and on the test split (what is reported).
Feature cost is CPU-seconds (user + system of this process and its DataLoader workers) per
image actually computed (a cold cache folder per setting). Writes
``benchmarks/results/bench_resolution.json`` (merged into an existing one, keyed by set/setting).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_resolution.py --sets tall --settings policy,224 \
        --heads ce,patch --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
import warnings

import numpy as np

from _common import RESULTS, magnetic_tile, peak_rss_mb, save

#: setting name → (backbone, image_size or None for the policy, resize or None for the policy)
SETTINGS = {
    "224": ("efficientnet_lite0", 224, "stretch"),            # the historical default
    "policy": ("efficientnet_lite0", None, None),
    "448-stretch": ("efficientnet_lite0", 448, "stretch"),
    "448-keep": ("efficientnet_lite0", 448, "keep-aspect"),
    "640-keep": ("efficientnet_lite0", 640, "keep-aspect"),
    "384-keep": ("efficientnet_lite0", 384, "keep-aspect"),
    "lite1-policy": ("efficientnet_lite1", None, None),
    "lite2-policy": ("efficientnet_lite2", None, None),
    "lite1-224": ("efficientnet_lite1", 224, "stretch"),
    "lite2-224": ("efficientnet_lite2", 224, "stretch"),
}


def _cpu() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _ap(y, s) -> float:
    from sklearn.metrics import average_precision_score
    return float(average_precision_score(y, s))


def _dataset(name: str, cache: str):
    from imbvision.backbones import embed_dataset
    from imbvision.data.checks import load_checked

    src = "demo-tall:300:0.1:0" if name == "tall" else f"magnetic-tile:{magnetic_tile()}"
    return load_checked(src, group_duplicates=True,
                        features=lambda d: embed_dataset(d, cache_dir=cache, progress=False).global_).dataset


def run_setting(ds, setting: str, heads: list[str], seeds: int, cache_root: str) -> dict:
    from imbvision.backbones import create_backbone
    from imbvision.backbones.resolution import resolve_resolution
    from imbvision.data.splits import train_val_test_split
    from imbvision.strategies.registry import compose
    from imbvision.training.cell import FeatureSettings, embed_features, fit_and_score, representation_of

    bname, size, resize = SETTINGS[setting]
    res = resolve_resolution([r.path for r in ds.records], size, resize)
    bb = create_backbone(bname)
    fs = FeatureSettings(bname, None, res.image_size, 0, "global", 600, resize=res.resize)
    reps = sorted({representation_of(compose(h)) for h in heads})
    cache = tempfile.mkdtemp(prefix=f"bench-res-{setting}-", dir=cache_root)
    shutil.copytree(os.path.join(cache_root, "onnx"), os.path.join(cache, "onnx"), dirs_exist_ok=True) \
        if os.path.isdir(os.path.join(cache_root, "onnx")) else None
    out: dict = {"backbone": bname, "resolution": res.to_dict(), "features": {}}
    try:
        X = {}
        for rep in reps:  # one representation at a time: its own cost
            c0, t0 = _cpu(), time.perf_counter()
            x, st = embed_features(ds.records, bb, fs, [rep], cache_dir=cache)
            X.update(x)
            out["features"][rep] = {"cpu_seconds": _cpu() - c0, "wall_seconds": time.perf_counter() - t0,
                                    "cpu_seconds_per_image": (_cpu() - c0) / len(ds)}
        y = ds.labels
        cells = []
        for seed in range(seeds):
            sp = train_val_test_split(ds, seed=seed)
            for h in heads:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    c0 = _cpu()
                    cf = fit_and_score(compose(h), X, y, sp, seed=seed)
                    cpu = _cpu() - c0
                cells.append({"head": h, "seed": seed, "val_ap": _ap(y[sp.val], cf.p_val),
                              "test_ap": _ap(y[sp.test], cf.p_test), "fit_score_cpu_seconds": cpu})
                print(setting, cells[-1], flush=True)
        out["cells"] = cells
        out["mean"] = {h: {k: float(np.mean([c[k] for c in cells if c["head"] == h]))
                           for k in ("val_ap", "test_ap", "fit_score_cpu_seconds")} for h in heads}
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="tall,mt")
    ap.add_argument("--settings", default="224,policy")
    ap.add_argument("--heads", default="ce,patch")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cache", default=os.environ.get("IMBVISION_CACHE", os.path.join(tempfile.gettempdir(), "imbv")))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    os.makedirs(args.cache, exist_ok=True)
    path = RESULTS / "bench_resolution.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    result.pop("machine", None)
    result.setdefault("runs", {})
    result["splits"] = ("stratified 60/20/20, exact and near duplicates on one side (as compare), natural positive "
                        "rate; val AP chooses, test AP is reported")
    for name in args.sets.split(","):
        ds = _dataset(name, args.cache)
        for setting in args.settings.split(","):
            t0, rss0 = time.perf_counter(), peak_rss_mb()
            r = run_setting(ds, setting, args.heads.split(","), args.seeds, args.cache)
            r.update({"images": len(ds), "positives": int(ds.labels.sum()), "seeds": list(range(args.seeds)),
                      "wall_seconds": time.perf_counter() - t0, "peak_rss_mb": max(rss0, peak_rss_mb()),
                      "load_avg_end": os.getloadavg()})
            key = f"{name}/{setting}"
            old = result["runs"].get(key, {})
            # heads measured earlier under the same setting are kept beside the new ones
            if old.get("resolution") == r["resolution"] and old.get("backbone") == r["backbone"]:
                keep = [c for c in old.get("cells", []) if c["head"] not in args.heads.split(",")]
                r["cells"] = keep + r["cells"]
                r["features"] = {**old.get("features", {}), **r["features"]}
                heads = sorted({c["head"] for c in r["cells"]})
                r["mean"] = {h: {k: float(np.mean([c[k] for c in r["cells"] if c["head"] == h]))
                                 for k in ("val_ap", "test_ap", "fit_score_cpu_seconds")} for h in heads}
            result["runs"][key] = r
            print(key, json.dumps(r["mean"]), json.dumps(r["features"]), flush=True)
            save("bench_resolution", result)


if __name__ == "__main__":
    main()
