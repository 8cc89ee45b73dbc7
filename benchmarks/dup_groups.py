"""Benchmark (issue 12 §5, issue 21 §1): duplicate groups that keep the requested splits.

Three data sets, each over seeds 0-9, before and after:

- **Magnetic-tile** (``../shared/data/magnetic-tile``, read in place): 1,344 photos.
- **Near-identical objects**: the demo generator with ``variation=0.04`` (600 images,
  10 % positive): distinct objects photographed the same way, whose look-alike links chain.
- **Hard links**: one negative under 5,000 names plus 60 other images (12 positive).

*Before* is the grouping of issue 12 (connected components of every exact and
near link, the split drawn over units counting one each with
``StratifiedShuffleSplit``); *after* is the current one (near links grown
strongest first under :data:`~imbvision.data.duplicates.MAX_NEAR_SET`, units
placed by size, a unit too large to place kept in train). Reported per data set:
the worst departure of any part's share from 60/20/20 and of the test
prevalence from the data's, the largest group, links cut, and the exact- and
near-duplicate pairs straddling two parts. Near duplicates are judged on the
fixed grouping representation (EfficientNet-Lite0 at 224 px, cached in
``benchmarks/results/cache``). CPU seconds (user + system) beside wall time.

Usage::

    .venv/bin/python benchmarks/dup_groups.py            # all three
    .venv/bin/python benchmarks/dup_groups.py --skip-mt  # without Magnetic-tile
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import CACHE, magnetic_tile, save  # noqa: E402

from imbvision.data.checks import check_dataset  # noqa: E402
from imbvision.data.duplicates import MAX_NEAR_SET, find_duplicates  # noqa: E402
from imbvision.data.records import Dataset  # noqa: E402
from imbvision.data.sources import load_source  # noqa: E402
from imbvision.data.splits import Split, split_balance, train_val_test_split  # noqa: E402
from imbvision.training.prepare import duplicate_features  # noqa: E402

SEEDS = range(10)


def _cpu() -> float:
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def _old_split(ds: Dataset, set_id: np.ndarray, seed: int) -> Split:
    """Issue 12's split: units (a set counts once, positive when any member is), StratifiedShuffleSplit over units."""
    from sklearn.model_selection import StratifiedShuffleSplit

    y = ds.labels
    units = np.where(set_id > 0, set_id + len(y), np.arange(len(y)))
    _, units = np.unique(units, return_inverse=True)
    yu = np.zeros(units.max() + 1, dtype=np.int64)
    np.maximum.at(yu, units, y)
    idx = np.arange(len(yu))
    rest, te = next(StratifiedShuffleSplit(1, test_size=0.2, random_state=seed).split(idx, yu))
    tr, va = next(StratifiedShuffleSplit(1, test_size=0.25, random_state=seed + 1).split(rest, yu[rest]))
    return Split(*(np.flatnonzero(np.isin(units, part)) for part in (rest[tr], rest[va], te)))


def _measure(ds: Dataset, dup, split_of, pairs: dict[str, list[tuple[int, int]]]) -> dict:
    y = ds.labels
    prev = float(y.mean())
    worst_share, worst_prev, straddle, off_splits = 0.0, 0.0, {k: 0 for k in pairs}, 0
    table = []
    for seed in SEEDS:
        sp = split_of(seed)
        bal = split_balance(sp, y, val=0.2, test=0.2)
        off_splits += bool(bal["off"])
        shares = {k: v["fraction"] for k, v in bal["parts"].items()}
        worst_share = max(worst_share, max(abs(shares[k] - bal["requested"][k]) for k in shares))
        worst_prev = max(worst_prev, abs(bal["parts"]["test"]["prevalence"] - prev))
        part = sp.assignment(len(ds))
        for k, ps in pairs.items():
            straddle[k] += int(sum(part[a] != part[b] for a, b in ps))
        table.append({"seed": seed, **{k: round(v, 4) for k, v in shares.items()},
                      "test_prevalence": round(bal["parts"]["test"]["prevalence"], 4)})
    sizes = np.bincount(dup.set_id)[1:] if dup.sets else np.zeros(1, int)
    return {"worst_share_departure_points": round(100 * worst_share, 2),
            "worst_test_prevalence_departure_points": round(100 * worst_prev, 2),
            "splits_off_by_more_than_5_points": off_splits,
            "sets": dup.sets, "images_in_sets": dup.images_in_sets, "largest_set": int(sizes.max()),
            "near_links_cut": dup.links_cut, "pairs_straddling_parts_seeds_0_9": straddle, "per_seed": table}


