"""Tests of the synthesis strategies (augment-oversample, copy-paste), masks and grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from imbvision.errors import ConfigError, DataError
from imbvision.strategies.examples import save_example_grid, strategy_examples
from imbvision.strategies.registry import StrategyContext, get_strategy, list_strategies, parse_strategies
from imbvision.strategies.copy_paste import CopyPaste, CopyPasteParams
from imbvision.strategies.object_masks import _otsu, mask_bbox, propose_mask, save_mask_contact_sheet
from imbvision.strategies.synthesis import AugmentOversample

YELLOW = torch.tensor([0.95, 0.8, 0.2])


def texture(seed: int, H: int = 64, W: int = 64) -> torch.Tensor:
    """A grey-blue periodic texture with noise: a negative background."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    t = 0.4 + 0.08 * torch.sin(xx / 3.0 + seed) * torch.cos(yy / 5.0) + 0.05 * torch.rand(H, W, generator=g)
    return torch.stack([t * 0.9, t, t * 1.1]).clamp(0, 1).float()


def disc_sample(seed: int, H: int = 64, W: int = 64, r: float = 10, cy: float | None = None,
                cx: float | None = None, textured: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Texture plus a bright yellow disc (with its own fine texture) and the disc mask."""
    img = texture(seed, H, W)
    yy, xx = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    cy = H / 2 if cy is None else cy
    cx = W / 2 if cx is None else cx
    m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    obj = YELLOW[:, None, None].expand(3, H, W).clone()
    if textured:
        obj = obj - 0.1 * ((xx + 2 * yy) % 7 / 7.0)[None]
    img = torch.where(m[None], obj, img)
    return img.clamp(0, 1), m


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(1.0, float((a | b).sum()))


def border_chord(mask: torch.Tensor) -> float:
    """Longest run of mask pixels on a frame edge relative to the mask's extent on that axis."""
    box = mask_bbox(mask)
    assert box is not None
    h, w = box[1] - box[0], box[3] - box[2]
    return max(
        float(mask[0].sum()) / w, float(mask[-1].sum()) / w,
        float(mask[:, 0].sum()) / h, float(mask[:, -1].sum()) / h,
    )


# --------------------------------------------------------------------------- copy-paste


def test_copy_paste_hard_copies_object_pixels_exactly_and_leaves_background() -> None:
    img, m = disc_sample(0, r=9)
    bg = texture(7, 32, 128)  # same pixel count as the source: scale 1 is the identity
    cp = CopyPaste(blend="hard", scale_min=1.0, scale_max=1.0, rotation=0.0, hflip=False)
    for s in range(5):
        g = torch.Generator().manual_seed(s)
        out, om = cp(img, m, generator=g, background=bg)
        assert out.shape == bg.shape and om.shape == bg.shape[1:] and om.dtype == torch.bool
        assert int(om.sum()) == int(m.sum())  # whole object, same size (same resolution)
        sy0, sy1, sx0, sx1 = mask_bbox(m)
        ny0, ny1, nx0, nx1 = mask_bbox(om)
        assert (ny1 - ny0, nx1 - nx0) == (sy1 - sy0, sx1 - sx0)
        src_obj = img[:, sy0:sy1, sx0:sx1][:, m[sy0:sy1, sx0:sx1]]
        new_obj = out[:, ny0:ny1, nx0:nx1][:, om[ny0:ny1, nx0:nx1]]
        assert torch.equal(src_obj, new_obj)
        assert torch.equal(out[:, ~om], bg[:, ~om])  # hard blend touches only the object


def test_copy_paste_scales_to_background_resolution() -> None:
    # Same object at double resolution: scale=1 means "its size at the background's resolution".
    img, m = disc_sample(0, 128, 128, r=20)
    bg = texture(1, 64, 64)
    cp = CopyPaste(blend="hard", scale_min=1.0, scale_max=1.0, rotation=0.0)
    _, om = cp(img, m, generator=torch.Generator().manual_seed(0), background=bg)
    assert abs(float(om.sum()) - math.pi * 10**2) < 0.15 * math.pi * 10**2


def test_copy_paste_feather_changes_only_near_object() -> None:
    img, m = disc_sample(0, r=8)
    bg = texture(3)
    sigma = 1.5
    cp = CopyPaste(blend="feather", feather=sigma, rotation=45.0)
    for s in range(5):
        out, om = cp(img, m, generator=torch.Generator().manual_seed(s), background=bg)
        assert om.any() and out.min() >= 0 and out.max() <= 1
        dist = ndimage.distance_transform_edt(~om.numpy())
        far = torch.from_numpy(dist > 3 * sigma + 3)
        assert torch.equal(out[:, far], bg[:, far])
        # The object shows where the mask says: yellow-ish (red >> blue) deep inside.
        core = torch.from_numpy(ndimage.binary_erosion(om.numpy(), iterations=3))
        assert core.any()
        assert float((out[0, core] - out[2, core]).mean()) > 0.4


def test_copy_paste_poisson_matches_source_gradients() -> None:
    img, m = disc_sample(0, r=9)
    img = img * 0.6 + 0.2  # keep away from clipping so the Poisson equation holds exactly
    bg = texture(5)
    cp = CopyPaste(blend="poisson", scale_min=1.0, scale_max=1.0, rotation=0.0, hflip=False)
    out, om = cp(img, m, generator=torch.Generator().manual_seed(2), background=bg)
    omega = ndimage.binary_dilation(om.numpy(), iterations=1)
    outside = torch.from_numpy(~omega)
    assert torch.allclose(out[:, outside], bg[:, outside])
    sy0, _, sx0, _ = mask_bbox(m)
    ny0, _, nx0, _ = mask_bbox(om)
    dy, dx = ny0 - sy0, nx0 - sx0

    def lap(a: np.ndarray) -> np.ndarray:
        return 4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]

    inner = ndimage.binary_erosion(om.numpy(), iterations=1)[1:-1, 1:-1]
    for c in range(3):
        src_shift = np.roll(img[c].double().numpy(), (dy, dx), axis=(0, 1))
        lo = lap(out[c].double().numpy())[inner]
        ls = lap(src_shift)[inner]
        np.testing.assert_allclose(lo, ls, atol=1e-4)
    # Seamless: the object takes the background's level, so it is not the source's colour.
    assert not torch.allclose(out[:, om], img[:, m])


