"""Tests of the mixing strategies: mixup, cutmix, minority-mixup (Remix), object-cutmix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from imbvision.errors import ConfigError
from imbvision.strategies.examples import strategy_examples
from imbvision.strategies.mixing import (
    CutMix,
    MinorityMixUp,
    MixParams,
    MixUp,
    ObjectCutMix,
    sample_beta,
)
from imbvision.strategies.registry import StrategyContext, get_strategy, parse_strategies

N, H, W = 12, 20, 24


def batch(seed: int = 0, n: int = N, n_pos: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images (every pixel distinct with probability 1) and binary labels, positives first."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, H, W, generator=g)
    y = torch.zeros(n)
    y[:n_pos] = 1.0
    return x, y


def disc_masks(n: int = N, n_pos: int = 3, r: float = 4.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    m = torch.zeros(n, H, W, dtype=torch.bool)
    for i in range(n_pos):
        cy, cx = 5 + 3 * i, 6 + 4 * i
        m[i] = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return m


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- beta


def test_sample_beta_distribution_and_reproducibility() -> None:
    for a in (0.4, 1.0, 3.0):
        s = sample_beta(a, 4000, gen(0)).numpy()
        assert stats.kstest(s, stats.beta(a, a).cdf).pvalue > 1e-3
        assert np.all((s >= 0) & (s <= 1))
    assert torch.equal(sample_beta(0.4, 5, gen(1)), sample_beta(0.4, 5, gen(1)))
    assert not torch.equal(sample_beta(0.4, 5, gen(1)), sample_beta(0.4, 5, gen(2)))


# --------------------------------------------------------------------------- mixup


def test_mixup_is_the_convex_combination() -> None:
    x, y = batch()
    y[5] = 0.3  # soft binary labels are allowed
    mix = MixUp(alpha=0.4)
    for s in range(5):
        p = mix.draw(N, H, W, gen(s))
        xm, ym = mix.apply(x, y, p)
        lam = float(p.lam[0])
        assert torch.all(p.lam == lam)  # one lambda per batch
        assert sorted(p.perm.tolist()) == list(range(N))
        assert torch.allclose(xm, lam * x + (1 - lam) * x[p.perm], atol=1e-6)
        assert torch.allclose(ym, lam * y + (1 - lam) * y[p.perm], atol=1e-6)
        assert ym.shape == (N,) and ym.dtype == torch.float32


def test_mixup_call_equals_draw_then_apply_and_determinism() -> None:
    x, y = batch()
    mix = MixUp()
    p = mix.draw(N, H, W, gen(7))
    a = mix.apply(x, y, p)
    b = mix(x, y, generator=gen(7))
    c = mix(x, y, generator=gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # Without a generator the mixer's own seeded one is used: same seed, same stream.
    assert torch.equal(MixUp(seed=3)(x, y)[0], MixUp(seed=3)(x, y)[0])
    assert not torch.equal(MixUp(seed=3)(x, y)[0], MixUp(seed=4)(x, y)[0])


def test_mixup_multiclass_rows_sum_to_one() -> None:
    x, _ = batch()
    y = torch.arange(N) % 4
    mix = MixUp(alpha=1.0, num_classes=4)
    p = mix.draw(N, H, W, gen(0))
    _, ym = mix.apply(x, y, p)
    assert ym.shape == (N, 4)
    assert torch.allclose(ym.sum(1), torch.ones(N))
    oh = torch.nn.functional.one_hot(y, 4).float()
    lam = float(p.lam[0])
    assert torch.allclose(ym, lam * oh + (1 - lam) * oh[p.perm], atol=1e-6)
    # Soft (N, C) labels pass through too.
    _, ym2 = mix.apply(x, oh, p)
    assert torch.allclose(ym, ym2)


def test_label_validation() -> None:
    x, y = batch()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        MixUp()(x, y * 3, generator=gen(0))
    with pytest.raises(ValueError, match="class ids"):
        MixUp(num_classes=3)(x, torch.full((N,), 5), generator=gen(0))
    with pytest.raises(ValueError, match="labels"):
        MixUp()(x, y[:3], generator=gen(0))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        MixUp()(x[0], y, generator=gen(0))
    with pytest.raises(TypeError, match="torch.Generator"):
        MixUp()(x, y, generator=1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- cutmix


def test_cutmix_label_is_the_pasted_area_fraction() -> None:
    x, y = batch()
    mix = CutMix(alpha=1.0)
    seen_clipped = False
    for s in range(30):
        p = mix.draw(N, H, W, gen(s))
        xm, ym = mix.apply(x, y, p)
        perm = p.perm
        changed = (xm != x).any(dim=1)  # (N, H, W) pixels that came from the partner
        for i in range(N):
            if int(perm[i]) == i:
                assert torch.equal(xm[i], x[i])
                continue
            frac = float(changed[i].float().mean())
            assert torch.equal(xm[i][:, changed[i]], x[perm[i]][:, changed[i]])
            expected = (1 - frac) * float(y[i]) + frac * float(y[perm[i]])
            assert abs(float(ym[i]) - expected) < 1e-6
        y0, x0, y1, x1 = p.boxes[0].tolist()
        box_area = (y1 - y0) * (x1 - x0)
        nominal = int(H * np.sqrt(float(1 - sample_beta(1.0, 1, gen(s))[0]))) * int(
            W * np.sqrt(float(1 - sample_beta(1.0, 1, gen(s))[0]))
        )
        seen_clipped |= box_area < nominal
    assert seen_clipped  # the frame clipped some boxes and labels followed the actual area


def test_cutmix_multiclass_sums_to_one() -> None:
    x, _ = batch()
    y = torch.arange(N) % 3
    mix = CutMix(num_classes=3)
    _, ym = mix(x, y, generator=gen(1))
    assert ym.shape == (N, 3)
    assert torch.allclose(ym.sum(1), torch.ones(N))


# --------------------------------------------------------------------------- minority mixup


def test_minority_mixup_follows_remix_rule() -> None:
    x, y = batch(n_pos=4)
    mix = MinorityMixUp(alpha=1.0, kappa=3.0, tau=0.5, class_counts=(90, 10))
    both = set()
    for s in range(20):
        p = mix.draw(N, H, W, gen(s), labels=y.long())
        xm, ym = mix.apply(x, y, p)
        for i in range(N):
            if y[i] == 0:  # majority: unchanged
                assert torch.equal(xm[i], x[i]) and float(ym[i]) == 0.0
                continue
            j = int(p.perm[i])
            assert y[j] == 0  # partner from the majority
            lam = float(p.lam[i])
            assert torch.allclose(xm[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)
            # 90 / 10 = 9 >= kappa: full minority label when the partner's share < tau.
            if 1 - lam < 0.5:
                assert float(ym[i]) == 1.0
                both.add("full")
            else:
                assert abs(float(ym[i]) - lam) < 1e-6
                both.add("mixed")
    assert both == {"full", "mixed"}


def test_minority_mixup_kappa_above_ratio_gives_plain_mixup_labels() -> None:
    x, y = batch(n_pos=4)
    mix = MinorityMixUp(kappa=10.0, class_counts=(90, 10))  # ratio 9 < kappa
    p = mix.draw(N, H, W, gen(0), labels=y.long())
    _, ym = mix.apply(x, y, p)
    assert torch.allclose(ym[:4], p.lam[:4].float(), atol=1e-6)


def test_minority_mixup_balanced_counts_change_nothing_and_call_works() -> None:
    x, y = batch(n_pos=6)
    xm, ym = MinorityMixUp(class_counts=(50, 50))(x, y, generator=gen(0))
    assert torch.equal(xm, x) and torch.equal(ym, y)
    # Counts from the batch when none are given: 3 positives vs 9 negatives.
    x, y = batch(n_pos=3)
    xm, _ = MinorityMixUp()(x, y, generator=gen(0))
    assert not torch.equal(xm[:3], x[:3]) and torch.equal(xm[3:], x[3:])


def test_minority_mixup_multiclass() -> None:
    x, _ = batch()
    y = torch.tensor([0] * 8 + [1] * 3 + [2])
    mix = MinorityMixUp(class_counts=(800, 100, 10), num_classes=3)
    xm, ym = mix(x, y, generator=gen(0))
    assert ym.shape == (N, 3) and torch.allclose(ym.sum(1), torch.ones(N))
    assert torch.equal(xm[:8], x[:8])  # the most frequent class is never mixed


# --------------------------------------------------------------------------- object cutmix


def test_object_cutmix_pastes_whole_object_with_label_one() -> None:
    x, y = batch()
    masks = disc_masks()
    mix = ObjectCutMix(p=1.0)
    for s in range(5):
        p = mix.draw(N, H, W, gen(s), masks=masks)
        xm, ym = mix.apply(x, y, p, masks=masks)
        assert bool(p.active.all())
        for i in range(N):
            j = int(p.src[i])
            assert j != i and masks[j].any()
            y0, x0, y1, x1 = p.src_box[i].tolist()
            ty, tx = p.dst[i].tolist()
            assert 0 <= ty and ty + (y1 - y0) <= H and 0 <= tx and tx + (x1 - x0) <= W
            # Every object pixel of j is present, shifted, in the mixed image.
            oy, ox = torch.nonzero(masks[j], as_tuple=True)
            assert torch.equal(xm[i][:, oy - y0 + ty, ox - x0 + tx], x[j][:, oy, ox])
            if y[i] == 0:
                assert float(ym[i]) == 1.0  # object fully pasted: presence label 1


def test_object_cutmix_label_is_the_pasted_object_fraction() -> None:
    x, y = batch()
    masks = disc_masks(r=6.0)
    mix = ObjectCutMix(p=1.0, max_area=0.06)  # box capped: objects only partly pasted
    fracs = []
    for s in range(5):
        p = mix.draw(N, H, W, gen(s), masks=masks)
        xm, ym = mix.apply(x, y, p, masks=masks)
        for i in range(3, N):  # negative targets: label = pasted fraction of j's object
            j = int(p.src[i])
            y0, x0, _, _ = p.src_box[i].tolist()
            ty, tx = p.dst[i].tolist()
            oy, ox = torch.nonzero(masks[j], as_tuple=True)
            ny, nx = oy - y0 + ty, ox - x0 + tx
            ok = (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
            same = torch.zeros_like(ok)
            same[ok] = (xm[i][:, ny[ok], nx[ok]] == x[j][:, oy[ok], ox[ok]]).all(dim=0)
            frac = float(same.float().mean())
            assert abs(float(ym[i]) - frac) < 1e-6
            fracs.append(frac)
    assert 0 < min(fracs) and max(fracs) < 1


def test_object_cutmix_target_object_partly_covered() -> None:
    # A positive target whose own object is covered keeps max(pasted, remaining) presence.
    x, y = batch()
    masks = disc_masks()
    mix = ObjectCutMix(p=1.0)
    p = mix.draw(N, H, W, gen(0), masks=masks)
    _, ym = mix.apply(x, y, p, masks=masks)
    assert torch.all(ym <= 1.0) and torch.all(ym >= 0.0)
    assert torch.allclose(ym[:3], torch.ones(3))  # pasted objects are whole


def test_object_cutmix_needs_masks_and_handles_none_positive() -> None:
    x, y = batch()
    with pytest.raises(ConfigError, match="masks"):
        ObjectCutMix()(x, y, generator=gen(0))
    empty = torch.zeros(N, H, W, dtype=torch.bool)
    xm, ym = ObjectCutMix(p=1.0)(x, y, generator=gen(0), masks=empty)
    assert torch.equal(xm, x) and torch.equal(ym, y)
    with pytest.raises(ValueError, match="masks must be"):
        ObjectCutMix()(x, y, generator=gen(0), masks=empty[:, :5])


def test_object_cutmix_multiclass_sums_to_one() -> None:
    x, _ = batch()
    y = torch.tensor([1, 2, 1] + [0] * (N - 3))
    mix = ObjectCutMix(p=1.0, num_classes=3)
    _, ym = mix(x, y, generator=gen(0), masks=disc_masks())
    assert ym.shape == (N, 3) and torch.allclose(ym.sum(1), torch.ones(N))


def test_object_cutmix_p_zero_is_identity_and_determinism() -> None:
    x, y = batch()
    m = disc_masks()
    xm, ym = ObjectCutMix(p=0.0)(x, y, generator=gen(0), masks=m)
    assert torch.equal(xm, x) and torch.equal(ym, y)
    a = ObjectCutMix()(x, y, generator=gen(5), masks=m)
    b = ObjectCutMix()(x, y, generator=gen(5), masks=m)
    c = ObjectCutMix()(x, y, generator=gen(6), masks=m)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


# --------------------------------------------------------------------------- registry, params, pictures


@pytest.mark.parametrize(
    "name,cls,prior",
    [("mixup", MixUp, False), ("cutmix", CutMix, False), ("minority-mixup", MinorityMixUp, True),
     ("object-cutmix", ObjectCutMix, False)],
)
def test_registry_build(name: str, cls: type, prior: bool) -> None:
    rec = get_strategy(name)
    assert rec.family == "mixing" and rec.description and rec.reference
    assert rec.corrects_prior(rec.defaults()) is prior
    binary = rec.build(StrategyContext(class_counts=(90, 10), seed=1), **rec.defaults())
    assert isinstance(binary, cls) and binary.num_classes is None
    multi = rec.build(StrategyContext(class_counts=(50, 30, 20)), **rec.defaults())
    assert multi.num_classes == 3


@pytest.mark.parametrize(
    "text", ["mixup:alpha=0", "cutmix:alpha=-1", "minority-mixup:kappa=0.5", "minority-mixup:tau=2",
             "object-cutmix:p=1.5", "object-cutmix:max_area=0"],
)
def test_bad_params(text: str) -> None:
    with pytest.raises(ConfigError, match=text.split(":")[1].split("=")[0]):
        parse_strategies(text)


def test_global_rng_untouched() -> None:
    x, y = batch()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    for m in (MixUp(), CutMix(), MinorityMixUp(), ObjectCutMix()):
        m(x, y, generator=gen(0), masks=disc_masks())
    assert torch.equal(state, torch.get_rng_state())


def test_apply_on_params_object() -> None:
    x, y = batch()
    p = MixParams(lam=torch.ones(N, dtype=torch.float64), perm=torch.arange(N))
    xm, ym = MixUp().apply(x, y, p)
    assert torch.equal(xm, x) and torch.equal(ym, y)


@pytest.mark.parametrize("name", ["mixup", "cutmix", "minority-mixup", "object-cutmix"])
def test_strategy_examples(tmp_path, name: str) -> None:
    x, y = batch(n=6, n_pos=2)
    masks = disc_masks(n=6, n_pos=2)
    images = [x[i] for i in range(6)]
    path = strategy_examples(name, images, [masks[i] if i < 2 else None for i in range(6)],
                             y.long().tolist(), tmp_path / f"{name}.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 300
        assert np.asarray(im.convert("L")).std() > 10
