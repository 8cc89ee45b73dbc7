"""Fit time of every strategy in head mode on the Magnetic-tile embeddings (1,344 images).

Each strategy is composed with the default head and fitted on the training
split (60%) of the cached global embeddings; pixel-space strategies include
making and embedding their new images. Target (issue 3): under 5 s each on 2 cores.

    .venv/bin/python benchmarks/bench_strategies.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from _common import CACHE, magnetic_tile, save


def main() -> None:
    from imbvision.backbones import create_backbone, embed_arrays, embed_dataset
    from imbvision.data.splits import train_val_test_split
    from imbvision.data.sources import load_source
    from imbvision.evaluation import average_precision
    from imbvision.strategies import compose, list_strategies
    from imbvision.training.head import fit_head
    from imbvision.training.pixels import make_synthetic_images

    ds = load_source(f"magnetic-tile:{magnetic_tile()}")
    bb = create_backbone("efficientnet_lite0")
    X = embed_dataset(ds, backbone=bb, cache_dir=CACHE, progress=True).global_
    y = ds.labels
    sp = train_val_test_split(ds, seed=0)
    rows = []
    for rec in list_strategies():
        name = rec.name
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            recipe = compose(name)
            ex_X = ex_y = None
            if recipe.synthesis or recipe.mixing:
                syn = make_synthetic_images([ds.records[i] for i in sp.train], recipe, seed=0, image_size=224, max_n=300)
                ex_X = embed_arrays(syn.images, bb).global_
                ex_y = np.asarray(syn.labels)
            t_fit = time.perf_counter()
            fit = fit_head(X[sp.train], y[sp.train], recipe, seed=0, extra_X=ex_X, extra_y=ex_y)
        total = time.perf_counter() - t0
        ap = average_precision(y[sp.test], fit.predict_proba(X[sp.test]))
        rows.append({"strategy": name, "family": rec.family, "head": fit.head_name, "seconds": total,
                     "fit_seconds": time.perf_counter() - t_fit if False else fit.fit_seconds,
                     "new_images": 0 if ex_X is None else len(ex_X), "test_ap": ap, "under_5s": total < 5})
        print(f"{name:20s} {rec.family:10s} {total:6.2f} s  (head {fit.head_name}, new images "
              f"{rows[-1]['new_images']}, test AP {ap:.3f})")
    save("bench_strategies", {"images": len(ds), "train_rows": int(len(sp.train)), "rows": rows,
                              "all_under_5s": all(r["under_5s"] for r in rows), "target_seconds": 5})


if __name__ == "__main__":
    main()
