"""The mathematics of the imbalance losses (imbvision.strategies.losses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from imbvision.errors import ConfigError
from imbvision.strategies.losses import (
    ClassBalancedLoss,
    CrossEntropy,
    FocalLoss,
    LogitAdjustedLoss,
    WeightedCrossEntropy,
    balanced_alpha,
    ce_loss,
    class_balanced_weights,
    class_weight_vector,
    focal_loss,
    focal_loss_multiclass,
    logit_adjusted_loss,
    weighted_ce_loss,
)
from imbvision.strategies.registry import StrategyContext, get_strategy, list_strategies, parse_strategies

LOSSES = ("ce", "weighted-ce", "focal", "class-balanced", "logit-adjusted")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _binary(n: int = 64, soft: bool = False, dtype=torch.float64, seed: int = 0):
    g = _gen(seed)
    x = (torch.randn(n, generator=g, dtype=dtype) * 4).requires_grad_()
    t = torch.rand(n, generator=g, dtype=dtype) if soft else (torch.rand(n, generator=g) < 0.3).to(dtype)
    return x, t


def _multi(n: int = 64, c: int = 4, soft: bool = False, dtype=torch.float64, seed: int = 0):
    g = _gen(seed)
    x = (torch.randn(n, c, generator=g, dtype=dtype) * 4).requires_grad_()
    if soft:
        t = torch.softmax(torch.randn(n, c, generator=g, dtype=dtype) * 2, 1)
    else:
        t = torch.randint(0, c, (n,), generator=g)
    return x, t


def _grad(fn, x):
    x = x.detach().clone().requires_grad_()
    fn(x).backward()
    return x.grad


# --------------------------------------------------------------------------- focal vs CE
@pytest.mark.parametrize("soft", [False, True])
def test_focal_gamma0_no_alpha_is_bce_values_and_gradients(soft):
    x, t = _binary(soft=soft)
    ours = focal_loss(x, t, alpha=None, gamma=0.0, reduction="none")
    ref = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g_ours = _grad(lambda z: focal_loss(z, t, alpha=None, gamma=0.0), x)
    g_ref = _grad(lambda z: F.binary_cross_entropy_with_logits(z, t), x)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("soft", [False, True])
def test_focal_gamma0_no_alpha_is_cross_entropy_multiclass(soft):
    x, t = _multi(soft=soft)
    ours = focal_loss_multiclass(x, t, alpha=None, gamma=0.0, reduction="none")
    ref = F.cross_entropy(x, t, reduction="none")  # torch takes soft (N, C) targets too
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g_ours = _grad(lambda z: focal_loss_multiclass(z, t, None, 0.0), x)
    g_ref = _grad(lambda z: F.cross_entropy(z, t), x)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)
    # the module and ce_loss agree with the same reference
    torch.testing.assert_close(CrossEntropy(reduction="none")(x, t), ref)
    torch.testing.assert_close(ce_loss(x, t, reduction="none"), ref)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("soft", [False, True])
def test_focal_never_exceeds_ce(gamma, soft):
    x, t = _binary(soft=soft)
    ce = ce_loss(x, t, reduction="none")
    assert torch.all(focal_loss(x, t, None, gamma, "none") <= ce + 1e-12)
    assert torch.all(focal_loss(x, t, 0.25, gamma, "none") <= ce + 1e-12)
    # and strictly below on some samples (gamma does something)
    assert torch.any(focal_loss(x, t, None, gamma, "none") < ce - 1e-6)
    xm, tm = _multi(soft=soft)
    cem = ce_loss(xm, tm, reduction="none")
    fm = focal_loss_multiclass(xm, tm, None, gamma, "none")
    assert torch.all(fm <= cem + 1e-12) and torch.any(fm < cem - 1e-6)


@pytest.mark.parametrize("alpha", [None, 0.0, 0.25, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
def test_binary_focal_matches_torchvision(alpha, gamma):
    x, t = _binary(n=200)
    tv_alpha = -1 if alpha is None else alpha  # torchvision's "off" switch
    ref = sigmoid_focal_loss(x, t, alpha=tv_alpha, gamma=gamma, reduction="none")
    ours = focal_loss(x, t, alpha=alpha, gamma=gamma, reduction="none")
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        _grad(lambda z: focal_loss(z, t, alpha, gamma, "sum"), x),
        _grad(lambda z: sigmoid_focal_loss(z, t, tv_alpha, gamma, "sum"), x),
        rtol=1e-6,
        atol=1e-6,
    )
    # float32, the dtype training uses
    ours32 = FocalLoss(alpha, gamma, reduction="none")(x.float(), t.float())
    torch.testing.assert_close(ours32, ref.float(), rtol=1e-5, atol=1e-6)


def test_focal_is_linear_in_soft_targets():
    """Mixup: the loss of lam*y1 + (1-lam)*y2 is lam*L(y1) + (1-lam)*L(y2)."""
    x, _ = _binary(n=100)
    lam = torch.rand(100, generator=_gen(3), dtype=torch.float64)
    pos, neg = torch.ones_like(lam), torch.zeros_like(lam)
    f = lambda t: focal_loss(x, t, 0.3, 2.0, "none")  # noqa: E731
    torch.testing.assert_close(f(lam), lam * f(pos) + (1 - lam) * f(neg))
    xm, _ = _multi(n=50, c=3)
    y1, y2 = F.one_hot(torch.arange(50) % 3, 3).double(), F.one_hot((torch.arange(50) + 1) % 3, 3).double()
    lm = lam[:50, None]
    a = torch.tensor([0.2, 0.3, 0.5])
    fm = lambda t: focal_loss_multiclass(xm, t, a, 2.0, "none")  # noqa: E731
    torch.testing.assert_close(fm(lm * y1 + (1 - lm) * y2), lm[:, 0] * fm(y1) + (1 - lm[:, 0]) * fm(y2))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_one_logit_equals_two_class_softmax(gamma):
    """sigmoid(x) is softmax([0, x]); every loss must agree between the two forms."""
    x, t = _binary(n=80)
    x2 = torch.stack([torch.zeros_like(x), x], 1)
    torch.testing.assert_close(
        focal_loss(x, t, 0.3, gamma, "none"), focal_loss(x2, t.long(), 0.3, gamma, "none"), rtol=1e-9, atol=1e-9
    )
    w = torch.tensor([0.7, 3.0])
    torch.testing.assert_close(ce_loss(x, t, w, "none"), ce_loss(x2, t.long(), w, "none"))
    torch.testing.assert_close(
        logit_adjusted_loss(x, t, [0.9, 0.1], 1.5, "none"), logit_adjusted_loss(x2, t.long(), [0.9, 0.1], 1.5, "none")
    )


# --------------------------------------------------------------------------- per-class alpha
def test_scalar_alpha_only_rescales_but_vector_alpha_reweights_classes():
    """The seed's FocalLoss multiplies a multi-class loss by one scalar alpha.

    That is a constant factor: the gradient direction is unchanged, so the
    class balance is untouched. A per-class vector scales each sample's
    gradient by the alpha of its class and changes the direction.
    """
    x, t = _multi(n=90, c=3, seed=5)
    base = _grad(lambda z: focal_loss_multiclass(z, t, None, 2.0), x)

    seed_style = _grad(lambda z: 0.25 * focal_loss_multiclass(z, t, None, 2.0), x)  # the seed's formula
    torch.testing.assert_close(seed_style, 0.25 * base)
    cos_scalar = F.cosine_similarity(seed_style.reshape(1, -1), base.reshape(1, -1)).item()
    assert cos_scalar == pytest.approx(1.0, abs=1e-12)

    alpha = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    vec = _grad(lambda z: focal_loss_multiclass(z, t, alpha, 2.0), x)
    # each sample's gradient row is scaled by alpha of its own class
    torch.testing.assert_close(vec, alpha[t][:, None] * base)
    cos_vec = F.cosine_similarity(vec.reshape(1, -1), base.reshape(1, -1)).item()
    assert cos_vec < 0.99
    # relative weight of class 2 vs class 0 went from 1 to 2.5
    norm = vec.norm(dim=1) / base.norm(dim=1)
    assert norm[t == 2].mean() / norm[t == 0].mean() == pytest.approx(2.5)


def test_scalar_alpha_refused_for_more_than_two_classes():
    x, t = _multi(c=3)
    with pytest.raises(ConfigError, match="only rescales"):
        focal_loss_multiclass(x, t, 0.25)
    with pytest.raises(ConfigError, match="only rescales"):
        FocalLoss(alpha=0.25)(x, t)
    with pytest.raises(ConfigError, match="alpha_mode=balanced"):
        get_strategy("focal").build(StrategyContext((80, 15, 5)), gamma=2.0, alpha=0.25, alpha_mode="scalar")
    loss = get_strategy("focal").build(StrategyContext((80, 15, 5)), gamma=2.0, alpha=0.25, alpha_mode="balanced")
    inv = np.array([1 / 80, 1 / 15, 1 / 5])
    np.testing.assert_allclose(loss.alpha.numpy(), inv / inv.sum(), rtol=1e-6)
    assert torch.isfinite(loss(x.float(), t))


def test_focal_module_with_alpha_vector_matches_function():
    x, t = _multi(c=3)
    a = torch.tensor([0.2, 0.3, 0.5])
    m = FocalLoss(alpha=a, gamma=2)
    assert "alpha" in dict(m.named_buffers())
    torch.testing.assert_close(m(x, t), focal_loss_multiclass(x, t, a.double(), 2.0))
    assert m.double().alpha.dtype == torch.float64  # buffers follow the module
    binary = FocalLoss(alpha=0.25)
    torch.testing.assert_close(binary.alpha, torch.tensor([0.75, 0.25]))  # [neg, pos]
    assert "alpha=0.25" in repr(binary)
    np.testing.assert_allclose(balanced_alpha([900, 100]), [0.1, 0.9])


# --------------------------------------------------------------------------- stability
def _extreme(binary: bool, soft: bool):
    if binary:
        x = torch.tensor([100.0, -100.0, 100.0, -100.0, 0.0, 50.0])
        t = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0]) if not soft else torch.tensor([0.3, 0.7, 1.0, 0.0, 0.5, 0.2])
    else:
        x = torch.tensor([[100.0, -100.0, 0.0], [-100.0, 100.0, -100.0], [100.0, 100.0, -100.0], [-100.0, -100.0, 100.0]])
        t = torch.tensor([1, 0, 2, 2]) if not soft else torch.tensor(
            [[0.5, 0.5, 0.0], [0.2, 0.0, 0.8], [0.0, 0.3, 0.7], [1.0, 0.0, 0.0]]
        )
    return x.requires_grad_(), t


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("soft", [False, True])
def test_every_loss_finite_at_extreme_logits(name, binary, soft):
    counts = (900, 100) if binary else (800, 150, 50)
    rec = get_strategy(name)
    params = rec.defaults()
    if name == "focal":
        params.update(alpha_mode="balanced", gamma=0.5)  # fractional gamma: pow() would give inf gradients
    x, t = _extreme(binary, soft)
    loss = rec.build(StrategyContext(counts), **params)
    value = loss(x, t)
    value.backward()
    assert torch.isfinite(value), (name, value)
    assert torch.all(torch.isfinite(x.grad)), (name, x.grad)


@pytest.mark.parametrize("gamma", [0.0, 0.25, 2.0])
def test_focal_extreme_values_are_right(gamma):
    x = torch.tensor([100.0, -100.0, 100.0])
    t = torch.tensor([0.0, 1.0, 1.0])
    v = focal_loss(x, t, None, gamma, "none")
    torch.testing.assert_close(v, torch.tensor([100.0, 100.0, 0.0]))
    xm = torch.tensor([[100.0, -100.0], [-100.0, 100.0]], requires_grad=True)
    vm = focal_loss_multiclass(xm, torch.tensor([1, 1]), None, gamma, "none")
    torch.testing.assert_close(vm.detach(), torch.tensor([200.0, 0.0]))
    vm.sum().backward()
    assert torch.all(torch.isfinite(xm.grad))


def test_hard_target_dtype_does_not_matter():
    x, t = _binary(n=40)
    ref = focal_loss(x, t, 0.25, 2.0)
    for tt in (t.long(), t.int(), t.bool(), t.float(), t.reshape(-1, 1)):
        torch.testing.assert_close(focal_loss(x, tt, 0.25, 2.0), ref)
    torch.testing.assert_close(focal_loss(x.reshape(-1, 1), t, 0.25, 2.0), ref)


def test_reductions_agree():
    x, t = _binary(n=30)
    m = FocalLoss(0.25, 2.0, reduction="none")
    per = m(x, t)
    assert per.shape == (30,)
    torch.testing.assert_close(FocalLoss(0.25, 2.0, reduction="sum")(x, t), per.sum())
    torch.testing.assert_close(FocalLoss(0.25, 2.0)(x, t), per.mean())


def test_bad_targets_are_rejected():
    x = torch.zeros(4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ce_loss(x, torch.tensor([0.0, 2.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="does not match"):
        ce_loss(x, torch.zeros(5))
    with pytest.raises(ValueError, match="out of range"):
        ce_loss(torch.zeros(2, 3), torch.tensor([0, 3]))


# --------------------------------------------------------------------------- class weights
def test_weighted_ce_balanced_weights_are_n_over_k_nc():
    counts = (900, 100)
    np.testing.assert_allclose(class_weight_vector("balanced", counts), [1000 / (2 * 900), 1000 / (2 * 100)])
    np.testing.assert_allclose(class_weight_vector("balanced", (60, 30, 10)), [100 / 180, 100 / 90, 100 / 30])
    loss = get_strategy("weighted-ce").build(StrategyContext(counts), weights="balanced")
    np.testing.assert_allclose(loss.weight.numpy(), [1000 / 1800, 5.0], rtol=1e-6)
    # sqrt: w ∝ 1/sqrt(n_c) and the mean weight over the training samples is 1
    w = class_weight_vector("sqrt", counts)
    assert w[1] / w[0] == pytest.approx(3.0)
    assert (900 * w[0] + 100 * w[1]) / 1000 == pytest.approx(1.0)
    np.testing.assert_allclose(class_weight_vector(4.0, counts), [1.0, 4.0])


def test_weighted_ce_equals_bce_pos_weight():
    x, t = _binary(soft=True)
    ref = F.binary_cross_entropy_with_logits(x, t, pos_weight=torch.tensor(4.0, dtype=torch.float64))
    torch.testing.assert_close(weighted_ce_loss(x, t, 4.0), ref)
    torch.testing.assert_close(WeightedCrossEntropy(4.0)(x, t), ref)


def test_balanced_weights_put_the_constant_model_at_even_odds():
    """With n/(k n_c) weights the best constant logit is 0 (p = 1/2), not log(n1/n0)."""
    y = torch.cat([torch.zeros(900), torch.ones(100)]).double()
    b = torch.zeros(1000, dtype=torch.float64, requires_grad=True)
    WeightedCrossEntropy.from_counts((900, 100), "balanced")(b, y).backward()
    assert abs(b.grad.sum().item()) < 1e-6  # weights are a float32 buffer
    b.grad = None
    ce_loss(b, y).backward()
    assert b.grad.sum().item() == pytest.approx(0.5 - 0.1)  # CE pulls toward the prior


def test_class_balanced_weights_by_hand():
    # beta = 0.9, n = (100, 10): (1-b)/(1-b^n) = 0.1/(1 - 2.656e-5), 0.1/(1 - 0.3486784401)
    raw = np.array([0.1 / (1 - 0.9**100), 0.1 / 0.6513215599])
    np.testing.assert_allclose(raw, [0.10000266, 0.15353399], rtol=1e-6)
    np.testing.assert_allclose(class_balanced_weights((100, 10), 0.9), [0.78886154, 1.21113846], rtol=1e-6)
    assert class_balanced_weights((100, 10), 0.9).sum() == pytest.approx(2.0)
    assert class_balanced_weights((5, 50, 500), 0.99).sum() == pytest.approx(3.0)


def test_class_balanced_limits():
    np.testing.assert_allclose(class_balanced_weights((900, 100, 7), 0.0), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(class_balanced_weights((900, 100), 1e-9), [1.0, 1.0], rtol=1e-6)
    inv = np.array([1 / 900, 1 / 100])
    np.testing.assert_allclose(class_balanced_weights((900, 100), 1 - 1e-9), 2 * inv / inv.sum(), rtol=1e-5)


def test_class_balanced_loss_applies_weights():
    x, t = _binary(soft=True)
    cb = ClassBalancedLoss((100, 10), beta=0.9)
    w = torch.tensor(class_balanced_weights((100, 10), 0.9))
    torch.testing.assert_close(cb(x, t), ce_loss(x, t, w))
    cbf = ClassBalancedLoss((100, 10), beta=0.9, base="focal", gamma=2.0)
    torch.testing.assert_close(cbf(x, t), focal_loss(x, t, w, 2.0))


# --------------------------------------------------------------------------- logit adjustment
def test_logit_adjusted_tau0_is_ce():
    x, t = _binary(soft=True)
    torch.testing.assert_close(logit_adjusted_loss(x, t, [0.9, 0.1], 0.0), ce_loss(x, t))
    xm, tm = _multi()
    torch.testing.assert_close(LogitAdjustedLoss([0.5, 0.3, 0.15, 0.05], 0.0)(xm, tm), ce_loss(xm, tm))


def test_logit_adjusted_shifts_by_tau_log_prior():
    x, t = _multi(c=3)
    prior = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    torch.testing.assert_close(
        logit_adjusted_loss(x, t, prior, 2.0), F.cross_entropy(x + 2.0 * prior.log(), t)
    )


def test_logit_adjusted_optimum_is_the_balanced_logit():
    """A constant model minimising LA (tau=1) sits at logit 0; CE sits at log(pi1/pi0)."""
    y = torch.cat([torch.zeros(900), torch.ones(100)]).double()
    la = LogitAdjustedLoss.from_counts((900, 100), tau=1.0)
    b = torch.zeros(1000, dtype=torch.float64, requires_grad=True)
    la(b, y).backward()
    assert abs(b.grad.sum().item()) < 1e-6  # log-prior is a float32 buffer
    b2 = torch.full((1000,), math.log(0.1 / 0.9), dtype=torch.float64, requires_grad=True)
    ce_loss(b2, y).backward()
    assert abs(b2.grad.sum().item()) < 1e-12


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "make, text",
    [
        (lambda: FocalLoss(gamma=-1.0), r"gamma=-1.0 .*\[0, inf\)"),
        (lambda: FocalLoss(alpha=1.5), r"alpha=1.5 .*\[0, 1\]"),
        (lambda: FocalLoss(alpha=-0.1), r"alpha=-0.1 .*\[0, 1\]"),
        (lambda: FocalLoss(alpha=torch.tensor([0.5, -1.0])), r"non-negative"),
        (lambda: ClassBalancedLoss((9, 1), beta=1.0), r"beta=1.0 .*\[0, 1\)"),
        (lambda: ClassBalancedLoss((9, 1), beta=-0.5), r"beta=-0.5 .*\[0, 1\)"),
        (lambda: ClassBalancedLoss((9, 1), base="dice"), r"base='dice'.*ce, focal"),
        (lambda: LogitAdjustedLoss([0.9, 0.1], tau=-1.0), r"tau=-1.0 .*\[0, inf\)"),
        (lambda: LogitAdjustedLoss([1.0, 0.0]), r"positive"),
        (lambda: class_weight_vector("inverse", (9, 1)), r"'inverse'.*balanced, sqrt"),
        (lambda: class_weight_vector(-2.0, (9, 1)), r"balanced, sqrt, a positive number"),
        (lambda: class_weight_vector(3.0, (8, 1, 1)), r"pos_weight.*3 classes"),
        (lambda: WeightedCrossEntropy(0.0), r"pos_weight=0.0"),
        (lambda: CrossEntropy(reduction="avg"), r"reduction='avg'.*mean, sum, none"),
        (lambda: focal_loss(torch.zeros(3), torch.zeros(3), gamma=float("nan")), r"gamma=nan"),
    ],
)
def test_invalid_params_raise_config_error_with_range(make, text):
    with pytest.raises(ConfigError, match=text):
        make()


@pytest.mark.parametrize(
    "strategy, text",
    [
        ("focal:gamma=-1", r"gamma.*\[0, inf\]"),
        ("focal:alpha=2", r"alpha.*\[0, 1\] or none"),
        ("focal:alpha_mode=inverse", r"scalar, balanced"),
        ("weighted-ce:weights=cube", r"balanced, sqrt"),
        ("weighted-ce:weights=-3", r"balanced, sqrt"),
        ("logit-adjusted:tau=-2", r"tau"),
    ],
)
def test_invalid_strategy_strings_raise(strategy, text):
    with pytest.raises(ConfigError, match=text):
        parse_strategies(strategy)


def test_class_balanced_beta_one_refused_at_build():
    # One resolver (the record's Param) for the registry and the constructor: beta=1 is refused
    # already when the strategy string is parsed, with the same range the constructor states.
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        parse_strategies("class-balanced:beta=1")
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        ClassBalancedLoss((90, 10), beta=1.0)


# --------------------------------------------------------------------------- registry
def test_registry_records():
    recs = {r.name: r for r in list_strategies("loss")}
    assert set(LOSSES) <= set(recs)
    ctx = StrategyContext((900, 100))
    for name in LOSSES:
        rec = recs[name]
        assert rec.description and rec.reference
        assert isinstance(rec.build(ctx, **rec.defaults()), torch.nn.Module)
    cp = lambda n, **p: recs[n].corrects_prior({**recs[n].defaults(), **p})  # noqa: E731
    assert not cp("ce")
    assert cp("weighted-ce") and cp("class-balanced") and cp("logit-adjusted")
    assert cp("focal") and cp("focal", alpha=None, alpha_mode="balanced")
    assert not cp("focal", alpha=None) and not cp("focal", alpha=0.5)
    assert not cp("logit-adjusted", tau=0.0) and not cp("class-balanced", beta=0.0)
    (spec,) = parse_strategies("focal:gamma=1.5,alpha=none")
    built = spec.build(ctx)
    assert built.alpha is None and built.gamma == 1.5