@pytest.mark.parametrize("blend", ["hard", "feather", "poisson"])
def test_copy_paste_huge_object_on_small_background_is_shrunk_to_fit(blend: str) -> None:
    img, m = disc_sample(0, 256, 256, r=120)
    bg = texture(2, 24, 40)
    cp = CopyPaste(blend=blend, scale_min=2.0, scale_max=3.0, rotation=90.0)
    for s in range(3):
        out, om = cp(img, m, generator=torch.Generator().manual_seed(s), background=bg)
        assert out.shape == (3, 24, 40) and om.shape == (24, 40)
        assert om.any()
        # A disc cut by the frame would have a long straight chord on an edge.
        assert border_chord(om) < 0.5


def test_copy_paste_object_never_leaves_frame_over_many_draws() -> None:
    img, m = disc_sample(1, 64, 64, r=12, cy=14, cx=50)
    cp = CopyPaste(blend="hard", scale_min=0.5, scale_max=3.0, rotation=180.0)
    g = torch.Generator().manual_seed(0)
    for s in range(25):
        bg = texture(s, 40 + s, 70 - s)
        out, om = cp(img, m, generator=g, background=bg)
        assert om.any()
        assert border_chord(om) < 0.5
        assert torch.equal(out[:, ~om], bg[:, ~om])


def test_copy_paste_corner_positions() -> None:
    # u, v at the extremes put the object's extent against the edges, not past them.
    img, m = disc_sample(0, r=8)
    bg = texture(1, 32, 128)
    cp = CopyPaste(blend="hard", rotation=0.0)
    for u, v in [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0)]:
        _, om = cp.apply(img, m, bg, CopyPasteParams(scale=1.0, angle=0.0, hflip=False, u=u, v=v))
        y0, y1, x0, x1 = mask_bbox(om)
        assert (y0 == 0) == (u == 0.0) and (y1 == 32) == (u == 1.0)
        assert (x0 == 0) == (v == 0.0) and (x1 == 128) == (v == 1.0)
        assert int(om.sum()) == int(m.sum())


