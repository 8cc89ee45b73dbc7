"""Patch features, the patch / normality / fusion heads, heat maps and derived masks (tiny data)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imbvision.backbones import create_backbone
from imbvision.backbones.patches import (
    canvas_view, grid_to_image, mask_to_grid, patch_features, patch_features_arrays,
)
from imbvision.data.records import ImageRecord
from imbvision.data.sources import load_source
from imbvision.errors import BadFileError, ConfigError, DataError
from imbvision.explain import derive_mask, mask_iou, overlay_heatmap
from imbvision.strategies import compose
from imbvision.strategies.heads import head_from_arrays
from imbvision.strategies.patch_heads import FusionHead, NormalityHead, PatchHead, greedy_coreset
from imbvision.training.patch_fit import fit_patch_head, grid_masks


@pytest.fixture(scope="module")
def tiny(tiny_manifest, cache_dir):
    ds = load_source(str(tiny_manifest))
    bb = create_backbone("test_efficientnet", weights="none")
    # the finer pair keeps an 8x8 grid at 64 px, enough for the localisation checks below
    feats = patch_features(ds, backbone=bb, image_size=64, cache_dir=cache_dir, layers="s8+s16")
    return ds, bb, feats


def test_patch_features_grid_cache_and_engine(tiny, cache_dir):
    ds, bb, feats = tiny
    # test_efficientnet: 32 channels at stride 8 + 48 at stride 16, on a 64/8 = 8x8 grid
    assert feats.store.dtype == np.float16 and feats.grid == (8, 8) and feats.dim == 32 + 48
    assert len(feats) == len(ds) and np.isfinite(feats.image(0)).all()
    again = patch_features(ds, backbone=bb, image_size=64, cache_dir=cache_dir, layers="s8+s16")
    assert again.stats["from_cache"] == len(ds) and again.stats["computed"] == 0
    assert isinstance(again.store, np.memmap)  # memory-mapped, not loaded into RAM
    np.testing.assert_array_equal(again.image(5), feats.image(5))
    # the in-memory path gives the same features as the cached dataset path (same engine, float16)
    arr = np.asarray(Image.open(ds.records[5].path).convert("RGB"))
    mem = patch_features_arrays([arr], bb, image_size=64, cache_dir=cache_dir, layers="s8+s16")
    np.testing.assert_allclose(mem.image(0), feats.image(5), atol=2e-2)


def test_default_patch_layers_are_strides_16_and_32(tiny, tmp_path):
    ds, bb, fine = tiny
    cache_dir = tmp_path
    patch_features(ds, backbone=bb, image_size=64, cache_dir=cache_dir, layers="s8+s16")
    coarse = patch_features(ds, backbone=bb, image_size=64, cache_dir=cache_dir)
    # test_efficientnet: 48 channels at stride 16 + 64 at stride 32, on a 64/16 = 4x4 grid
    assert coarse.settings["layers"] == "s16+s32" and coarse.grid == (4, 4) and coarse.dim == 48 + 64
    assert coarse.stats["computed"] == len(ds)  # another settings key: never read from the finer pair's cache
    # the stride-16 block is the coarse part of the finer pair and the fine part of this one
    assert np.isfinite(coarse.image(0)).all() and not np.shares_memory(coarse.store, fine.store)
    with pytest.raises(ConfigError, match="--patch-layers 's4\\+s8' invalid; valid: s16\\+s32, s8\\+s16"):
        patch_features(ds, backbone=bb, image_size=64, cache_dir=cache_dir, layers="s4+s8")


def test_onnx_patch_engine_matches_torch(tiny):
    from imbvision.backbones.patches import make_patch_engine

    _, bb, _ = tiny
    batch = np.random.default_rng(1).integers(0, 256, (3, 3, 64, 64), dtype=np.uint8)
    for layers, shape in (("s8+s16", (3, 8, 8, 80)), ("s16+s32", (3, 4, 4, 112))):
        a = make_patch_engine(bb, 64, kind="torch", layers=layers)(batch)
        b = make_patch_engine(bb, 64, kind="onnx", layers=layers)(batch)
        assert a.shape == shape
        np.testing.assert_allclose(a, b, atol=2e-3)


def test_keep_aspect_pads_the_short_side_and_marks_padding_invalid():
    tall = np.zeros((200, 50, 3), np.uint8)
    tall[:, :, 0] = np.arange(50, dtype=np.uint8)[None, :] * 5
    view, box = canvas_view(tall, 64, "keep-aspect")
    assert view.shape == (3, 64, 64)
    assert box == (24, 0, 40, 64)  # long side 200 → 64, short side 50 → 16, centred
    # edge replication: the padding repeats the first/last image column
    assert (view[0, :, :24] == view[0, :, 24:25]).all() and (view[0, :, 40:] == view[0, :, 39:40]).all()
    stretch, box2 = canvas_view(tall, 64, "stretch")
    assert box2 == (0, 0, 64, 64) and stretch.shape == (3, 64, 64)
    with pytest.raises(ConfigError, match="resize 'crop' invalid; valid: stretch, keep-aspect"):
        canvas_view(tall, 64, "crop")
    from imbvision.backbones.patches import _valid_grid
    valid = _valid_grid(box, 64, (8, 8))
    assert valid[:, 3:5].all() and not valid[:, :3].any() and not valid[:, 5:].any()


def test_mask_grid_and_heat_map_geometry():
    mask = np.zeros((40, 80), bool)
    mask[10:20, 60:70] = True  # right half, upper part
    view, box = canvas_view(np.zeros((40, 80, 3), np.uint8), 64, "keep-aspect")
    g = mask_to_grid(mask, box, 64, (8, 8))
    assert g.shape == (8, 8) and 0 < g.max() <= 1
    r, c = np.unravel_index(np.argmax(g), g.shape)
    assert c >= 4 and 2 <= r <= 4  # object on the right, canvas rows 16..48 hold the image
    heat = grid_to_image(g, box, 64, (80, 40), sigma=0)
    assert heat.shape == (40, 80)
    assert heat[15, 65] > heat[30, 10]


def test_bad_masks_are_named(tmp_path, tiny):
    ds, bb, _ = tiny
    pos = [r for r in ds.records if r.label == 1 and r.mask is not None][0]
    w, h = Image.open(pos.path).size
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((h, w), np.uint8)).save(empty)
    small = tmp_path / "small.png"
    Image.fromarray(np.full((h // 2, w), 255, np.uint8)).save(small)
    for bad, why in ((empty, "empty"), (small, "size of its image")):
        recs = [ImageRecord(pos.path, 1, bad)]
        feats = patch_features_arrays([np.asarray(Image.open(pos.path).convert("RGB"))], bb, image_size=64)
        with pytest.raises(BadFileError, match=why) as info:
            grid_masks(recs, feats)
        assert bad.name in str(info.value)
        masks, skipped = grid_masks(recs, feats, skip_bad=True)
        assert masks == [None] and skipped[0][0] == str(bad)


def _problem(ds, feats, mask_some=True):
    y = ds.labels
    masks, _ = grid_masks(ds.records, feats)
    if mask_some:  # masks for half the positives only: the rest trains by MIL
        pos = np.flatnonzero(y == 1)
        for i in pos[::2]:
            masks[i] = None
    return y, masks


def test_patch_head_mixed_supervision_and_round_trip(tiny):
    ds, _, feats = tiny
    y, masks = _problem(ds, feats)
    head = PatchHead(seed=0).fit(feats, y, masks=masks)
    n_pos = int(y.sum())
    assert head.info_["masked_positives"] == n_pos - len(np.flatnonzero(y == 1)[::2])
    assert head.info_["mil_positives"] == len(np.flatnonzero(y == 1)[::2])
    s = head.decision_function(feats)
    assert s.shape == (len(y),) and s[y == 1].mean() > s[y == 0].mean()
    z = head.patch_scores(feats)
    assert z.shape == (len(y), 8, 8)
    back = head_from_arrays(head.to_arrays(), head.get_config())
    np.testing.assert_allclose(back.decision_function(feats), s)
    # same seed, same numbers
    np.testing.assert_array_equal(PatchHead(seed=0).fit(feats, y, masks=masks).decision_function(feats), s)
    # without any mask (pure MIL) it still fits
    mil = PatchHead(seed=0).fit(feats, y)
    assert mil.info_["masked_positives"] == 0 and np.isfinite(mil.decision_function(feats)).all()


def test_patch_head_refit_rounds_add_each_negatives_hard_patches(tiny):
    ds, _, feats = tiny
    y, masks = _problem(ds, feats, mask_some=False)  # every positive masked: no MIL re-selection
    n_neg = int((y == 0).sum())
    one = PatchHead(seed=0, neg_patches=4, mil_rounds=0).fit(feats, y, masks=masks).info_
    two = PatchHead(seed=0, neg_patches=4, mil_rounds=1).fit(feats, y, masks=masks).info_
    # the refit adds up to k=3 top-scoring patches per negative (those not drawn at random already)
    assert one["positive_patches"] == two["positive_patches"]
    assert one["patch_rows"] < two["patch_rows"] <= one["patch_rows"] + 3 * n_neg


def test_normality_needs_negatives_not_positives(tiny):
    ds, _, feats = tiny
    y = ds.labels
    neg = np.flatnonzero(y == 0)
    head = NormalityHead(ratio=0.1, seed=0).fit(feats.take(neg), y[neg])  # zero positives: fine
    s = head.decision_function(feats)
    assert np.isfinite(s).all() and s[y == 1].mean() > s[y == 0].mean()
    back = head_from_arrays(head.to_arrays(), head.get_config())
    np.testing.assert_allclose(back.decision_function(feats), s, atol=1e-3)  # bank stored as float16
    pos = np.flatnonzero(y == 1)
    with pytest.raises(DataError, match="needs negative .*training images"):
        NormalityHead().fit(feats.take(pos), y[pos])


def test_greedy_coreset_covers_every_cluster():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [50, 0], [0, 50], [50, 50]], float)
    X = np.concatenate([c + rng.normal(0, 1, (200, 2)) for c in centres])
    idx = greedy_coreset(X, 4, seed=0)
    assert sorted({int(i) // 200 for i in idx}) == [0, 1, 2, 3]
    np.testing.assert_array_equal(idx, greedy_coreset(X, 4, seed=0))


def test_fusion_reports_weights_and_round_trips(tiny):
    ds, _, feats = tiny
    from imbvision.backbones import embed_dataset
    y, masks = _problem(ds, feats, mask_some=False)
    feats.global_ = embed_dataset(ds, backbone="test_efficientnet", weights="none", image_size=64,
                                  progress=False).global_
    head = FusionHead(seed=0).fit(feats, y, masks=masks)
    assert set(head.weights) == {"global", "patch", "normality"}
    s = head.decision_function(feats)
    back = head_from_arrays(head.to_arrays(), head.get_config())
    np.testing.assert_allclose(back.decision_function(feats), s, atol=1e-3)


def test_patch_pipeline_refuses_feature_resamplers_and_no_positive(tiny):
    ds, _, feats = tiny
    y, masks = _problem(ds, feats)
    with pytest.raises(ConfigError, match="smote resample pooled feature rows"):
        fit_patch_head(feats, y, compose("smote+patch"), masks=masks)
    neg = np.flatnonzero(y == 0)
    with pytest.raises(ConfigError, match="with none use --strategy normality"):
        fit_patch_head(feats.take(neg), y[neg], compose("patch"))
    fit = fit_patch_head(feats, y, compose("balanced-sampler+patch"), seed=1, masks=masks)
    assert fit.head.info_["inner"] == "linear" and np.isfinite(fit.predict_proba(feats)).all()


def test_overlay_and_derived_mask():
    img = np.full((30, 40, 3), 100, np.uint8)
    heat = np.zeros((30, 40))
    heat[5:12, 20:30] = 5.0
    mask = heat > 0
    out = overlay_heatmap(img, heat, mask)
    assert out.dtype == np.uint8 and min(out.shape[:2]) >= 256  # enlarged so a small object shows
    assert ((out == (0, 255, 0)).all(axis=2)).sum() > 0  # the mask outline
    derived = derive_mask(heat, 1)
    assert mask_iou(derived, mask) == 1.0
    assert not derive_mask(heat, 0).any()  # a negative has no object
    assert derive_mask(heat * 0.1, 1, min_peak=1.0) is None  # model does not see it: no mask
    with pytest.raises(ConfigError, match="heat map is"):
        overlay_heatmap(img, heat[:10], None)


def test_greedy_coreset_matches_a_plain_k_centre_reference():
    # Reference: the textbook greedy k-centre on exact distances (no projection: 8 dims < proj_dim).
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    first = int(torch_first_index(300, seed=5))
    chosen = [first]
    best = ((X - X[first]) ** 2).sum(1)
    for _ in range(24):
        i = int(np.argmax(best))
        chosen.append(i)
        best = np.minimum(best, ((X - X[i]) ** 2).sum(1))
    np.testing.assert_array_equal(greedy_coreset(X, 25, seed=5), np.sort(chosen))
    # the selection covers the data: every row lies within the k-centre radius of a chosen one
    d = ((X[:, None] - X[np.sort(chosen)][None]) ** 2).sum(-1).min(1)
    assert d.max() <= best.max() + 1e-4


def torch_first_index(n: int, seed: int) -> int:
    import torch
    return int(torch.randint(n, (1,), generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("search", ["ivf", "hnsw"])
def test_approximate_search_agrees_with_exact_and_is_repeatable(tiny, search):
    ds, _, feats = tiny
    y = ds.labels
    neg = np.flatnonzero(y == 0)
    exact = NormalityHead(ratio=1.0, search="exact", seed=0).fit(feats.take(neg), y[neg])
    approx = NormalityHead(ratio=1.0, search=search, seed=0).fit(feats.take(neg), y[neg])
    q = np.concatenate([feats.image(i)[feats.valid(i)] for i in range(len(feats))])
    d_exact, d_approx = exact._search(q)[:, 0], approx._search(q)[:, 0]
    # an approximate neighbour is never nearer than the true one, and on a small bank it is mostly the same
    assert np.all(d_approx >= d_exact - 1e-3)
    assert np.mean(np.isclose(d_approx, d_exact, atol=1e-3)) >= 0.8
    again = NormalityHead(ratio=1.0, search=search, seed=0).fit(feats.take(neg), y[neg])
    np.testing.assert_array_equal(again.decision_function(feats), approx.decision_function(feats))
    with pytest.raises(ConfigError, match="normality: search=.kd. is invalid; valid: one of auto, exact, ivf, ivfpq, hnsw"):
        NormalityHead(search="kd")


def test_patch_cell_i_sits_on_canvas_pixel_stride_times_i():
    """Symmetric padding centres grid cell i on canvas pixel s*i (issue 15 trial: maps were shifted)."""
    size, g = 64, 4  # stride 16
    heat = np.zeros((g, g), np.float32)
    heat[1, 2] = 1.0
    up = grid_to_image(heat, (0, 0, size, size), size, (size, size), sigma=0)
    assert np.unravel_index(np.argmax(up), up.shape) == (16, 32)
    assert up[16, 32] == pytest.approx(1.0) and up[16 + 16, 32] == pytest.approx(0.0)
    # a mask covering exactly the window centred on pixel (16, 32) fills that one cell
    mask = np.zeros((size, size), bool)
    mask[16 - 8:16 + 8, 32 - 8:32 + 8] = True
    grid = mask_to_grid(mask, (0, 0, size, size), size, (g, g))
    assert grid[1, 2] == pytest.approx(1.0) and grid.sum() == pytest.approx(1.0)


def test_coarse_half_of_a_patch_is_aligned_on_the_fine_cells(tiny):
    """Fine cell 2j reads the coarse (stride-2s) map exactly at its cell j (geometric centres)."""
    import torch
    import torch.nn.functional as F

    from imbvision.backbones.patches import PatchNet

    _, bb, _ = tiny
    net = PatchNet(bb, "s8+s16", centres=((0.0, 0.0), (0.0, 0.0))).eval()
    x = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        out = net(x)
        f = net.body((x.float() - net.mean) * net.inv_std)
        fine = F.avg_pool2d(f["s8"], 3, stride=1, padding=1, count_include_pad=False)
        coarse = F.avg_pool2d(f["s16"], 3, stride=1, padding=1, count_include_pad=False)
    c_fine = f["s8"].shape[1]
    np.testing.assert_allclose(out[:, :c_fine].numpy(), fine.numpy(), atol=1e-5)
    np.testing.assert_allclose(out[:, c_fine:, ::2, ::2].numpy(), coarse.numpy(), atol=1e-5)
    # odd fine cells lie halfway between two coarse cells
    np.testing.assert_allclose(out[:, c_fine:, 1:-1:2, ::2].numpy(),
                               ((coarse[:, :, :-1] + coarse[:, :, 1:]) / 2).numpy(), atol=1e-5)
    # a block whose features sit 8 px (fine) / 16 px (coarse) below their cell is read one cell further down
    shifted = PatchNet(bb, "s8+s16", centres=((8.0, 0.0), (16.0, 0.0))).eval()
    with torch.no_grad():
        out2 = shifted(x)
    np.testing.assert_allclose(out2[:, :c_fine, :-1].numpy(), fine[:, :, 1:].numpy(), atol=1e-5)
    np.testing.assert_allclose(out2[:, :c_fine, -1].numpy(), fine[:, :, -1].numpy(), atol=1e-5)  # edge held
    np.testing.assert_allclose(out2[:, c_fine:, :-2:2, ::2].numpy(), coarse[:, :, 1:].numpy(), atol=1e-5)
