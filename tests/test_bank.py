"""Memory bank at linear cost, guarded faiss search, one-bank out-of-fold scores (issue 22 §2–3, issue 19 §5)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from imbvision.backbones.patches import PatchFeatures
from imbvision.errors import ConfigError, DataError
from imbvision.strategies._bank_index import BankIndex, index_kind
from imbvision.strategies.normality_head import NormalityHead, greedy_coreset, shard_plan, sharded_coreset
from imbvision.strategies.patch_heads import FusionHead


def _grid_feats(X: np.ndarray, groups=None) -> PatchFeatures:
    """``(N, h, w, C)`` features as PatchFeatures with every patch valid (canvas 16·h)."""
    n, h, w, _ = X.shape
    size = 16 * h
    return PatchFeatures(X.astype(np.float16), np.arange(n), np.tile([0, 0, size, size], (n, 1)),
                         np.tile([size, size], (n, 1)), size, {}, None, None, None,
                         None if groups is None else np.asarray(groups))


def _clustered(n_per: int, centres: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(0, 10, (centres, dim))
    return (c[rng.integers(centres, size=n_per * centres)] + rng.normal(0, 1, (n_per * centres, dim))).astype(np.float32)


# --------------------------------------------------------------------------- coreset
def test_one_shard_is_the_exact_greedy_and_shards_cover_the_data():
    X = _clustered(60, 20, 8, 0)  # 1,200 rows
    counts = np.full(120, 10)  # 120 "images" of 10 patches each
    rows = lambda i: X[10 * i:10 * i + 10]  # noqa: E731
    bank, owner = sharded_coreset(rows, counts, 100, shard=10**9, seed=3)
    order = np.concatenate([np.arange(10 * i, 10 * i + 10) for i in shard_plan(counts, 100, 10**9, 3)[0][0]])
    np.testing.assert_array_equal(bank, X[order][greedy_coreset(X[order], 100, seed=3 * 1000003)])
    assert np.array_equal(owner, order[greedy_coreset(X[order], 100, seed=3 * 1000003)] // 10)
    # four shards: the same bank size, the same seed gives the same bank, and coverage stays near the exact one
    approx, owner4 = sharded_coreset(rows, counts, 100, shard=300, seed=3)
    again, _ = sharded_coreset(rows, counts, 100, shard=300, seed=3)
    assert len(approx) == 100 and np.array_equal(approx, again)
    assert all((rows(int(o)) == r).all(1).any() for r, o in zip(approx, owner4))  # each row's owner holds it

    def radius(B):
        return np.sqrt(((X[:, None] - B[None]) ** 2).sum(-1).min(1)).max()
    assert radius(approx) <= 1.5 * radius(bank)
    assert radius(bank) < 0.9 * radius(X[np.random.default_rng(0).choice(len(X), 100, replace=False)])


def test_shard_plan_is_balanced_and_sums_to_the_target():
    counts = np.random.default_rng(1).integers(50, 200, 400)
    plan = shard_plan(counts, 5000, 8192, 0)
    assert sum(p for _, p in plan) == 5000
    assert sorted(np.concatenate([i for i, _ in plan]).tolist()) == list(range(400))
    sizes = [counts[i].sum() for i, _ in plan]
    assert max(sizes) <= 8192 + counts.max() and len(plan) == int(np.ceil(counts.sum() / 8192))


def test_coreset_work_grows_linearly_with_the_data():
    """Greedy steps × rows per fit at a fixed ratio: exact greedy is quadratic, shards linear."""
    def work(n_images: int, shard: int) -> int:
        counts = np.full(n_images, 100)
        target = int(0.2 * counts.sum())
        return sum(int(counts[i].sum()) * p for i, p in shard_plan(counts, target, shard, 0))
    assert work(800, 10**9) / work(200, 10**9) == pytest.approx(16, rel=0.01)  # one shard: 4× data, 16× work
    assert work(800, 4096) / work(200, 4096) == pytest.approx(4, rel=0.1)


def test_bank_budget_below_one_image_is_a_clear_error():
    feats = _grid_feats(np.random.default_rng(0).normal(size=(6, 4, 4, 8)))
    with pytest.raises(ConfigError, match=r"max_bank=10 is below one image's 16 patches .*use max_bank >= 16"):
        NormalityHead(max_bank=10).fit(feats, np.zeros(6))


# --------------------------------------------------------------------------- faiss guards
def _lonely_bank(seed: int = 0):
    """400 rows in two tight clusters plus one far row: IVF gives the far row a list of its own."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 0.1, (200, 16)) + 5
    b = rng.normal(0, 0.1, (199, 16)) - 5
    lone = np.full((1, 16), 40.0)
    return np.concatenate([a, b, lone]).astype(np.float32)


def test_missing_neighbours_are_never_used():
    bank = _lonely_bank()
    idx = BankIndex(bank, "ivf")
    assert idx.kind == "ivf"
    q = np.concatenate([bank[-1:] + 0.01, bank[:5]])
    d, ids = idx.search(q, 2)  # the lone row's list holds one entry: faiss answers id -1, distance 3.4e38
    assert idx.fallback_rows >= 1
    assert (ids >= 0).all() and np.isfinite(d).all()
    d_exact, ids_exact = BankIndex(bank, "exact").search(q, 2)
    np.testing.assert_allclose(d[0], d_exact[0], rtol=1e-4)  # the lone row: searched again exactly
    np.testing.assert_array_equal(ids[0], ids_exact[0])
    assert (d[1:] >= d_exact[1:] - 1e-4).all()  # the others: approximate, never nearer than the truth


