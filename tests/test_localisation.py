"""Pixel AUROC and AUPRO of heat maps: a case computed by hand, an independent implementation, bounds."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import measure
from sklearn.metrics import roc_auc_score

from imbvision.errors import DataError
from imbvision.evaluation.localisation import aupro, bounded_size, localisation_scores, pixel_auroc, resize_mask


def _aupro_by_thresholds(maps, masks, limit=0.3):
    """Independent AUPRO: PRO and FPR at every distinct score, regions by scikit-image, trapezoid to the limit."""
    regions = []  # (image index, bool region)
    for i, m in enumerate(masks):
        if m is None:
            continue
        lab = measure.label(m, connectivity=2)
        regions += [(i, lab == k) for k in range(1, lab.max() + 1)]
    normal = [np.ones_like(h, bool) if m is None else ~m for h, m in zip(maps, masks)]
    n_normal = sum(int(n.sum()) for n in normal)
    pts = [(0.0, 0.0)]
    for t in np.unique(np.concatenate([h.ravel() for h in maps]))[::-1]:
        fpr = sum(int(((h >= t) & n).sum()) for h, n in zip(maps, normal)) / n_normal
        pro = np.mean([((maps[i] >= t) & r).sum() / r.sum() for i, r in regions])
        pts.append((fpr, pro))
    x, y = np.array(pts).T
    order = np.lexsort((y, x))
    x, y = x[order], y[order]
    if x[-1] < limit:
        raise AssertionError("curve ends before the limit")
    j = np.searchsorted(x, limit)
    xs = np.r_[x[:j], limit]
    ys = np.r_[y[:j], np.interp(limit, x[j - 1:j + 1], y[j - 1:j + 1])]
    return float(np.trapezoid(ys, xs) / limit)


def test_aupro_of_a_case_computed_by_hand():
    # One image, 1 x 5 pixels: a 2-pixel object [a, b] and 3 object-free pixels n1 > n2 > n3.
    # scores: a = 0.9, n1 = 0.8, b = 0.7, n2 = 0.2, n3 = 0.1
    # curve (FPR, PRO): (0, 0) -> a (0, 0.5) -> n1 (1/3, 0.5) -> b (1/3, 1) -> ...
    # up to FPR 0.3: PRO is 0.5 on [0, 0.3], so AUPRO = 0.5 * 0.3 / 0.3 = 0.5
    heat = np.array([[0.9, 0.7, 0.8, 0.2, 0.1]])
    mask = np.array([[True, True, False, False, False]])
    assert aupro([heat], [mask]) == pytest.approx(0.5)
    # pixel AUROC: pairs (object, free) ranked right: a beats all 3, b beats 2 of 3 -> 5 / 6
    assert pixel_auroc([heat], [mask]) == pytest.approx(5 / 6)
    # integrated to FPR 1 instead: 0.5 on [0, 1/3], then 1 -> (0.5/3 + 2/3) = 5/6
    assert aupro([heat], [mask], fpr_limit=1.0) == pytest.approx(5 / 6)


def test_small_and_large_regions_count_alike():
    """PRO averages over regions: finding a tiny object counts as much as finding a big one."""
    heat = np.full((20, 20), 0.5)
    mask = np.zeros((20, 20), bool)
    mask[0:10, 0:10] = True  # 100-pixel region, missed (scored below every object-free pixel)
    heat[0:10, 0:10] = 0.0
    mask[15, 15] = True  # 1-pixel region, found: PRO 0.5 from FPR 0 to 1
    heat[15, 15] = 1.0
    assert aupro([heat], [mask]) == pytest.approx(0.5, abs=1e-9)
    assert pixel_auroc([heat], [mask]) == pytest.approx(1 / 101)  # pixel AUROC: the big region dominates


def test_aupro_matches_an_independent_implementation():
    rng = np.random.default_rng(0)
    maps, masks = [], []
    for i in range(6):
        m = np.zeros((24, 30), bool)
        if i < 3:  # three masked positives with two regions each
            r, c = rng.integers(0, 18, 2)
            m[r:r + 5, c:c + 4] = True
            m[rng.integers(0, 22), rng.integers(0, 28)] = True
        h = rng.normal(size=m.shape) + 1.5 * m
        maps.append(np.round(h, 2))  # ties, as real maps have
        masks.append(m if m.any() else None)
    ours = aupro(maps, masks)
    assert ours == pytest.approx(_aupro_by_thresholds(maps, masks), abs=1e-9)
    y = np.concatenate([(np.zeros_like(h, bool) if m is None else m).ravel() for h, m in zip(maps, masks)])
    s = np.concatenate([h.ravel() for h in maps])
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_sampled_negatives_keep_the_scores_close():
    rng = np.random.default_rng(1)
    maps, masks = [], []
    for i in range(40):
        m = np.zeros((32, 32), bool)
        if i < 4:
            m[8:16, 8:20] = True
        maps.append(rng.normal(size=m.shape) + 2.0 * m)
        masks.append(m if m.any() else None)
    full = localisation_scores(maps, masks)
    sampled = localisation_scores(maps, masks, max_pixels=8_000)
    assert full["negative_pixel_stride"] == 1 and sampled["negative_pixel_stride"] > 1
    assert sampled["pixels"] <= 8_000 + 32 * 32
    assert abs(sampled["pixel_auroc"] - full["pixel_auroc"]) < 0.01
    assert abs(sampled["aupro"] - full["aupro"]) < 0.02
    assert full["masked_positives"] == 4 and full["regions"] == 4 and full["images"] == 40


def test_bounded_size_and_mask_resize():
    assert bounded_size(1000, 500, 256) == (256, 128)
    assert bounded_size(100, 60, 256) == (100, 60)
    m = np.zeros((100, 200), bool)
    m[40:60, 80:120] = True
    small = resize_mask(m, (100, 50))
    assert small.shape == (50, 100) and small[25, 50] and not small[0, 0]


def test_bad_inputs_are_named():
    h = np.zeros((4, 4))
    with pytest.raises(DataError, match="no object pixel"):
        aupro([h], [None])
    with pytest.raises(DataError, match=r"mask 0 is \(3, 4\)"):
        aupro([h], [np.ones((3, 4), bool)])
    with pytest.raises(DataError, match="NaN"):
        aupro([np.full((4, 4), np.nan)], [np.eye(4, dtype=bool)])
    with pytest.raises(DataError, match="2 heat maps for 1 masks"):
        pixel_auroc([h, h], [None])
