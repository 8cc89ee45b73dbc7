"""Classifier heads on embeddings (imbvision.strategies.heads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from sklearn.datasets import make_classification
from sklearn.metrics import average_precision_score

from imbvision.errors import ConfigError, DataError
from imbvision.strategies.heads import LinearHead, LogRegHead, MLPHead, head_from_arrays
from imbvision.strategies.losses import ClassBalancedLoss, FocalLoss, WeightedCrossEntropy
from imbvision.strategies.registry import StrategyContext, get_strategy, list_strategies, parse_strategies

HEADS = ("logreg", "linear", "mlp")
# logreg with weak L2 here: the weight and intercept identities below hold at the (near) unpenalised optimum.
FAST = {"logreg": {"C": 1.0}, "linear": {"epochs": 100}, "mlp": {"epochs": 60, "hidden": 32}}


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=700, n_features=24, n_informative=6, n_redundant=4, weights=[0.9, 0.1],
        class_sep=1.2, flip_y=0.0, random_state=3,
    )
    X = (X * 3.0 + 5.0).astype(np.float32)  # unstandardised on purpose: the head must scale
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    tr, te = idx[:450], idx[450:]
    return X[tr], y[tr], X[te], y[te]


def _make(name: str, **extra):
    rec = get_strategy(name)
    params = {**rec.defaults(), **FAST[name], **extra}
    return rec.build(StrategyContext((400, 50), seed=0), **params)


@pytest.mark.parametrize("name", HEADS)
def test_each_head_finds_the_minority(name, data):
    Xtr, ytr, Xte, yte = data
    head = _make(name).fit(Xtr, ytr)
    p = head.predict_proba(Xte)
    assert p.shape == (len(yte),) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    ap = average_precision_score(yte, p)
    assert ap > 0.8, (name, ap)
    z = head.decision_function(Xte)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z)), rtol=1e-12)


def test_defaults_reach_the_same_quality(data):
    """Registry defaults (200 epochs, 256 hidden) also work."""
    Xtr, ytr, Xte, yte = data
    head = get_strategy("mlp").build(StrategyContext((400, 50)), **get_strategy("mlp").defaults())
    assert average_precision_score(yte, head.fit(Xtr, ytr, loss=FocalLoss(0.25, 2.0)).predict_proba(Xte)) > 0.8


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_torch_heads_are_deterministic_and_leave_global_rng_alone(name, data):
    Xtr, ytr, Xte, _ = data
    state = torch.random.get_rng_state()
    a = _make(name).fit(Xtr, ytr, seed=7).predict_proba(Xte)
    b = _make(name).fit(Xtr, ytr, seed=7).predict_proba(Xte)
    assert np.array_equal(a, b)
    c = _make(name).fit(Xtr, ytr, seed=8).predict_proba(Xte)
    assert not np.array_equal(a, c)  # the seed is actually used
    assert torch.equal(state, torch.random.get_rng_state())


def test_logreg_is_deterministic(data):
    Xtr, ytr, Xte, _ = data
    assert np.array_equal(_make("logreg").fit(Xtr, ytr).predict_proba(Xte), _make("logreg").fit(Xtr, ytr).predict_proba(Xte))


@pytest.mark.parametrize("name", HEADS)
def test_arrays_round_trip_through_safetensors(name, data, tmp_path):
    Xtr, ytr, Xte, _ = data
    head = _make(name).fit(Xtr, ytr)
    arrays = head.to_arrays()
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    save_file(arrays, str(tmp_path / "head.safetensors"))
    (tmp_path / "head.json").write_text(json.dumps(head.get_config()))
    back = head_from_arrays(load_file(str(tmp_path / "head.safetensors")), json.loads((tmp_path / "head.json").read_text()))
    assert type(back) is type(head)
    assert np.array_equal(back.predict_proba(Xte), head.predict_proba(Xte))
    assert np.array_equal(type(head).from_arrays(head.state_dict(), head.get_config()).decision_function(Xte),
                          head.decision_function(Xte))


def test_logreg_arrays_are_its_coefficients(data):
    Xtr, ytr, Xte, _ = data
    head = _make("logreg").fit(Xtr, ytr)
    a = head.to_arrays()
    # scaler.low / scaler.high: each standardised feature is clipped to its training range (issue 12 §3)
    assert set(a) == {"coef", "intercept", "scaler.mean", "scaler.scale", "scaler.low", "scaler.high"}
    zs = np.clip((Xte - a["scaler.mean"]) / a["scaler.scale"], a["scaler.low"], a["scaler.high"])
    z = zs @ a["coef"][0] + a["intercept"][0]
    np.testing.assert_allclose(head.decision_function(Xte), z, rtol=1e-10)


def test_logreg_refuses_losses_it_cannot_minimise(data):
    Xtr, ytr, _, _ = data
    head = LogRegHead()
    assert LogRegHead.supports("ce") and LogRegHead.supports("weighted-ce") and LogRegHead.supports("class-balanced")
    assert not LogRegHead.supports("focal") and not LogRegHead.supports("logit-adjusted")
    with pytest.raises(ConfigError, match="use head linear or mlp for loss focal"):
        head.fit(Xtr, ytr, loss=FocalLoss(), loss_name="focal")
    with pytest.raises(ConfigError, match="use head linear or mlp for loss focal"):
        head.fit(Xtr, ytr, loss_name="focal")
    with pytest.raises(ConfigError, match="use head linear or mlp"):
        head.fit(Xtr, ytr, loss=ClassBalancedLoss((400, 50), base="focal"), loss_name="class-balanced")
    with pytest.raises(ConfigError, match="use head linear or mlp"):
        head.fit(Xtr, ytr, loss=FocalLoss(), loss_name="ce")  # the module decides, not the name


@pytest.fixture(scope="module")
def overlap():
    """Two overlapping Gaussian classes (15 % positives): re-weighting moves the logit by log(weight)."""
    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.15).astype(np.int64)
    X = (rng.normal(size=(600, 8)) + y[:, None] * np.array([1.0, 0.5, 0, 0, 0, 0, 0, 0])).astype(np.float32)
    return X, y, rng.normal(size=(200, 8)).astype(np.float32)


def _shift(name, overlap, **fit):
    X, y, Xe = overlap
    z0 = _make(name).fit(X, y).decision_function(Xe)
    return float(np.median(_make(name).fit(X, y, **fit).decision_function(Xe) - z0))


def test_logreg_class_weights_shift_the_logit_by_log_weight_ratio(overlap):
    X, y, _ = overlap
    n0, n1 = np.bincount(y)
    # balanced weights n/(2 n_c): ratio n0/n1, so the logit moves by log(n0/n1)
    assert _shift("logreg", overlap, loss=WeightedCrossEntropy.from_counts((n0, n1)), loss_name="weighted-ce") == (
        pytest.approx(np.log(n0 / n1), abs=0.15)
    )
    assert _shift("logreg", overlap, loss_name="weighted-ce") == pytest.approx(np.log(n0 / n1), abs=0.15)
    cb = ClassBalancedLoss((n0, n1), beta=0.99)
    w = cb.weight.numpy()
    assert _shift("logreg", overlap, loss=cb, loss_name="class-balanced") == pytest.approx(np.log(w[1] / w[0]), abs=0.15)


@pytest.mark.parametrize("name", HEADS)
def test_sample_weight_shifts_the_logit(name, overlap):
    _, y, _ = overlap
    s = _shift(name, overlap, sample_weight=np.where(y == 1, 8.0, 1.0))
    if name == "logreg":
        assert s == pytest.approx(np.log(8.0), abs=0.15)
    else:  # torch heads stop before full convergence; direction and size still clear
        assert s > 1.0


def test_logreg_soft_labels_keep_the_intercept_calibrated(data):
    """At the log-loss optimum the unpenalised intercept makes mean(p) = mean(y), soft y included."""
    Xtr, ytr, _, _ = data
    rng = np.random.default_rng(1)
    lam = rng.uniform(0.5, 1.0, len(ytr))
    soft = lam * ytr + (1 - lam) * ytr[rng.permutation(len(ytr))]  # mixup-style targets
    assert not np.all(np.isin(soft, (0.0, 1.0)))
    head = LogRegHead(C=0.1).fit(Xtr, soft)
    assert head.predict_proba(Xtr).mean() == pytest.approx(soft.mean(), abs=1e-4)
    # hard labels given as floats are the hard fit
    np.testing.assert_array_equal(
        LogRegHead().fit(Xtr, ytr.astype(float)).predict_proba(Xtr), LogRegHead().fit(Xtr, ytr).predict_proba(Xtr)
    )


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_torch_heads_take_soft_labels(name, data):
    Xtr, ytr, Xte, yte = data
    soft = np.clip(ytr * 0.9 + 0.05, 0, 1)  # label smoothing: all targets soft
    p = _make(name).fit(Xtr, soft).predict_proba(Xte)
    assert np.all(np.isfinite(p)) and average_precision_score(yte, p) > 0.8
    # targets of exactly 0.5 carry no information: the head must end near p = 0.5
    # (rounding them to hard labels would drive every score to 0 or 1)
    half = _make(name).fit(Xtr, np.full(len(ytr), 0.5)).predict_proba(Xte)
    assert np.abs(half - 0.5).max() < 0.05


class _EveryOtherPositive:
    """A stand-in sampler: half of every epoch's draws are positives."""

    def __init__(self) -> None:
        self.seeds: list[int] = []

    def make(self, labels, *, num_samples=None, seed=0):
        self.seeds.append(seed)
        g = torch.Generator().manual_seed(seed)
        labels = torch.as_tensor(labels)
        pos, neg = torch.nonzero(labels == 1)[:, 0], torch.nonzero(labels == 0)[:, 0]
        n = len(labels) if num_samples is None else num_samples
        pick = torch.where(
            torch.arange(n) % 2 == 0,
            pos[torch.randint(len(pos), (n,), generator=g)],
            neg[torch.randint(len(neg), (n,), generator=g)],
        )
        return pick.tolist()


