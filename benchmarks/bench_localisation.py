"""Localisation of the heat maps, and zero-positive thresholds, on Magnetic-tile, through the product's cell path.

1. **Localisation per patch head** (``patch``, ``normality``, ``fusion``): image ROC-AUC and AP, pixel AUROC
   and AUPRO (FPR ≤ 0.3) of the heat maps on the test split's masked positives and all test negatives,
   over 3 seeds. Splits as ``bench_patch.py``: stratified 60/20/20 with duplicate sets kept on one side,
   training positives subsampled to 5 %. Each cell is :func:`imbvision.training.cell.fit_and_score` and
   :func:`imbvision.training.localise.split_localisation` — what ``train`` and ``compare`` run.
2. **Zero positives, ``--threshold fpr<=0.05``**: ``normality`` trained on the training negatives, its
   threshold from the validation negatives alone (validation positives removed too), over 5 seeds: the
   realised false-alarm rate on the test negatives, its Clopper–Pearson interval, the interval the rule
   predicts for it, and test AP / ROC-AUC.

Writes ``benchmarks/results/bench_localisation.json``.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_localisation.py [--seeds 3] [--fpr-seeds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import warnings

import numpy as np

from _common import magnetic_tile, peak_rss_mb, save


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fpr-seeds", type=int, default=5)
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--target", type=float, default=0.05)
    ap.add_argument("--cache", default=os.environ.get("IMBVISION_CACHE", os.path.join(tempfile.gettempdir(), "imbv")))
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from pathlib import Path

    from imbvision.backbones import create_backbone, embed_dataset
    from imbvision.data.checks import load_checked
    from imbvision.data.splits import Split, train_val_test_split
    from imbvision.evaluation import evaluate_scores, ranking_metrics
    from imbvision.strategies import compose
    from imbvision.training.cell import FeatureSettings, embed_features, fit_and_score
    from imbvision.training.localise import split_localisation
    from imbvision.training.prepare import limit_train_positives

    t0, c0 = time.perf_counter(), _cpu()
    cache = Path(args.cache)
    bb = create_backbone("efficientnet_lite0")
    ds = load_checked(f"magnetic-tile:{magnetic_tile()}", group_duplicates=True,
                      features=lambda d: embed_dataset(d, backbone=bb, cache_dir=cache, progress=False).global_).dataset
    y = ds.labels
    settings = FeatureSettings("efficientnet_lite0", None, 224, 0, "global", 0, resize="keep-aspect",
                               skip_bad=True)  # empty masks dropped (those positives train by MIL), as bench_patch.py
    feats, _ = embed_features(ds.records, bb, settings, ["patches"], cache_dir=cache)
    features_cpu = _cpu() - c0
    out: dict = {"data": "magnetic-tile", "train_positive_rate": args.rate,
                 "splits": "stratified 60/20/20, duplicate-grouped (exact and near duplicates), as bench_patch.py",
                 "patch_features": {"image_size": 224, "resize": "keep-aspect", "backbone": "efficientnet_lite0"},
                 "localisation": "heat maps at a long side <= 256 px; masked test positives and all test negatives",
                 "features_cpu_seconds": features_cpu, "load_avg_start": os.getloadavg()}
    per_seed = []
    for seed in range(args.seeds):
        sp = limit_train_positives(train_val_test_split(ds, seed=seed), y, args.rate, seed)
        row: dict = {"seed": seed, "train_positives": int(y[sp.train].sum()), "test_positives": int(y[sp.test].sum())}
        for name in ("patch", "normality", "fusion"):
            c1 = _cpu()
            cf = fit_and_score(compose(name), feats, y, sp, seed=seed)
            rank = ranking_metrics(y[sp.test], cf.post.uncalibrated(cf.p_test))
            loc = split_localisation(cf.fit.head, feats["patches"], ds.records, sp.test)
            row[name] = {"image_roc_auc": rank["roc_auc"], "ap": rank["ap"], "pixel_auroc": loc["pixel_auroc"],
                         "aupro": loc["aupro"], "masked_positives": loc["masked_positives"],
                         "negative_pixel_stride": loc["negative_pixel_stride"], "cpu_seconds": _cpu() - c1}
        per_seed.append(row)
        print({k: ({m: round(v, 3) for m, v in x.items()} if isinstance(x, dict) else x) for k, x in row.items()},
              flush=True)
    keys = ("image_roc_auc", "ap", "pixel_auroc", "aupro")
    out["per_seed"] = per_seed
    out["mean"] = {h: {k: float(np.mean([r[h][k] for r in per_seed])) for k in keys}
                   for h in ("patch", "normality", "fusion")}
    out["std"] = {h: {k: float(np.std([r[h][k] for r in per_seed], ddof=1)) if len(per_seed) > 1 else 0.0
                      for k in keys} for h in ("patch", "normality", "fusion")}
    fpr_rows = []
    for seed in range(args.fpr_seeds):
        c1 = _cpu()
        base = train_val_test_split(ds, seed=seed)
        sp = Split(base.train[y[base.train] == 0], base.val[y[base.val] == 0], base.test)  # no positive before test
        rule = f"fpr<={args.target:g}"
        cf = fit_and_score(compose("normality"), feats, y, sp, seed=seed, threshold=rule)
        m = evaluate_scores(y[sp.test], cf.post.apply(cf.p_test), cf.post.threshold.threshold, n_boot=0,
                            rank_score=cf.post.uncalibrated(cf.p_test), rule_info=cf.post.threshold.achieved["fpr_rule"])
        fpr_rows.append({"seed": seed, "val_negatives": len(sp.val), "test_negatives": m["negatives"],
                         "val_false_alarm_rate": cf.post.threshold.achieved["false_alarm_rate"],
                         "test_false_alarm_rate": m["false_alarm_rate"], "clopper_pearson_95": m["false_alarm_ci"],
                         "expected_95": m["false_alarm_expected"], "within_expected": m["false_alarm_within_expected"],
                         "target_in_clopper_pearson": m["false_alarm_ci"][0] <= args.target <= m["false_alarm_ci"][1],
                         "test_recall": m["recall"], "test_ap": m["ap"], "test_roc_auc": m["roc_auc"],
                         "cpu_seconds": _cpu() - c1})
        print(fpr_rows[-1], flush=True)
    out["zero_positive_fpr"] = {
        "target": args.target, "rule": f"fpr<={args.target:g}", "per_seed": fpr_rows,
        "mean_test_false_alarm_rate": float(np.mean([r["test_false_alarm_rate"] for r in fpr_rows])),
        "within_expected": int(sum(r["within_expected"] for r in fpr_rows)), "seeds": len(fpr_rows)}
    out["wall_seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = _cpu() - c0
    out["peak_rss_mb"] = peak_rss_mb()
    out["load_avg_end"] = os.getloadavg()
    save("bench_localisation", out)


if __name__ == "__main__":
    main()