def test_copy_paste_needs_background_and_mask_or_auto_mask() -> None:
    img, m = disc_sample(0)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ConfigError, match="background"):
        CopyPaste()(img, m, generator=g)
    with pytest.raises(ConfigError, match="auto_mask"):
        CopyPaste(auto_mask=False)(img, None, generator=g, background=texture(1))
    out, om = CopyPaste()(img, None, generator=g, background=texture(1))  # proposes the mask
    assert om.any()
    with pytest.raises(DataError, match="negative"):
        CopyPaste().synthesize([(img, m)], [], 2, generator=g)
    flat = torch.full((3, 64, 64), 0.5)
    with pytest.raises(DataError, match="no object"):
        CopyPaste().synthesize([(flat, torch.zeros(64, 64, dtype=torch.bool))], [texture(1)], 2,
                               generator=g)
    with pytest.raises(ConfigError, match="empty mask"):
        CopyPaste(auto_mask=False).synthesize([(img, torch.zeros(64, 64, dtype=torch.bool))], [texture(1)], 2,
                                              generator=g)


def test_copy_paste_synthesize_and_determinism() -> None:
    pos = [disc_sample(i, 64, 64 + 8 * i, r=6 + i, cy=20 + 4 * i) for i in range(3)]
    pos.append((pos[0][0], None))  # no mask: proposed automatically
    neg = [texture(10 + i, 48 + 8 * i, 56) for i in range(4)]
    cp = CopyPaste()
    a = cp.synthesize(pos, neg, 7, generator=torch.Generator().manual_seed(3))
    b = cp.synthesize(pos, neg, 7, generator=torch.Generator().manual_seed(3))
    c = cp.synthesize(pos, neg, 7, generator=torch.Generator().manual_seed(4))
    assert len(a) == 7
    for (ia, ma), (ib, mb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(ma, mb)
        assert ia.dtype == torch.float32 and ma.dtype == torch.bool and ma.any()
        assert ia.shape[1:] == ma.shape
    assert any(not torch.equal(ia, ic) for (ia, _), (ic, _) in zip(a, c))
    assert cp.synthesize(pos, neg, 0, generator=torch.Generator()) == []


# --------------------------------------------------------------------------- augment-oversample


def test_augment_keeps_object_in_frame_over_many_draws() -> None:
    aug = AugmentOversample(rotation=180.0, scale_min=0.6, scale_max=2.5, vflip=True)
    g = torch.Generator().manual_seed(0)
    worst = 1.0
    for s in range(40):
        img, m = disc_sample(s, 64, 64, r=7 + s % 5, cy=12 + (7 * s) % 40, cx=12 + (11 * s) % 40)
        p = aug.draw((64, 64), m, generator=g)
        out, om = aug.apply(img, m, p)
        zoom = 64 / p.crop[2]
        worst = min(worst, float(om.sum()) / (float(m.sum()) * zoom * zoom))
        assert out.shape == img.shape and om.shape == m.shape and om.dtype == torch.bool
    assert worst >= 0.9


def test_augment_moves_mask_with_image() -> None:
    aug = AugmentOversample(rotation=90.0, scale_min=0.8, scale_max=2.0, brightness=0.0, contrast=0.0,
                            blur=0.0, noise=0.0, vflip=True)
    g = torch.Generator().manual_seed(1)
    for s in range(10):
        img, m = disc_sample(s, 64, 64, r=10, cy=25 + s, cx=40 - s, textured=False)
        out, om = aug(img, m, generator=g)
        yellow = (out[0] - out[2]) > 0.5
        inner = torch.from_numpy(ndimage.binary_erosion(om.numpy(), iterations=1))
        assert float(yellow[inner].float().mean()) > 0.97
        outer = torch.from_numpy(~ndimage.binary_dilation(om.numpy(), iterations=1))
        assert float(yellow[outer].float().mean()) < 0.01


def test_augment_photometric_changes_and_range() -> None:
    img, m = disc_sample(0)
    aug = AugmentOversample(hflip=False, rotation=0.0, scale_min=1.0, scale_max=1.0,
                            brightness=0.5, contrast=0.5, blur=2.0, noise=0.1)
    outs = [aug(img, m, generator=torch.Generator().manual_seed(s))[0] for s in range(4)]
    for o in outs:
        assert 0.0 <= float(o.min()) and float(o.max()) <= 1.0
        assert not torch.equal(o, img)
    assert not torch.equal(outs[0], outs[1])


def test_augment_synthesize_determinism_and_balance() -> None:
    pos = [disc_sample(i, 48 + 8 * i, 64, r=8, cy=20) for i in range(3)]
    aug = AugmentOversample()
    a = aug.synthesize(pos, [], 6, generator=torch.Generator().manual_seed(0))
    b = aug.synthesize(pos, [], 6, generator=torch.Generator().manual_seed(0))
    c = aug.synthesize(pos, [], 6, generator=torch.Generator().manual_seed(1))
    assert len(a) == 6
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(a, c))
    sizes = sorted(int(x[0].shape[1]) for x in a)
    assert sizes == [48, 48, 56, 56, 64, 64]  # each positive used equally often