@pytest.mark.parametrize("name", HEADS)
def test_sampler_shifts_the_logit(name, overlap):
    X, y, Xe = overlap
    n0, n1 = np.bincount(y)
    sampler = _EveryOtherPositive()
    s = _shift(name, overlap, sampler=sampler, seed=3)
    assert sampler.seeds, "sampler was never used"
    if name == "logreg":  # half the draws positive: odds move by n0/n1
        assert s == pytest.approx(np.log(n0 / n1), abs=0.3)
    else:
        assert s > 1.0
    a = _make(name).fit(X, y, sampler=_EveryOtherPositive(), seed=3).predict_proba(Xe)
    assert np.array_equal(a, _make(name).fit(X, y, sampler=_EveryOtherPositive(), seed=3).predict_proba(Xe))


@pytest.mark.parametrize("name", HEADS)
def test_multiclass(name):
    X, y = make_classification(n_samples=450, n_features=12, n_informative=6, n_classes=3, n_clusters_per_class=1,
                               weights=[0.7, 0.2, 0.1], class_sep=2.0, random_state=0)
    head = get_strategy(name).build(StrategyContext(tuple(np.bincount(y[:300]))), **{**get_strategy(name).defaults(), **FAST[name]})
    head.fit(X[:300], y[:300])
    p = head.predict_proba(X[300:])
    assert p.shape == (150, 3)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert (p.argmax(1) == y[300:]).mean() > 0.8
    back = head_from_arrays(head.to_arrays(), head.get_config())
    assert np.array_equal(back.predict_proba(X[300:]), p)


