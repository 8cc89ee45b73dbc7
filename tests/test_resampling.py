"""Tests for the imbalanced-learn resamplers on embeddings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification

from imbvision.errors import ConfigError, DataError
from imbvision.strategies.registry import StrategyContext, get_strategy, list_strategies, parse_strategies
from imbvision.strategies.resampling import ResampleFallbackWarning, Resampler, ResampleResult

# What the records must declare (the package keeps no name lists; training code asks each record).
SELECTION_METHODS = ("random-over", "random-under", "tomek", "enn")
GENERATING_METHODS = ("smote", "adasyn", "smote-tomek")
RESAMPLERS = SELECTION_METHODS + GENERATING_METHODS


def test_records_declare_which_methods_generate_samples():
    for name in RESAMPLERS:
        rec = get_strategy(name)
        assert rec.generates_samples is (name in GENERATING_METHODS)
        assert ("finetune" in rec.modes) is (name in SELECTION_METHODS)
        assert rec.needs_embeddings is (name in ("tomek", "enn"))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=300, n_features=8, n_informative=4, weights=[0.9], flip_y=0.03, class_sep=0.8, random_state=0
    )
    return X.astype(np.float32), y


def _r(name: str, seed: int = 0, **params) -> Resampler:
    rec = get_strategy(name)
    return rec.build(StrategyContext(seed=seed), **{**rec.defaults(), **params})


def _check_mapping(res: ResampleResult, X: np.ndarray, y: np.ndarray) -> None:
    assert res.index.dtype == np.int64 and res.synthetic.dtype == bool
    assert len(res.X) == len(res.y) == len(res.index) == len(res.synthetic) == len(res)
    real = ~res.synthetic
    assert np.array_equal(real, res.index >= 0)
    assert np.array_equal(res.X[real], X[res.index[real]])
    assert np.array_equal(res.y[real], y[res.index[real]])
    assert res.X.dtype == X.dtype


def test_all_seven_registered():
    names = {r.name for r in list_strategies("resampler")}
    assert set(RESAMPLERS) <= names and len(RESAMPLERS) == 7
    for name in RESAMPLERS:
        r = _r(name)
        assert r.generates_samples is (name in GENERATING_METHODS)


@pytest.mark.parametrize("name", RESAMPLERS)
def test_class_counts_and_index_mapping(name, data):
    X, y = data
    n0, n1 = np.bincount(y)
    res = _r(name).fit_resample(X, y, seed=0)
    _check_mapping(res, X, y)
    c0, c1 = np.bincount(res.y, minlength=2)
    if name in ("random-over", "smote"):
        assert (c0, c1) == (n0, n0)
    elif name == "adasyn":  # ADASYN rounds per-sample counts
        assert c0 == n0 and abs(c1 - n0) <= 0.05 * n0
    elif name == "smote-tomek":  # Tomek step removes both ends of links
        assert c1 > n1 and abs(c0 - c1) <= 0.05 * n0 and c0 <= n0
    elif name == "random-under":
        assert (c0, c1) == (n1, n1)
    else:  # tomek, enn: clean majority only
        assert c1 == n1 and c0 < n0
        removed = np.setdiff1d(np.arange(len(y)), res.index)
        assert len(removed) == n0 - c0 and (y[removed] == 0).all()
    if name in GENERATING_METHODS:
        syn = res.synthetic
        assert syn.sum() > 0 and (res.y[syn] == 1).all() and (res.index[syn] == -1).all()
        # synthetic rows are new points, not copies of inputs
        assert not (res.X[syn][:, None, :] == X[None, :, :]).all(-1).any()
    else:
        assert not res.synthetic.any()
    if name in ("random-over", "random-under", "tomek", "enn"):
        assert len(np.unique(res.index)) == (n0 + n1 if name == "random-over" else len(res))


@pytest.mark.parametrize("name", ["random-over", "random-under", "smote", "adasyn", "smote-tomek"])
def test_seed_determinism(name, data):
    X, y = data
    a = _r(name).fit_resample(X, y, seed=1)
    b = _r(name).fit_resample(X, y, seed=1)
    c = _r(name).fit_resample(X, y, seed=2)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.index, b.index)
    assert not (a.X.shape == c.X.shape and np.array_equal(a.X, c.X) and np.array_equal(a.index, c.index))
    # the context seed is the default
    assert np.array_equal(_r(name, seed=1).fit_resample(X, y).X, a.X)


def test_sampling_strategy_ratio(data):
    X, y = data
    n0, n1 = np.bincount(y)
    assert np.bincount(_r("smote", sampling_strategy=0.5).fit_resample(X, y).y).tolist() == [n0, round(0.5 * n0)]
    assert np.bincount(_r("random-over", sampling_strategy=0.5).fit_resample(X, y).y).tolist() == [n0, round(0.5 * n0)]
    assert np.bincount(_r("random-under", sampling_strategy=0.5).fit_resample(X, y).y).tolist() == [2 * n1, n1]
    with pytest.warns(UserWarning, match="already meet"):
        res = _r("smote", sampling_strategy=0.01).fit_resample(X, y)
    assert len(res) == len(y) and not res.synthetic.any()


def test_multiclass_ratio():
    X, y = make_classification(
        n_samples=400, n_features=6, n_informative=4, n_classes=3, weights=[0.7, 0.2, 0.1], random_state=1
    )
    counts = np.bincount(y)
    over = _r("smote").fit_resample(X, y)
    assert np.bincount(over.y).tolist() == [counts.max()] * 3
    under = _r("random-under").fit_resample(X, y)
    assert np.bincount(under.y).tolist() == [counts.min()] * 3
    _check_mapping(over, X, y)


def test_k_lowered_with_warning_for_three_minority():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (40, 4)), rng.normal(0.5, 1, (3, 4))])
    y = np.r_[np.zeros(40, int), np.ones(3, int)]
    for name in ("smote", "smote-tomek", "adasyn"):
        with pytest.warns(UserWarning, match="lowering k_neighbors from 5 to 2"):
            res = _r(name, k_neighbors=5).fit_resample(X, y)
        assert (res.y == 1).sum() > 3
        _check_mapping(res, X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _r("smote", k_neighbors=2).fit_resample(X, y)  # k already valid: no warning


@pytest.mark.parametrize("name", GENERATING_METHODS)
def test_single_minority_sample_raises_data_error(name):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    y = np.r_[np.zeros(29, int), 1]
    with pytest.raises(DataError, match=r"class 1 has only 1 sample") as exc:
        _r(name).fit_resample(X, y)
    assert type(exc.value).__module__ == "imbvision.errors"
    assert "random-over" in str(exc.value)  # says what to do instead


def test_one_class_raises_data_error():
    X = np.zeros((10, 2))
    with pytest.raises(DataError, match="at least two classes.*only class 0"):
        _r("smote").fit_resample(X, np.zeros(10, int))
    with pytest.raises(DataError, match="2-D"):
        _r("smote").fit_resample(np.zeros(10), np.r_[np.zeros(5, int), np.ones(5, int)])
    with pytest.raises(DataError, match="NaN"):
        _r("tomek").fit_resample(np.full((4, 2), np.nan), np.array([0, 0, 1, 1]))


def test_imblearn_value_error_is_rewrapped():
    X = np.random.default_rng(0).normal(size=(6, 2))
    y = np.array([0, 0, 0, 0, 1, 1])
    with pytest.raises(DataError, match=r"enn cannot resample 6 embeddings.*n_neighbors") as exc:
        _r("enn", n_neighbors=10).fit_resample(X, y)
    assert isinstance(exc.value.__cause__, ValueError)


def test_adasyn_falls_back_to_smote_when_no_majority_neighbours():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (60, 3)), rng.normal(50, 1, (10, 3))])
    y = np.r_[np.zeros(60, int), np.ones(10, int)]
    r = _r("adasyn")
    with pytest.warns(ResampleFallbackWarning, match="falling back to SMOTE"):
        res = r.fit_resample(X, y)
    assert r.last_method == "smote"
    assert np.bincount(res.y).tolist() == [60, 60]
    _check_mapping(res, X, y)
    r.fit_resample(*make_classification(n_samples=200, weights=[0.85], flip_y=0.05, random_state=0))
    assert r.last_method == "adasyn"


def test_select_indices(data):
    X, y = data
    n0, n1 = np.bincount(y)
    idx = _r("random-over").select_indices(y, seed=0)  # no X needed
    assert idx.dtype == np.int64 and np.bincount(y[idx]).tolist() == [n0, n0]
    assert len(np.unique(idx)) < len(idx)  # repeats
    idx_u = _r("random-under").select_indices(y, seed=0)
    assert np.bincount(y[idx_u]).tolist() == [n1, n1] and len(np.unique(idx_u)) == len(idx_u)
    assert np.array_equal(idx_u, _r("random-under").fit_resample(X, y, seed=0).index)
    with pytest.raises(ConfigError, match="needs the embeddings X"):
        _r("tomek").select_indices(y)
    idx_t = _r("tomek").select_indices(y, X=X)
    assert np.array_equal(idx_t, _r("tomek").fit_resample(X, y).index)
    for name in GENERATING_METHODS:
        with pytest.raises(ConfigError, match="head mode.*random-over, random-under, tomek, enn"):
            _r(name).select_indices(y, X=X)


def test_registry_params_and_prior_flags():
    assert set(get_strategy("smote").params) == {"sampling_strategy", "k_neighbors"}
    assert set(get_strategy("adasyn").params) == {"sampling_strategy", "k_neighbors"}
    assert set(get_strategy("tomek").params) == set()
    assert set(get_strategy("enn").params) == {"n_neighbors", "kind_sel"}
    assert set(get_strategy("random-under").params) == {"sampling_strategy"}
    with pytest.raises(ConfigError, match=r"sampling_strategy='0'.*\(0, 1\]"):
        parse_strategies("smote:sampling_strategy=0")
    with pytest.raises(ConfigError, match="k_neighbors='0'"):
        parse_strategies("smote:k_neighbors=0")
    with pytest.raises(ConfigError, match="no parameter 'sampling_strategy'"):
        parse_strategies("tomek:sampling_strategy=1")
    for name in SELECTION_METHODS + GENERATING_METHODS:
        rec = get_strategy(name)
        assert rec.family == "resampler"
        assert rec.corrects_prior(rec.defaults()) is (name not in ("tomek", "enn"))
    assert get_strategy("smote").corrects_prior({"sampling_strategy": 0.2, "k_neighbors": 5}) is False