def test_augment_without_mask() -> None:
    img, m = disc_sample(0)
    g = torch.Generator().manual_seed(0)
    out, om = AugmentOversample()(img, None, generator=g)
    assert om.any()
    with pytest.raises(ConfigError, match="auto_mask"):
        AugmentOversample(auto_mask=False)(img, None, generator=g)


def test_generator_is_required() -> None:
    img, m = disc_sample(0)
    with pytest.raises(TypeError, match="torch.Generator"):
        AugmentOversample()(img, m, generator=0)  # type: ignore[arg-type]


def test_global_rng_untouched() -> None:
    img, m = disc_sample(0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    AugmentOversample()(img, m, generator=torch.Generator().manual_seed(0))
    CopyPaste()(img, m, generator=torch.Generator().manual_seed(0), background=texture(1))
    assert torch.equal(before, torch.get_rng_state())


# --------------------------------------------------------------------------- ratio & params


@pytest.mark.parametrize("cls", [AugmentOversample, CopyPaste])
def test_n_to_generate(cls: type) -> None:
    assert cls().n_to_generate(10, 100) == 40
    assert cls().n_to_generate(60, 100) == 0
    assert cls(ratio=0.1).n_to_generate(0, 30) == 3  # not 4 from 0.1 * 30 = 3.0000000000000004
    assert cls(ratio=1.0).n_to_generate(5, 5) == 0
    assert cls(ratio=2.0).n_to_generate(3, 5) == 7
    assert cls(ratio=0.5).n_to_generate(0, 3) == 2


@pytest.mark.parametrize(
    "text,match",
    [
        ("copy-paste:ratio=0", "ratio"),
        ("copy-paste:ratio=-1", "ratio"),
        ("copy-paste:scale_min=0", "scale_min"),
        ("copy-paste:rotation=181", "rotation"),
        ("copy-paste:blend=magic", "blend"),
        ("augment-oversample:rotation=-1", "rotation"),
        ("augment-oversample:noise=2", "noise"),
    ],
)
def test_bad_params_rejected(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_strategies(text)


def test_scale_order_checked_and_unknown_param() -> None:
    with pytest.raises(ConfigError, match="scale_min=2 is larger than scale_max=1"):
        CopyPaste(scale_min=2.0, scale_max=1.0)
    with pytest.raises(ConfigError, match="scale_min"):
        spec = parse_strategies("augment-oversample:scale_min=2,scale_max=1")[0]
        spec.build(StrategyContext())
    with pytest.raises(ConfigError, match="valid parameters"):
        CopyPaste(colour=1)


def test_registry_records() -> None:
    for name, cls in [("augment-oversample", AugmentOversample), ("copy-paste", CopyPaste)]:
        rec = get_strategy(name)
        assert rec.family == "synthesis" and rec.description and rec.reference
        obj = rec.build(StrategyContext(class_counts=(90, 10)), **rec.defaults())
        assert isinstance(obj, cls)
        assert rec.corrects_prior(rec.defaults()) is False
    spec = parse_strategies("copy-paste:blend=hard,ratio=1")[0]
    assert spec.build(StrategyContext()).blend == "hard"


# --------------------------------------------------------------------------- automatic masks


@pytest.mark.parametrize(
    "kw",
    [
        dict(r=10),
        dict(r=7, cy=15, cx=48),
        dict(H=96, W=160, r=14, cy=60, cx=40),
        dict(H=300, W=240, r=30, cy=100, cx=150),
    ],
)
def test_propose_mask_recovers_disc(kw: dict) -> None:
    img, m = disc_sample(3, **kw)
    pm = propose_mask(img)
    assert pm.shape == m.shape and pm.dtype == torch.bool
    assert iou(pm, m) > 0.7


def test_propose_mask_dark_object_and_empty() -> None:
    img = texture(4)
    yy, xx = torch.meshgrid(torch.arange(64).float(), torch.arange(64).float(), indexing="ij")
    m = (yy - 40) ** 2 + (xx - 22) ** 2 <= 64
    img[:, m] = 0.05
    assert iou(propose_mask(img), m) > 0.7
    flat = torch.full((3, 40, 50), 0.5)
    assert not propose_mask(flat).any()


def test_otsu_matches_scikit_image() -> None:
    filters = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.2, 0.05, 5000), rng.normal(0.7, 0.1, 800)])
    assert abs(_otsu(v) - filters.threshold_otsu(v)) < 0.01