@pytest.mark.parametrize("search", ["ivf", "ivfpq", "hnsw"])
def test_ivf_on_a_small_bank_does_not_collapse_the_scores(search):
    """Issue 19 §5: a rare normal patch alone in its inverted list once made the scale 5.5e18 (AP = prevalence)."""
    rng = np.random.default_rng(2)
    neg = _lonely_bank(1)
    pos = rng.normal(0, 0.1, (20, 16)).astype(np.float32)  # between the clusters: anomalous
    test_neg = _lonely_bank(3)[rng.choice(400, 80, replace=False)]
    head = NormalityHead(ratio=1.0, search=search, seed=0).fit(neg, np.zeros(len(neg)))
    assert np.isfinite(head.scale_d_) and head.scale_d_ < 100
    s = head.decision_function(np.concatenate([test_neg, pos]))
    y = np.r_[np.zeros(80), np.ones(20)]
    assert average_precision_score(y, s) > 0.9  # prevalence is 0.2


def test_faiss_prints_no_clustering_warning(capfd):
    rng = np.random.default_rng(0)
    for n, search in ((5488, "ivf"), (3000, "ivfpq"), (320, "ivf"), (250, "ivf")):
        BankIndex(rng.normal(size=(n, 24)).astype(np.float32), search)
    err = capfd.readouterr().err
    assert "WARNING" not in err and "clustering" not in err, err
    assert index_kind(250, "ivf") == "exact" and index_kind(5000, "auto") == "ivf"
    assert index_kind(300_000, "auto") == "ivfpq"


# --------------------------------------------------------------------------- one bank, out of fold
def test_out_of_fold_scores_skip_the_images_own_group():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(12, 2, 2, 6)).astype(np.float32)
    X[5] = X[4] + 0.01  # a near duplicate of image 4, in its group
    groups = np.array([0, 1, 2, 3, 4, 4, 6, 7, 8, 9, 10, 11])
    feats = _grid_feats(X, groups)
    y = np.zeros(12)
    head = NormalityHead(ratio=1.0, search="exact", seed=0).fit(feats, y)
    oof = head.oof_decision_function(feats) * head.scale_d_ + head.loc_
    for i in (0, 4, 5):  # the refit per held-out group it replaces: a bank of every other group's patches
        keep = np.flatnonzero(groups != groups[i])
        ref = NormalityHead(ratio=1.0, search="exact", seed=0).fit(feats.take(keep), y[keep])
        raw = ref.decision_function(feats.take([i]))[0] * ref.scale_d_ + ref.loc_
        assert oof[i] == pytest.approx(raw, rel=1e-4)
    plain = head.decision_function(feats) * head.scale_d_ + head.loc_
    assert plain[4] < 1e-2 and oof[4] > 1.0  # its own patches (and its duplicate's) are not its neighbours


def test_fusion_folds_keep_duplicate_sets_together():
    y = np.array([1, 1, 1, 1, 1, 1] + [0] * 30)
    groups = np.r_[[0, 0, 1, 1, 2, 3], np.arange(4, 34) // 2]  # pairs of near duplicates
    folds = FusionHead(folds=3)._folds(y, groups, seed=0)
    assert len(folds) == 3
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        assert y[tr].min() == 0 and y[tr].max() == 1
    with pytest.raises(DataError, match="at least 2 groups"):
        FusionHead()._folds(np.array([1, 1, 0, 0, 0]), np.array([0, 0, 1, 2, 3]), seed=0)
    with pytest.raises(ConfigError, match="fusion: oof='x' is invalid; valid: one of one-bank, refit"):
        FusionHead(oof="x")


# --------------------------------------------------------------------------- Ray
@pytest.mark.slow
def test_a_two_worker_ray_cluster_builds_the_same_bank():
    import ray
    from imbvision.strategies.normality_head import ray_shard_runner

    with pytest.raises(ConfigError, match=r"call ray.init"):
        ray_shard_runner()
    X = _clustered(40, 30, 12, 5)  # 1,200 rows in 120 images: 5 shards of 256 patches
    counts = np.full(120, 10)
    rows = lambda i: X[10 * i:10 * i + 10]  # noqa: E731
    local = sharded_coreset(rows, counts, 150, shard=256, seed=7)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = sharded_coreset(rows, counts, 150, shard=256, seed=7, run_shard=ray_shard_runner(), in_flight=3)
        feats = _grid_feats(X.reshape(120, 2, 5, 12))
        h_local = NormalityHead(ratio=0.125, shard=256, seed=1).fit(feats, np.zeros(120))
        h_ray = NormalityHead(ratio=0.125, shard=256, seed=1).fit(feats, np.zeros(120), run_shard=ray_shard_runner())
    finally:
        ray.shutdown()
    np.testing.assert_array_equal(local[0], remote[0])
    np.testing.assert_array_equal(local[1], remote[1])
    np.testing.assert_array_equal(h_local.bank_, h_ray.bank_)
    assert h_local.loc_ == h_ray.loc_ and h_local.scale_d_ == h_ray.scale_d_
