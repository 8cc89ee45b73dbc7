"""Calibration in the large per recipe: mean test probability over test prevalence, before and after.

For every registered loss, sampler and resampler (the head mode's default head) on the demo set,
over a few seeds: fit once on the training split, then post-process the same validation and test
scores two ways — ``before``: the analytic prior correction alone (``--calibration none``);
``after``: the default post-processing (prior correction, then the validation-fitted intercept,
``--calibration intercept``). The ratio is mean test probability / test prevalence, pooled over
seeds (sum of probabilities over sum of positives); 1 is calibrated in the large. Test AP is the
same for both (the intercept is monotone) and is printed as a check. Writes
``benchmarks/results/bench_calibration.json``.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_calibration.py [--data demo:800:0.08:3] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import warnings

import numpy as np

from _common import save


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="demo:800:0.08:3")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cache", default=os.environ.get("IMBVISION_CACHE", os.path.join(tempfile.gettempdir(), "imbv")))
    ap.add_argument("--recipes", default="", help="comma-separated recipes (default: every loss, sampler, resampler)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from pathlib import Path

    from imbvision.backbones import create_backbone, embed_dataset
    from imbvision.data.sources import load_source
    from imbvision.data.splits import train_val_test_split
    from imbvision.evaluation import average_precision
    from imbvision.evaluation.postprocess import fit_postprocess
    from imbvision.strategies import compose, list_strategies
    from imbvision.training.head import fit_head

    t0, c0 = time.perf_counter(), _cpu()
    ds = load_source(args.data)
    y = ds.labels
    X = embed_dataset(ds.records, backbone=create_backbone("efficientnet_lite0"), cache_dir=Path(args.cache),
                      progress=False).global_
    embed_cpu = _cpu() - c0
    recipes = ([r.strip() for r in args.recipes.split(",") if r.strip()] if args.recipes else
               ["ce"] + [r.name for fam in ("loss", "sampler", "resampler") for r in list_strategies(fam)
                         if r.name != "ce"] + ["weighted-ce+random-over"])
    splits = [train_val_test_split(ds, seed=s) for s in range(args.seeds)]
    rows = {}
    for name in recipes:
        c1 = _cpu()
        recipe = compose(name)
        acc = {"none": [0.0, 0.0], "intercept": [0.0, 0.0]}
        aps = []
        for seed, sp in enumerate(splits):
            fit = fit_head(X[sp.train], y[sp.train], recipe, seed=seed)
            p_val, p_test = fit.predict_proba(X[sp.val]), fit.predict_proba(X[sp.test])
            for cal in acc:
                post = fit_postprocess(p_val, y[sp.val], train_prior=fit.effective_prior,
                                       true_prior=float(y[sp.val].mean()), calibration=cal)
                p = post.apply(p_test)
                acc[cal][0] += float(p.sum())
                acc[cal][1] += float(y[sp.test].sum())
                if cal == "none":
                    aps.append(average_precision(y[sp.test], post.uncalibrated(p_test)))
        rows[name] = {"before": acc["none"][0] / acc["none"][1], "after": acc["intercept"][0] / acc["intercept"][1],
                      "test_ap_mean": float(np.mean(aps)), "cpu_seconds": _cpu() - c1}
        print(name, {k: round(v, 3) for k, v in rows[name].items()}, flush=True)
    after = [r["after"] for r in rows.values()]
    save("bench_calibration", {
        "data": args.data, "seeds": list(range(args.seeds)), "splits": "stratified 60/20/20 (train_val_test_split)",
        "ratio": "mean test probability / test prevalence, pooled over seeds",
        "before": "analytic prior correction alone (--calibration none)",
        "after": "prior correction, then the intercept refitted on validation (--calibration intercept, the default)",
        "recipes": rows, "worst_after": float(max(after, key=lambda v: abs(v - 1))),
        "all_within_20pct_after": bool(all(abs(v - 1) <= 0.2 for v in after)),
        "wall_seconds": time.perf_counter() - t0, "cpu_seconds": _cpu() - c0, "embed_cpu_seconds": embed_cpu,
    })


if __name__ == "__main__":
    main()
