"""Tests for the balanced sampler and the distributed weighted sampler."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from imbvision.errors import ConfigError, DataError
from imbvision.strategies.registry import StrategyContext, get_strategy, parse_strategies
from imbvision.strategies.samplers import (
    BalancedSampler,
    DistributedWeightedSampler,
    balanced_sample_weights,
)


def _labels(n: int = 2000, pos: float = 0.05) -> np.ndarray:
    y = np.zeros(n, dtype=np.int64)
    y[: int(n * pos)] = 1
    return np.random.default_rng(0).permutation(y)


def _build(**params) -> BalancedSampler:
    rec = get_strategy("balanced-sampler")
    full = {**rec.defaults(), **params}
    return rec.build(StrategyContext(class_counts=(1900, 100)), **full)


def _pos_rate(sampler, y: np.ndarray) -> float:
    return float(y[np.fromiter(iter(sampler), dtype=np.int64)].mean())


# -- balanced-sampler ---------------------------------------------------------


def test_inverse_mode_draws_half_positives():
    y = _labels()
    s = _build().make(y, num_samples=20000, seed=1)
    assert isinstance(s, WeightedRandomSampler)
    assert len(s) == 20000
    assert _pos_rate(s, y) == pytest.approx(0.5, abs=0.02)


def test_sqrt_mode_lies_between_natural_and_balanced():
    y = _labels()
    rate = _pos_rate(_build(mode="sqrt").make(y, num_samples=20000, seed=1), y)
    expected = np.sqrt(100) / (np.sqrt(100) + np.sqrt(1900))  # ~0.187
    assert rate == pytest.approx(expected, abs=0.02)
    assert 0.05 + 0.05 < rate < 0.5 - 0.05


def test_pos_fraction_overrides_mode():
    y = _labels()
    for mode in ("inverse", "sqrt"):
        rate = _pos_rate(_build(mode=mode, pos_fraction=0.3).make(y, num_samples=20000, seed=2), y)
        assert rate == pytest.approx(0.3, abs=0.02)


def test_weights_sum_to_one_and_favour_minority():
    y = _labels()
    w = _build().weights(y)
    assert w.shape == y.shape and w.sum() == pytest.approx(1.0)
    assert w[y == 1].sum() == pytest.approx(0.5) and w[y == 1][0] == pytest.approx(19 * w[y == 0][0])
    w3 = balanced_sample_weights(np.array([0, 0, 0, 1, 2, 2]))
    assert [w3[np.array([0, 0, 0, 1, 2, 2]) == c].sum() for c in range(3)] == pytest.approx([1 / 3] * 3)


def test_seed_reproduces_and_differs():
    y = _labels()
    b = _build()
    a1 = list(b.make(y, seed=5))
    a2 = list(b.make(y, seed=5))
    a3 = list(b.make(y, seed=6))
    assert a1 == a2
    assert a1 != a3
    assert len(a1) == len(y)  # num_samples defaults to len(labels)


def test_context_seed_is_default():
    y = _labels()
    rec = get_strategy("balanced-sampler")
    b7 = rec.build(StrategyContext(seed=7), **rec.defaults())
    assert list(b7.make(y)) == list(_build().make(y, seed=7))


def test_registry_record_and_params():
    rec = get_strategy("balanced-sampler")
    assert rec.family == "sampler"
    assert set(rec.params) == {"mode", "pos_fraction", "replacement"}
    assert rec.corrects_prior(rec.defaults()) is True
    spec = parse_strategies("balanced-sampler:mode=sqrt,pos_fraction=0.25,replacement=false")[0]
    assert spec.params == {"mode": "sqrt", "pos_fraction": 0.25, "replacement": False}
    with pytest.raises(ConfigError, match="'log'.*inverse, sqrt"):
        parse_strategies("balanced-sampler:mode=log")
    with pytest.raises(ConfigError, match="pos_fraction"):
        parse_strategies("balanced-sampler:pos_fraction=0")
    with pytest.raises(ConfigError, match=r"pos_fraction=1\.0.*\(0, 1\)"):
        _build(pos_fraction=1.0)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(DataError, match="binary"):
        _build(pos_fraction=0.3).weights(np.array([0, 1, 2]))
    with pytest.raises(DataError, match="0 positives"):
        _build(pos_fraction=0.3).weights(np.zeros(5, dtype=int))
    with pytest.raises(ConfigError, match="num_samples=11"):
        _build(replacement=False).make(np.array([0] * 9 + [1]), num_samples=11)
    with pytest.raises(DataError, match="empty"):
        _build().weights(np.array([], dtype=int))


def test_without_replacement_is_a_permutation():
    y = _labels(200)
    idx = list(_build(replacement=False).make(y, seed=0))
    assert sorted(idx) == list(range(200))


# -- DistributedWeightedSampler, in one process --------------------------------


def test_distributed_single_replica_equals_weighted_random_sampler():
    y = _labels()
    b = _build()
    ref = list(b.make(y, num_samples=999, seed=3))
    d = b.make(y, num_samples=999, seed=3, num_replicas=1, rank=0)
    assert isinstance(d, DistributedWeightedSampler)
    assert list(d) == ref


def test_distributed_shards_partition_global_draw():
    y = _labels()
    kw = dict(num_samples=1000, seed=4)
    full = DistributedWeightedSampler.from_labels(y, num_replicas=1, rank=0, **kw)
    shards = [DistributedWeightedSampler.from_labels(y, num_replicas=4, rank=r, **kw) for r in range(4)]
    assert [len(s) for s in shards] == [250] * 4
    # positions partition range(total) and the interleave rebuilds the draw
    pos = sorted(p for s in shards for p in s.positions())
    assert pos == list(range(1000))
    glob = np.empty(1000, dtype=np.int64)
    for s in shards:
        glob[list(s.positions())] = list(s)
    assert glob.tolist() == list(full)
    assert y[glob].mean() == pytest.approx(0.5, abs=0.05)


def test_distributed_padding_and_drop_last():
    w = np.ones(20)
    pad = [DistributedWeightedSampler(w, 11, num_replicas=4, rank=r, seed=0) for r in range(4)]
    assert [len(s) for s in pad] == [3] * 4
    draw = DistributedWeightedSampler(w, 11, num_replicas=1, rank=0, seed=0).global_draw()
    padded = pad[0].global_draw()
    assert padded.numel() == 12 and padded[:11].tolist() == draw.tolist() and padded[11] == draw[0]
    drop = [DistributedWeightedSampler(w, 11, num_replicas=4, rank=r, drop_last=True) for r in range(4)]
    assert [len(s) for s in drop] == [2] * 4
    assert sum(len(list(s)) for s in drop) == 8


def test_distributed_without_replacement_indices_disjoint():
    y = _labels(400)
    shards = [
        DistributedWeightedSampler.from_labels(y, num_samples=200, num_replicas=2, rank=r, replacement=False, seed=9)
        for r in range(2)
    ]
    a, b = (set(s) for s in shards)
    assert len(a) == len(b) == 100 and not a & b


def test_distributed_set_epoch_and_seed():
    w = np.ones(500)
    s = DistributedWeightedSampler(w, num_replicas=2, rank=1, seed=0)
    e0 = list(s)
    assert list(s) == e0  # iterating twice in one epoch repeats it
    s.set_epoch(1)
    e1 = list(s)
    assert e1 != e0
    t = DistributedWeightedSampler(w, num_replicas=2, rank=1, seed=0)
    t.set_epoch(1)
    assert list(t) == e1


def test_distributed_defaults_and_validation():
    s = DistributedWeightedSampler(torch.ones(10))
    assert (s.num_replicas, s.rank, len(s)) == (1, 0, 10)
    with pytest.raises(ConfigError, match="rank=2"):
        DistributedWeightedSampler([1.0, 2.0], num_replicas=2, rank=2)
    with pytest.raises(ConfigError, match="num_replicas=0"):
        DistributedWeightedSampler([1.0, 2.0], num_replicas=0, rank=0)
    with pytest.raises(DataError, match="non-negative"):
        DistributedWeightedSampler([1.0, -1.0])
    with pytest.raises(ConfigError, match="num_samples=3 exceeds"):
        DistributedWeightedSampler([1.0, 0.0, 1.0], 3, replacement=False)


# -- DistributedWeightedSampler across two real processes ----------------------

_N_SAMPLES = 4000
_SEED = 11


def _dist_worker(rank: int, world: int, init_file: str, out_dir: str, labels: np.ndarray) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        # num_replicas/rank come from the initialised process group
        s = DistributedWeightedSampler.from_labels(labels, num_samples=_N_SAMPLES, seed=_SEED)
        assert (s.num_replicas, s.rank) == (world, rank)
        for epoch in (0, 1):
            s.set_epoch(epoch)
            np.save(Path(out_dir) / f"r{rank}_e{epoch}.npy", np.asarray(list(s), dtype=np.int64))
        nr = DistributedWeightedSampler.from_labels(
            labels, num_samples=len(labels) // 2, replacement=False, seed=_SEED
        )
        np.save(Path(out_dir) / f"r{rank}_norep.npy", np.asarray(list(nr), dtype=np.int64))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_distributed_two_processes_gloo(tmp_path):
    import torch.multiprocessing as mp

    y = _labels(2000)
    out = tmp_path / "out"
    out.mkdir()
    t0 = time.monotonic()
    mp.spawn(_dist_worker, args=(2, str(tmp_path / "store"), str(out), y), nprocs=2, join=True)
    assert time.monotonic() - t0 < 60

    draws = []
    for epoch in (0, 1):
        shards = [np.load(out / f"r{r}_e{epoch}.npy") for r in range(2)]
        assert [len(s) for s in shards] == [_N_SAMPLES // 2] * 2
        # rank r holds draw positions r, r + 2, ...: rebuild the global draw by position
        glob = np.empty(_N_SAMPLES, dtype=np.int64)
        glob[0::2], glob[1::2] = shards
        ref = DistributedWeightedSampler.from_labels(y, num_samples=_N_SAMPLES, seed=_SEED, num_replicas=1, rank=0)
        ref.set_epoch(epoch)
        assert glob.tolist() == list(ref)  # same seed reproduces across processes
        assert y[glob].mean() == pytest.approx(0.5, abs=0.04)
        for shard in shards:  # each rank is balanced on its own too
            assert y[shard].mean() == pytest.approx(0.5, abs=0.05)
        draws.append(glob)
    assert not np.array_equal(draws[0], draws[1])  # set_epoch changes the draw

    a, b = (set(np.load(out / f"r{r}_norep.npy").tolist()) for r in range(2))
    assert len(a) == len(b) == 500 and not a & b
