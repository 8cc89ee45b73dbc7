"""A common test over every registered strategy (as imblearn's test_common.py):
a strategy added tomorrow is tested the day it is added."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imbvision.errors import ConfigError
from imbvision.strategies import (
    DoubleCorrectionWarning, StrategyContext, compose, get_strategy, list_strategies, parse_strategies,
)
from imbvision.strategies.examples import strategy_examples
from imbvision.strategies.registry import recipe_prior
from imbvision.training.head import fit_head

ALL = [r.name for r in list_strategies()]
CTX = StrategyContext(class_counts=(90, 10), seed=0)


def _problem(seed=0, n=100, d=8):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.12).astype(np.int64)
    y[:3] = 1
    X = rng.normal(0, 1, (n, d)).astype(np.float32) + y[:, None] * 1.5
    return X, y


def _images(n=8, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs, masks, labels = [], [], []
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(n):
        img = 0.4 + 0.1 * torch.rand(3, size, size, generator=g)
        m = torch.zeros(size, size, dtype=torch.bool)
        if i % 2 == 0:
            cy, cx = 8 + 2 * i % 16, 10 + i
            m = (yy - cy) ** 2 + (xx - cx) ** 2 <= 16
            img[:, m] = 0.95
        imgs.append(img)
        masks.append(m)
        labels.append(int(i % 2 == 0))
    return imgs, masks, labels


def test_registry_covers_the_seed():
    need = {"ce", "weighted-ce", "focal", "class-balanced", "logit-adjusted", "balanced-sampler", "random-over",
            "random-under", "tomek", "enn", "smote", "adasyn", "smote-tomek", "augment-oversample", "copy-paste",
            "mixup", "cutmix", "minority-mixup", "object-cutmix", "logreg", "linear", "mlp"}
    assert need <= set(ALL)
    for r in list_strategies():
        assert r.description and r.reference and r.family in ("loss", "sampler", "resampler", "synthesis", "mixing", "head")


@pytest.mark.parametrize("name", ALL)
def test_every_strategy_builds_and_runs(name, tmp_path):
    rec = get_strategy(name)
    obj = rec.build(CTX, **rec.defaults())
    X, y = _problem()
    if rec.family == "loss":
        logits = torch.tensor([-100.0, -2.0, 0.0, 3.0, 100.0], requires_grad=True)
        for target in (torch.tensor([0, 1, 0, 1, 1]), torch.tensor([0.2, 0.9, 0.5, 0.0, 1.0])):
            loss = obj(logits, target)
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    elif rec.family == "sampler":
        idx = list(obj.make(y, seed=0))
        assert len(idx) == len(y) and y[idx].mean() > y.mean()
    elif rec.family == "resampler":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = obj.fit_resample(X, y, seed=0)
        assert np.isfinite(res.X).all() and set(np.unique(res.y)) == {0, 1}
        assert (res.index[~res.synthetic] >= 0).all()
    elif rec.family == "head":
        head = obj.fit(X, y)
        p = head.predict_proba(X)
        assert p.shape == (len(y),) and np.isfinite(p).all()
    else:  # synthesis and mixing write an example grid the report shows
        imgs, masks, labels = _images()
        path = strategy_examples(name, imgs, masks, labels, tmp_path / f"{name}.png", seed=0)
        im = np.asarray(Image.open(path).convert("L"), dtype=float)
        assert im.shape[0] > 50 and im.std() > 5
    # Through the training path too: composed with the default head, finite probabilities.
    if rec.family in ("loss", "sampler", "resampler", "head"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_head(X, y, compose(name), seed=0)
        assert np.isfinite(fit.predict_proba(X)).all()


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown strategy 'focall'.*Did you mean 'focal'.*Valid: "):
        parse_strategies("focall")


@pytest.mark.parametrize("text, fragment", [
    ("focal:gamma=-1", r"gamma=.*-1.*valid: float in \[0"),
    ("focal:alpha=1.5", r"alpha=.*1.5.*\[0, 1\]"),
    ("random-over:sampling_strategy=0", r"sampling_strategy"),
    ("copy-paste:ratio=-2", r"ratio"),
    ("focal:beta=2", r"no parameter 'beta'; valid parameters: gamma, alpha"),
    ("focal:gamma", r"write name:key=value"),
    ("ce++focal", r"empty name"),
])
def test_out_of_range_parameters_refused(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_strategies(text)


def test_composition_refuses_two_losses_and_warns_double_correction():
    with pytest.raises(ConfigError, match="at most one loss"):
        compose("focal+weighted-ce")
    with pytest.warns(DoubleCorrectionWarning, match="balanced-sampler"):
        compose("balanced-sampler+weighted-ce")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = compose("focal:gamma=2,alpha=0.25+copy-paste+mixup")
    assert r.loss.name == "focal" and r.mixing.name == "mixup" and [s.name for s in r.synthesis] == ["copy-paste"]
    assert r.name == "focal+copy-paste+mixup"


def test_parameters_round_trip_through_names():
    spec = parse_strategies("focal:gamma=1.5,alpha=none")[0]
    assert spec.params["gamma"] == 1.5 and spec.params["alpha"] is None
    assert parse_strategies(str(spec))[0].params == spec.params


# --------------------------------------------------------------------------- fine-tune mode
# Every strategy is also run (or refused, as its record declares) in fine-tune mode: a tiny smoke run,
# one epoch at 32 px with the random timm test model, per strategy whose record lists "finetune".

FINETUNE = [r.name for r in list_strategies() if "finetune" in r.modes]
HEAD_ONLY = [r.name for r in list_strategies() if "finetune" not in r.modes]


@pytest.fixture(scope="module")
def ft_prep(tmp_path_factory):
    from imbvision.data.synthetic import DemoSpec, generate_demo_dataset
    from imbvision.training.config import TrainConfig
    from imbvision.training.prepare import prepare_data

    data = generate_demo_dataset(tmp_path_factory.mktemp("ftcommon") / "data",
                                 DemoSpec(n=48, positive_rate=0.25, seed=5, size=32))
    cfg = dict(data=str(data), mode="finetune", backbone="test_efficientnet", weights="none", image_size=32,
               epochs=1, batch_size=8, patience=0, n_boot=0, max_synthetic=8,
               cache_dir=str(tmp_path_factory.mktemp("ftcache")))
    return cfg, prepare_data(str(data), seed=0)


def test_every_strategy_is_declared_for_fine_tune_or_head_only():
    assert set(FINETUNE) | set(HEAD_ONLY) == set(ALL)
    for name in HEAD_ONLY:
        rec = get_strategy(name)
        assert rec.generates_samples or rec.family == "head", name


@pytest.mark.parametrize("name", FINETUNE)
def test_every_fine_tune_strategy_trains(name, ft_prep, tmp_path):
    from imbvision.training.config import TrainConfig
    from imbvision.training.finetune import run_finetune

    cfg, prep = ft_prep
    rec = get_strategy(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_finetune(TrainConfig(**cfg, strategy=name), prep, compose(name), tmp_path, progress=False)
    assert len(res.p_val) == len(prep.split.val) and len(res.p_test) == len(prep.split.test)
    assert np.isfinite(res.p_val).all() and np.isfinite(res.p_test).all()
    assert res.info["epochs_run"] == 1 and np.isfinite(res.info["history"][0]["train_loss"])
    n_train = len(prep.split.train)
    if rec.family == "synthesis":
        assert res.info["synthetic_per_epoch"][name] > 0 and name in res.examples
    elif rec.family == "mixing":
        assert name in res.examples
    elif rec.family == "resampler":
        before, after = res.info["resampling"]["counts_before"], res.info["resampling"]["counts_after"]
        assert sum(before) == n_train and after[1] == before[1] if rec.name != "random-over" else after[1] > before[1]
        assert after != before or rec.needs_embeddings  # cleaning may find nothing to remove on tiny data
    else:
        assert sum(res.info["counts_after_resampling"]) == n_train
    # the prior the network trained at is the one the records declare
    assert res.effective_prior == recipe_prior(compose(name), tuple(res.info["counts_after_resampling"]))


@pytest.mark.parametrize("name", HEAD_ONLY)
def test_head_only_strategies_are_refused_in_fine_tune_mode(name, ft_prep, tmp_path):
    from imbvision.training.config import TrainConfig
    from imbvision.training.finetune import run_finetune

    cfg, prep = ft_prep
    with pytest.raises(ConfigError, match="head mode only"):
        run_finetune(TrainConfig(**cfg, strategy=name), prep, compose(name), tmp_path, progress=False)


@pytest.mark.parametrize("name", [r.name for r in list_strategies() if r.family in ("synthesis", "mixing")])
def test_every_pixel_strategy_trains_in_head_mode(name, ft_prep):
    """Synthesis and mixing through the head-mode cell: new images embedded and added to the training rows."""
    from imbvision.backbones import create_backbone
    from imbvision.training.cell import FeatureSettings, embed_features, fit_and_score, synthetic_features

    cfg, prep = ft_prep
    bb = create_backbone("test_efficientnet", weights="none")
    settings = FeatureSettings("test_efficientnet", "none", 32, 0, "global", 8)
    feats, _ = embed_features(prep.dataset.records, bb, settings, cache_dir=Path(cfg["cache_dir"]))
    recipe = compose(name)
    extra = synthetic_features(recipe, prep.dataset.records, prep.split.train, seed=0, settings=settings,
                               backbone=lambda: bb)
    assert extra is not None and len(extra.X) == len(extra.y) > 0 and extra.X.shape[1] == feats["global"].shape[1]
    assert set(extra.origin) == {name} and ((extra.y >= 0) & (extra.y <= 1)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cf = fit_and_score(recipe, feats, prep.dataset.labels, prep.split, seed=0, extra=extra)
    assert cf.synthetic_rows == len(extra.X) and cf.fit.train_rows == len(prep.split.train) + len(extra.X)
    assert np.isfinite(cf.post.apply(cf.p_test)).all()


@pytest.mark.parametrize("name", ALL)
def test_every_record_declares_consistent_capabilities(name):
    from imbvision.strategies.registry import MODES, TrainingPrior
    from imbvision.training.cell import get_representation

    rec = get_strategy(name)
    assert rec.modes and set(rec.modes) <= set(MODES) and "head" in rec.modes
    if rec.generates_samples:
        assert "finetune" not in rec.modes  # rows without an image cannot be fine-tuned on
    if rec.needs_background:
        assert rec.family == "synthesis"
    if rec.needs_embeddings:
        assert rec.family == "resampler"
    if rec.family == "head":
        assert get_representation(rec.representation).name == rec.representation
    shifted = rec.prior_shift(rec.defaults(), TrainingPrior(0.1, (90, 10)))
    assert shifted is None or 0.0 < shifted < 1.0
    if rec.family in ("synthesis", "mixing", "resampler", "head"):
        assert shifted == 0.1  # rows are measured after them; they do not re-weight


# --------------------------------------------------------------------------- one parameter table
# Generated from the records: for every strategy and every declared parameter, the values at and just
# beyond its declared bounds. A value the record refuses is refused when the strategy string is parsed
# (with the record's own words); a value it accepts builds the object; the public constructor refuses what
# the record refuses and starts from the record's defaults. A constructor that keeps a second table fails here.

def _candidates(p):
    """``(python value, accepted by the record)`` at and around the declared range of ``p``."""
    out = []
    if p.choices:
        out += [(c, True) for c in p.choices] + [("no-such-choice", False)]
    if p.kind == "bool":
        out += [(True, True), (False, True), ("maybe", False)]
    if p.kind == "float|none":
        out.append((None, True))
    if p.kind in ("float", "int", "float|none") or p.numeric_ok:
        step = 1 if p.kind == "int" else 0.5
        if p.low is not None:
            out += [(p.low, not p.low_open), (p.low - step, False)]
            if p.kind != "int":
                out.append((p.low + 1e-3, True))
        if p.high is not None:
            out += [(p.high, not p.high_open), (p.high + step, False)]
            if p.kind != "int":
                out.append((p.high - 1e-3, True))
        out += [(float("nan"), False), (float("inf"), False)]
        if p.kind == "int":
            out.append(((p.low if p.low is not None else 0) + 1.5, False))
    return out


def _text(v):
    return "none" if v is None else ("true" if v is True else "false" if v is False else repr(v) if isinstance(v, float) else str(v))


PARAM_CASES = [(r.name, k, v, ok) for r in list_strategies() for k, p in r.params.items() for v, ok in _candidates(p)]


def test_every_declared_parameter_has_boundary_cases():
    covered = {(n, k) for n, k, _, _ in PARAM_CASES}
    declared = {(r.name, k) for r in list_strategies() for k in r.params}
    assert covered == declared
    assert ("mlp", "dropout", 1.0, False) in PARAM_CASES  # the example: [0, 1) on the record


@pytest.mark.parametrize("name, key, value, accepted", PARAM_CASES,
                         ids=[f"{n}:{k}={_text(v)}" for n, k, v, _ in PARAM_CASES])
def test_record_table_is_the_only_table(name, key, value, accepted):
    import inspect
    import re

    from imbvision.strategies.registry import make_spec

    rec = get_strategy(name)
    text = f"{name}:{key}={_text(value)}"
    if not accepted:
        # refused at parse time, in the record's words, before any data is read
        with pytest.raises(ConfigError, match=rf"strategy '{re.escape(name)}': parameter {key}=.*"
                                              rf"valid: {re.escape(rec.params[key].describe())}"):
            parse_strategies(text)
    else:
        try:
            spec = parse_strategies(text)[0]
        except ConfigError as exc:  # only a declared rule between parameters may refuse a value in range
            assert rec.constraint is not None, f"{text} is in range but refused: {exc}"
            with pytest.raises(ConfigError):  # and the constructor keeps the same rule
                rec.build(CTX, **{**rec.defaults(), key: rec.params[key].coerce(name, key, value)})
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert spec.build(CTX) is not None  # what the parser accepts, the constructor builds
    # the public constructor (where it takes the parameter by name) refuses what the record refuses
    cls = type(rec.build(CTX, **rec.defaults()))
    sig = inspect.signature(cls)
    required = [p for p in sig.parameters.values() if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if key in sig.parameters and not required and not accepted:
        with pytest.raises(ConfigError, match=rf"{re.escape(key)}="):
            cls(**{key: value})


@pytest.mark.parametrize("name", [r.name for r in list_strategies() if r.params])
def test_constructor_defaults_are_the_records(name):
    import inspect

    rec = get_strategy(name)
    cls = type(rec.build(CTX, **rec.defaults()))
    sig = inspect.signature(cls)
    for key, p in rec.params.items():
        if key in sig.parameters and sig.parameters[key].default is not inspect.Parameter.empty:
            assert sig.parameters[key].default == p.default, f"{cls.__name__}({key}=...) defaults differ from {name}"


def test_scale_order_is_refused_when_parsed():
    with pytest.raises(ConfigError, match="strategy 'copy-paste': scale_min=2 is larger than scale_max=1.25"):
        parse_strategies("copy-paste:scale_min=2")
    with pytest.raises(ConfigError, match="strategy 'mlp': parameter dropout='1' is invalid; valid: float in \\[0, 1\\)"):
        parse_strategies("mlp:dropout=1")


# --------------------------------------------------------------------------- per-head checks
# Generated from the head records (as imbalanced-learn's estimator_checks): every head is fitted on tiny
# synthetic features of the representation its record names, no backbone; its declared capabilities are
# checked against what it does.

HEADS = [r.name for r in list_strategies("head")]


def _patch_problem(seed=0, n=30, grid=3, dim=6):
    """Patch features of ``n`` images on a ``grid`` x ``grid`` grid: a positive has one bright patch (its mask)."""
    from imbvision.backbones.patches import PatchFeatures

    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 == 0).astype(np.int64)
    store = rng.normal(0, 1, (n, grid, grid, dim)).astype(np.float32)
    masks = []
    for i in range(n):
        m = None
        if y[i]:
            r, c = rng.integers(0, grid, 2)
            store[i, r, c] += 2.5
            m = np.zeros((grid, grid))
            m[r, c] = 1.0
        masks.append(m)
    store = store.astype(np.float16)
    side = 8 * grid
    feats = PatchFeatures(store, np.arange(n), np.tile([0, 0, side, side], (n, 1)), np.tile([side, side], (n, 1)),
                          side, {"grid": f"{grid}x{grid}"}, None, store.astype(np.float32).mean((1, 2)), masks,
                          np.arange(n))
    return feats, y


def _head_data(rec):
    data = {"global": _problem, "patches": _patch_problem}
    assert rec.representation in data, f"no test data for representation {rec.representation!r}; add it here"
    return data[rec.representation]()


def _fit(rec, X, y, seed=0, **kw):
    ctx = StrategyContext.from_labels(y, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rec.build(ctx, **rec.defaults()).fit(X, y, seed=seed, **kw)


@pytest.mark.parametrize("name", HEADS)
def test_head_save_load_round_trip_gives_equal_scores(name):
    import json

    from safetensors.numpy import load, save

    from imbvision.strategies import head_from_arrays

    rec = get_strategy(name)
    X, y = _head_data(rec)
    head = _fit(rec, X, y)
    config = json.loads(json.dumps(head.get_config()))  # as model.json stores it
    arrays = load(save({k: np.ascontiguousarray(v) for k, v in head.to_arrays().items()}))  # as model.safetensors
    loaded = head_from_arrays(arrays, config)
    assert type(loaded) is type(head) and type(rec.load(arrays, config)) is type(head)
    # what the record declares it saves (``saved``) is what it saves, and a bundle's check passes on it
    from imbvision.bundle_heads import check_head_bundle
    from imbvision.errors import BundleError

    assert rec.saved is not None
    nested = tuple(prefix + "." for _, prefix, _, _ in rec.saved.nested)
    assert {k for k in arrays if not k.startswith(nested) or not nested} == \
        {k for k in arrays if k in rec.saved.arrays}
    assert {k for k, a in rec.saved.arrays.items() if not a.optional} <= set(arrays)
    check_head_bundle(arrays, config, {}, rec.representation, "model.json")
    if rec.saved.arrays:  # and it refuses an array that disagrees with its declaration
        key = next(iter(rec.saved.arrays))
        with pytest.raises(BundleError, match=rf"head\.arrays\.{key.replace('.', '[.]')}"):
            check_head_bundle({**arrays, key: np.zeros((7, 7, 7))}, config, {}, rec.representation, "model.json")
    np.testing.assert_array_equal(loaded.decision_function(X), head.decision_function(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), head.predict_proba(X))


@pytest.mark.parametrize("name", HEADS)
def test_head_same_seed_same_scores(name):
    rec = get_strategy(name)
    X, y = _head_data(rec)
    a, b = _fit(rec, X, y, seed=3), _fit(rec, X, y, seed=3)
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))
    p = a.predict_proba(X)
    assert p.shape == (len(y),) and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()


@pytest.mark.parametrize("name", HEADS)
def test_head_heat_maps_as_declared(name):
    from imbvision.explain import is_patch_model

    rec = get_strategy(name)
    X, y = _head_data(rec)
    head = _fit(rec, X, y)
    assert hasattr(head, "patch_scores") == rec.heatmaps
    assert is_patch_model({"mode": "head", "head": {"name": name}}) == rec.heatmaps
    if rec.heatmaps:
        maps = head.patch_scores(X)
        assert maps.shape == (len(X), *X.grid) and np.isfinite(maps).all()


@pytest.mark.parametrize("name", HEADS)
def test_head_positives_as_declared(name):
    from imbvision.errors import DataError

    rec = get_strategy(name)
    X, y = _head_data(rec)
    none = np.zeros_like(y)
    if rec.needs_positives:
        with pytest.raises((DataError, ConfigError), match=rf"'?{name}'? needs"):
            _fit(rec, X, none)
    else:
        assert np.isfinite(_fit(rec, X, none).decision_function(X)).all()


@pytest.mark.parametrize("name", HEADS)
def test_head_masks_and_loss_as_declared(name):
    rec = get_strategy(name)
    X, y = _head_data(rec)
    base = _fit(rec, X, y).decision_function(X)
    if rec.representation == "global":
        assert not rec.reads_masks  # one pooled vector has no patch to label
    else:
        bare = X.take(np.arange(len(X)))
        bare.masks = None
        without = _fit(rec, bare, y).decision_function(X)
        assert (not np.array_equal(without, base)) == rec.reads_masks
    weighted = _fit(rec, X, y, loss_name="weighted-ce").decision_function(X)
    assert (not np.array_equal(weighted, base)) == rec.uses_loss