# --------------------------------------------------------------------------- pictures


def _check_png(path, min_w: int = 100) -> np.ndarray:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        arr = np.asarray(im.convert("RGB"))
    assert arr.shape[1] >= min_w and arr.shape[0] >= 50
    assert arr.std() > 10  # not a constant image
    return arr


def test_save_example_grid_and_contact_sheet(tmp_path) -> None:
    samples = [disc_sample(i, 64, 48 + 16 * (i % 2), r=8) for i in range(5)]
    p = save_example_grid([s[0] for s in samples], tmp_path / "grid.png", masks=[s[1] for s in samples],
                          titles=[f"#{i}" for i in range(5)], ncols=3)
    arr = _check_png(p)
    # Red outlines are drawn.
    red = (arr[..., 0] > 200) & (arr[..., 1] < 60) & (arr[..., 2] < 60)
    assert red.sum() > 50
    plain = _check_png(save_example_grid([s[0] for s in samples], tmp_path / "plain.png"))
    assert ((plain[..., 0] > 200) & (plain[..., 1] < 60) & (plain[..., 2] < 60)).sum() == 0
    sheet = save_mask_contact_sheet([s[0] for s in samples], [propose_mask(s[0]) for s in samples],
                                    tmp_path / "sheet.png")
    _check_png(sheet)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file
    with pytest.raises(ValueError, match="masks"):
        save_example_grid([samples[0][0]], tmp_path / "x.png", masks=[])


@pytest.mark.parametrize("name", ["augment-oversample", "copy-paste"])
def test_strategy_examples(tmp_path, name: str) -> None:
    pos = [disc_sample(i, r=8 + i) for i in range(2)]
    images = [p[0] for p in pos] + [texture(10 + i) for i in range(3)]
    masks = [p[1] for p in pos] + [None] * 3
    labels = [1, 1, 0, 0, 0]
    path = strategy_examples(name, images, masks, labels, tmp_path / f"{name}.png", seed=0)
    _check_png(path, min_w=300)
    others = [r.name for r in list_strategies() if r.family not in ("synthesis", "mixing")]
    if others:  # other families may not be registered yet in a partial tree
        with pytest.raises(ConfigError, match="synthesis and mixing"):
            strategy_examples(others[0], images, masks, labels, tmp_path / "other.png")
