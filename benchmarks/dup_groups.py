"""Benchmark (issue 12 §5): how many duplicate sets the split grouping keeps together on Magnetic-tile.

Reads ``../shared/data/magnetic-tile`` in place, checks it (SHA-256 and
perceptual hash of every image), embeds it once (EfficientNet-Lite0, cached
in ``benchmarks/results/cache``), links duplicates with the audit's detector
(:func:`imbvision.data.checks.link_duplicates`), and counts the duplicate
pairs that straddle train/val/test on seeds 0-9 with and without grouping.

Usage::

    .venv/bin/python benchmarks/dup_groups.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import CACHE, magnetic_tile, save  # noqa: E402

from imbvision.backbones import embed_dataset  # noqa: E402
from imbvision.data.checks import check_dataset, link_duplicates  # noqa: E402
from imbvision.data.duplicates import find_duplicates  # noqa: E402
from imbvision.data.sources import load_source  # noqa: E402
from imbvision.data.splits import train_val_test_split  # noqa: E402


def main() -> None:
    t0 = time.perf_counter()
    ds = load_source(f"magnetic-tile:{magnetic_tile()}")
    rep = check_dataset(ds)
    t_check = time.perf_counter() - t0
    X = embed_dataset(rep.dataset, cache_dir=CACHE, progress=False).global_
    dup = find_duplicates(rep.sha256, rep.phash, X)
    hash_only = find_duplicates(rep.sha256, rep.phash, None)
    plain = rep.dataset
    linked = link_duplicates(check_dataset(plain), X).dataset
    pairs = [(s[0], m) for s in dup.exact for m in s[1:]] + [(a, b) for a, b, _ in dup.near]
    y = plain.labels
    leaks = {"plain": [], "grouped": []}
    for seed in range(10):
        for name, d in (("plain", plain), ("grouped", linked)):
            part = train_val_test_split(d, seed=seed).assignment(len(d))
            leaks[name].append(int(sum(part[a] != part[b] for a, b in pairs)))
    sizes = np.bincount(dup.set_id)[1:]
    result = {
        "images": len(plain),
        "exact_sets": len(dup.exact),
        "near_pairs": len(dup.near),
        "duplicate_sets_grouped": dup.sets,
        "images_in_sets": dup.images_in_sets,
        "sets_with_a_positive": len({int(s) for s, lab in zip(dup.set_id, y) if s and lab}),
        "largest_set": int(sizes.max()) if sizes.size else 0,
        "set_size_histogram": {str(k): int(v) for k, v in enumerate(np.bincount(sizes)) if v and k},
        "hash_only_pairs_within_6_bits": len(hash_only.near),
        "hash_only_largest_set": int(np.bincount(hash_only.set_id)[1:].max()) if hash_only.sets else 0,
        "pairs_straddling_splits_seeds_0_9": leaks,
        "check_seconds": round(t_check, 1),
        "note": ("near = pHash within 6 bits AND EfficientNet-Lite0 cosine >= 0.98 (the audit's criterion); "
                 "the pHash alone pairs thousands of plain tiles, so splits link near duplicates only with embeddings"),
    }
    print(result)
    save("dup_groups", result)


if __name__ == "__main__":
    main()