def test_torch_head_with_per_class_focal_alpha():
    X, y = make_classification(n_samples=400, n_features=10, n_informative=5, n_classes=3, n_clusters_per_class=1,
                               weights=[0.7, 0.2, 0.1], class_sep=2.0, random_state=1)
    loss = FocalLoss(alpha=torch.tensor([0.2, 0.3, 0.5]), gamma=2.0)
    p = LinearHead(epochs=60).fit(X, y, loss=loss).predict_proba(X)
    assert (p.argmax(1) == y).mean() > 0.8


@pytest.mark.parametrize(
    "make, text",
    [
        (lambda: LogRegHead(C=0), r"C=0 .*\(0, inf\)"),
        (lambda: LinearHead(lr=-1), r"lr=-1 .*\(0, inf\)"),
        (lambda: LinearHead(epochs=0), r"epochs=0 .*\[1, inf\)"),
        (lambda: MLPHead(dropout=1.0), r"dropout=1.0 .*\[0, 1\)"),
        (lambda: MLPHead(weight_decay=-0.1), r"weight_decay=-0.1 .*\[0, inf\)"),
        (lambda: parse_strategies("mlp:hidden=0"), r"hidden"),
        (lambda: parse_strategies("logreg:C=-1"), r"\(0, inf\]"),
    ],
)
def test_invalid_head_params(make, text):
    with pytest.raises(ConfigError, match=text):
        make()


def test_bad_inputs(data):
    Xtr, ytr, _, _ = data
    with pytest.raises(DataError, match="labels"):
        LinearHead().fit(Xtr, ytr[:-1])
    with pytest.raises(DataError, match="NaN"):
        LogRegHead().fit(np.full_like(Xtr, np.nan), ytr)
    head = LogRegHead().fit(Xtr, ytr)
    with pytest.raises(DataError, match="dimensions"):
        head.predict_proba(Xtr[:, :5])
    with pytest.raises(ConfigError, match="not fitted"):
        MLPHead().predict_proba(Xtr)


def test_registry_heads():
    recs = {r.name: r for r in list_strategies("head")}
    assert set(HEADS) <= set(recs)
    for name in HEADS:
        head = recs[name].build(StrategyContext((9, 1), seed=4), **recs[name].defaults())
        assert head.num_classes == 2 and head.seed == 4
        assert not recs[name].corrects_prior(recs[name].defaults())
