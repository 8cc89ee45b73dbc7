"""Splits: stratified 60/20/20, group-aware, k-fold, seeds, split.csv, and clear errors when data are too few."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imbvision.data.records import Dataset, ImageRecord
from imbvision.data.splits import Split, kfold_splits, read_split_csv, train_val_test_split
from imbvision.errors import ConfigError, DataError, ImbvisionError


def make(npos: int, nneg: int, groups: int | None = None, shuffle_seed: int = 0) -> Dataset:
    """``npos`` positives then ``nneg`` negatives (shuffled); groups assigned round-robin when asked."""
    labels = np.array([1] * npos + [0] * nneg)
    np.random.default_rng(shuffle_seed).shuffle(labels)
    recs = [ImageRecord(Path(f"/data/img_{i:04d}.png"), int(y), group=None if groups is None else f"g{i % groups}")
            for i, y in enumerate(labels)]
    return Dataset(recs, source="synthetic")


def _parts(split: Split) -> list[np.ndarray]:
    return [split.train, split.val, split.test]


def _assert_partition(split: Split, n: int) -> None:
    allidx = np.concatenate(_parts(split))
    assert len(allidx) == n and len(np.unique(allidx)) == n, "parts must be disjoint and cover every image"


def test_stratified_60_20_20_preserves_class_ratio() -> None:
    ds = make(50, 450)
    s = train_val_test_split(ds, val=0.2, test=0.2, seed=0)
    _assert_partition(s, 500)
    y = ds.labels
    assert [len(p) for p in _parts(s)] == [300, 100, 100]
    assert [int(y[p].sum()) for p in _parts(s)] == [30, 10, 10]
    for p in _parts(s):
        assert np.all(np.diff(p) > 0)  # sorted indices


def test_stratified_rare_class_ratio_within_one_image() -> None:
    ds = make(23, 377, shuffle_seed=4)
    s = train_val_test_split(ds, seed=7)
    y = ds.labels
    for p, frac in zip(_parts(s), (0.6, 0.2, 0.2)):
        assert abs(int(y[p].sum()) - 23 * frac) <= 1
        assert abs(len(p) - 400 * frac) <= 1


def test_group_aware_no_group_in_two_splits() -> None:
    ds = make(60, 440, groups=50)
    s = train_val_test_split(ds, seed=3)
    _assert_partition(s, 500)
    g = ds.groups
    sets = [set(g[p]) for p in _parts(s)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    y = ds.labels
    for p in _parts(s):
        assert 0 < y[p].sum() < len(p)
    assert 0.1 < len(s.test) / 500 < 0.3 and 0.1 < len(s.val) / 500 < 0.3


def test_kfold_each_image_tested_once_and_parts_disjoint() -> None:
    ds = make(25, 225)
    folds = list(kfold_splits(ds, k=5, seed=1))
    assert len(folds) == 5
    tests = np.concatenate([f.test for f in folds])
    assert sorted(tests.tolist()) == list(range(250))
    y = ds.labels
    for f in folds:
        _assert_partition(f, 250)
        assert int(y[f.test].sum()) == 5 and len(f.test) == 50


def test_group_kfold_keeps_groups_whole() -> None:
    ds = make(40, 260, groups=30)
    g = ds.groups
    folds = list(kfold_splits(ds, k=3, seed=2))
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(300))
    for f in folds:
        sets = [set(g[p]) for p in _parts(f)]
        assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


def test_same_seed_same_split_other_seed_different() -> None:
    ds = make(30, 270)
    a, b, c = (train_val_test_split(ds, seed=s) for s in (5, 5, 6))
    for x, y in zip(_parts(a), _parts(b)):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(_parts(a), _parts(c)))
    ka = [f.test.tolist() for f in kfold_splits(ds, 4, seed=1)]
    kb = [f.test.tolist() for f in kfold_splits(ds, 4, seed=1)]
    kc = [f.test.tolist() for f in kfold_splits(ds, 4, seed=2)]
    assert ka == kb and ka != kc
    gds = make(30, 270, groups=40)
    assert [p.tolist() for p in _parts(train_val_test_split(gds, seed=1))] == \
        [p.tolist() for p in _parts(train_val_test_split(gds, seed=1))]


def test_split_csv_written_and_read_back(tmp_path: Path) -> None:
    ds = make(10, 40, groups=25)
    s = train_val_test_split(ds, seed=0)
    out = s.write_csv(tmp_path / "run" / "split.csv", ds)
    assert out == tmp_path / "run" / "split.csv"
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert list(rows[0]) == ["index", "path", "label", "group", "split", "duplicate_set", "type", "name"]
    assert len(rows) == 50
    part = s.assignment(50)
    for r in rows:
        i = int(r["index"])
        assert r["split"] == part[i] and r["path"] == str(ds.records[i].path)
        assert int(r["label"]) == ds.records[i].label and r["group"] == ds.records[i].group
    back = read_split_csv(out)
    for x, y in zip(_parts(back), _parts(s)):
        np.testing.assert_array_equal(x, y)
    assert not list((tmp_path / "run").glob(".*tmp"))


def test_too_few_positives_suggests_a_fix() -> None:
    with pytest.raises(DataError) as e:
        train_val_test_split(make(2, 100))
    msg = str(e.value)
    assert "2 positive and 100 negative" in msg and "at least 3 of each class" in msg and "add positive images" in msg
    with pytest.raises(DataError) as e:
        list(kfold_splits(make(3, 100), k=5))
    assert "only 3 positive images for 5 folds" in str(e.value) and "use at most 3 folds" in str(e.value)


def test_too_few_negatives_for_kfold_is_a_data_error() -> None:
    with pytest.raises(DataError, match="only 2 negative images for 3 folds"):
        list(kfold_splits(make(30, 2), k=3))


def test_too_few_groups_is_a_data_error_with_counts() -> None:
    # Before the fix, scikit-learn's ValueError ("Cannot have number of splits ...") escaped.
    with pytest.raises(DataError) as e:
        train_val_test_split(make(20, 80, groups=3))
    assert type(e.value) is DataError
    assert "at least 5 groups but there are 3" in str(e.value) and "more groups" in str(e.value)
    with pytest.raises(DataError) as e:
        list(kfold_splits(make(20, 80, groups=4), k=5))
    assert "at least 5 groups but there are 4" in str(e.value)


def test_positives_in_too_few_groups() -> None:
    recs = [ImageRecord(Path(f"/d/{i}.png"), int(i < 10), group=f"p{i % 2}" if i < 10 else f"n{i}") for i in range(100)]
    with pytest.raises(DataError) as e:
        train_val_test_split(Dataset(recs))
    assert "positive images in at least 3 different groups, but they are in 2" in str(e.value)


def test_kfold_inner_validation_too_small_is_a_data_error() -> None:
    # 2 folds with 2 positives leave 1 positive for train+val: scikit-learn refused with a ValueError before.
    with pytest.raises(DataError) as e:
        list(kfold_splits(make(2, 30), k=2))
    assert "validation part of fold 1" in str(e.value) or "split has" in str(e.value)


@pytest.mark.parametrize("val, test", [(0, 0.2), (0.2, 1.0), (0.5, 0.5), (-0.1, 0.2)])
def test_bad_fractions(val: float, test: float) -> None:
    with pytest.raises(ConfigError, match="split fractions"):
        train_val_test_split(make(30, 100), val=val, test=test)


def test_bad_fold_count() -> None:
    with pytest.raises(ConfigError, match="--folds 1 invalid"):
        list(kfold_splits(make(30, 100), k=1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(npos=st.integers(0, 12), nneg=st.integers(0, 40), groups=st.one_of(st.none(), st.integers(1, 12)),
       k=st.integers(2, 5), seed=st.integers(0, 3))
def test_any_small_dataset_splits_or_says_why(npos: int, nneg: int, groups: int | None, k: int, seed: int) -> None:
    ds = make(npos, nneg, groups=groups, shuffle_seed=seed)
    y = ds.labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scikit-learn's "least populated class" notes
        for make_split in (lambda: [train_val_test_split(ds, seed=seed)], lambda: list(kfold_splits(ds, k, seed=seed))):
            try:
                splits = make_split()
            except ImbvisionError as exc:
                assert str(exc)
                continue
            for s in splits:
                _assert_partition(s, len(ds))
                for p in _parts(s):
                    assert 0 < y[p].sum() < len(p)  # every part has both classes
                if groups is not None:
                    sets = [set(ds.groups[p]) for p in _parts(s)]
                    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