def _compare(name: str, ds: Dataset, shas, phs, features) -> dict:
    t0, c0 = time.perf_counter(), _cpu()
    after = find_duplicates(shas, phs, features)
    before = find_duplicates(shas, phs, features, max_set=10 ** 9)
    t_group, c_group = time.perf_counter() - t0, _cpu() - c0
    pairs = {"exact": [(s[0], m) for s in after.exact for m in s[1:]],
             "near_kept": [(a, b) for (a, b, _), k in zip(after.near, after.linked) if k],
             "near_all": [(a, b) for a, b, _ in after.near]}
    linked = Dataset([replace(r, duplicate_set=int(s) if s else None) for r, s in zip(ds.records, after.set_id)],
                     ds.source, ds.positive_name, ds.negative_name)
    res = {
        "images": len(ds), "positives": int(ds.labels.sum()),
        "before": _measure(ds, before, lambda s: _old_split(ds, before.set_id, s), pairs),
        "after": _measure(linked, after, lambda s: train_val_test_split(linked, seed=s), pairs),
        "grouping_seconds": round(t_group, 1), "grouping_cpu_seconds": round(c_group, 1),
    }
    print(name, {k: {kk: vv for kk, vv in v.items() if kk != "per_seed"} if isinstance(v, dict) else v
                 for k, v in res.items()})
    return res


def _grouping_inputs(ds: Dataset):
    rep = check_dataset(ds)
    embed = duplicate_features(cache_dir=CACHE, progress=False)
    feats = lambda idx: embed(rep.dataset.subset(idx))  # noqa: E731 - only hash-near images are embedded
    return rep.dataset, rep.sha256, rep.phash, feats


def _hard_links(tmp: Path) -> Dataset:
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp / "img").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp / "img" / "base.png")
    rows = [["img/base.png", 0]]
    for i in range(4999):
        os.link(tmp / "img" / "base.png", tmp / "img" / f"copy_{i:05d}.png")
        rows.append([f"img/copy_{i:05d}.png", 0])
    for i in range(60):
        Image.fromarray(np.random.default_rng(i + 1).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            tmp / "img" / f"o{i}.png")
        rows.append([f"img/o{i}.png", int(i < 12)])
    with open(tmp / "m.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["path", "label"], *rows])
    return load_source(str(tmp / "m.csv"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-mt", action="store_true")
    args = ap.parse_args()
    from imbvision.data.synthetic import DemoSpec, generate_demo_dataset

    t0, c0 = time.perf_counter(), _cpu()
    out: dict = {"request": {"train": 0.6, "val": 0.2, "test": 0.2}, "tolerance_points": 5,
                 "max_near_set": MAX_NEAR_SET, "seeds": list(SEEDS)}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_mt:
            out["magnetic_tile"] = _compare("magnetic-tile", *_grouping_inputs(load_source(f"magnetic-tile:{magnetic_tile()}")))
        m = generate_demo_dataset(Path(tmp) / "alike", DemoSpec(n=600, positive_rate=0.1, seed=3, variation=0.04))
        out["near_identical_objects"] = _compare("near-identical objects (demo, variation 0.04)",
                                                 *_grouping_inputs(load_source(str(m))))
        ds = _hard_links(Path(tmp) / "links")
        rep = check_dataset(ds)
        out["hard_links"] = _compare("one negative under 5,000 names + 60 images", rep.dataset, rep.sha256, rep.phash, None)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out["cpu_seconds"] = round(_cpu() - c0, 1)
    out["note"] = ("before: connected components + StratifiedShuffleSplit over units (issue 12); after: near links "
                   f"strongest first under a cap of {MAX_NEAR_SET} images, units placed by size, a unit too large "
                   "to place kept in train. Shares and prevalence are of images; tolerance 5 points.")
    save("dup_groups", out)


if __name__ == "__main__":
    main()
