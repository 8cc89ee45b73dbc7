"""Issue 21 §1, §9: splits that honour the request; say what was done to the training positives and strategy."""

from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imbvision.data.checks import check_dataset, link_duplicates, load_checked
from imbvision.data.duplicates import MAX_NEAR_SET, find_duplicates
from imbvision.data.splits import SPLIT_TOLERANCE, SplitBalanceWarning, split_balance, train_val_test_split
from imbvision.training.prepare import duplicate_features, prepare_data


def _chain(n: int):
    """``n`` look-alikes in a line: image i differs from i+1 by one hash bit and a small angle of its embedding."""
    base = 0x5A5A_5A5A_5A5A_5A5A
    hashes = [base ^ ((1 << i) - 1) for i in range(n)]  # hamming(i, j) = |i - j|
    angle = np.arange(n) * 0.012 * (1 + 0.3 * np.sin(np.arange(n)))  # uneven steps: some links weaker
    feats = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return [f"sha{i}" for i in range(n)], hashes, feats


def test_a_chain_of_look_alikes_is_cut_at_its_weakest_links_into_small_groups() -> None:
    shas, ph, X = _chain(40)
    uncapped = find_duplicates(shas, ph, X, max_set=10_000)
    assert uncapped.sets == 1 and uncapped.images_in_sets == 40  # what connected components made: one giant set
    dup = find_duplicates(shas, ph, X)
    sizes = np.bincount(dup.set_id)[1:]
    assert sizes.max() <= MAX_NEAR_SET and dup.images_in_sets == 40 and dup.links_cut > 0
    # the links kept are the strongest: every kept pair is at least as close as the cut pair it beat inside its set
    cos = {(a, b): c for (a, b, _), c in zip(dup.near, dup.cosine)}
    for (a, b, _), kept in zip(dup.near, dup.linked):
        assert kept == (dup.set_id[a] == dup.set_id[b] and dup.set_id[a] > 0)
    tightest = max(cos, key=cos.get)
    assert dup.set_id[tightest[0]] == dup.set_id[tightest[1]] != 0


def test_exact_copies_stay_together_whatever_their_number() -> None:
    shas = ["same"] * 12 + [f"other{i}" for i in range(8)]
    dup = find_duplicates(shas, [1] * 12 + list(range(100, 108)), None, near=False)
    assert dup.sets == 1 and set(np.flatnonzero(dup.set_id)) == set(range(12))


@pytest.fixture(scope="module")
def look_alikes(tmp_path_factory) -> Path:
    """Many distinct but near-identical objects: the demo generator with a low variation."""
    from imbvision.data.synthetic import DemoSpec, generate_demo_dataset

    return generate_demo_dataset(tmp_path_factory.mktemp("alike") / "data",
                                 DemoSpec(n=90, positive_rate=0.2, seed=11, size=64, variation=0.04))


def test_near_identical_objects_keep_the_requested_fractions_and_prevalence(look_alikes: Path, cache_dir: Path) -> None:
    feats = duplicate_features(cache_dir=cache_dir, progress=False)
    rep = load_checked(str(look_alikes), group_duplicates=True, features=feats)
    ds = rep.dataset
    dup = rep.duplicates
    assert dup.links_cut > 0  # the look-alikes chain: without the cap they would form giant sets
    assert np.bincount(dup.set_id)[1:].max() <= MAX_NEAR_SET
    y = ds.labels
    for seed in range(6):
        sp = train_val_test_split(ds, seed=seed)
        bal = split_balance(sp, y, val=0.2, test=0.2)
        for name, want in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
            assert abs(bal["parts"][name]["fraction"] - want) <= SPLIT_TOLERANCE, (seed, bal["parts"])
        assert abs(bal["parts"]["test"]["prevalence"] - y.mean()) <= SPLIT_TOLERANCE + 1 / len(sp.test), seed
        assert not bal["off"]
        part = sp.assignment(len(ds))
        for s in set(dup.set_id[dup.set_id > 0].tolist()):
            assert len(set(part[dup.set_id == s])) == 1  # no set straddles two parts


def test_grouping_uses_one_representation_whatever_the_run_settings(look_alikes: Path, cache_dir: Path) -> None:
    from imbvision.training.config import TrainConfig

    ds = load_checked(str(look_alikes)).dataset
    a = duplicate_features(TrainConfig(data=str(look_alikes), image_size=224, cache_dir=str(cache_dir)))(ds.subset(range(6)))
    b = duplicate_features(TrainConfig(data=str(look_alikes), image_size=448, tiles=2, backbone="test_efficientnet",
                                       weights="none", cache_dir=str(cache_dir)))(ds.subset(range(6)))
    np.testing.assert_array_equal(a, b)
    sets = []
    for size in (224, 448):
        cfg = TrainConfig(data=str(look_alikes), image_size=size, cache_dir=str(cache_dir))
        sets.append([r.duplicate_set for r in load_checked(str(look_alikes), group_duplicates=True,
                                                           features=duplicate_features(cfg)).dataset.records])
    assert sets[0] == sets[1] and any(s is not None for s in sets[0])


def _hard_linked(tmp: Path, copies: int, others: int = 60, positives: int = 12) -> Path:
    rng = np.random.default_rng(0)
    (tmp / "img").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp / "img" / "base.png")
    rows = [["img/base.png", 0]]
    for i in range(copies):
        os.link(tmp / "img" / "base.png", tmp / "img" / f"copy_{i:05d}.png")
        rows.append([f"img/copy_{i:05d}.png", 0])
    for i in range(others):
        Image.fromarray(np.random.default_rng(i + 1).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            tmp / "img" / f"o{i}.png")
        rows.append([f"img/o{i}.png", int(i < positives)])
    with open(tmp / "m.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["path", "label"], *rows])
    return tmp / "m.csv"


def test_one_image_under_thousands_of_names_does_not_become_the_test_set(tmp_path: Path, capsys) -> None:
    manifest = _hard_linked(tmp_path, copies=1999)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prep = prepare_data(str(manifest), seed=0, out_dir=tmp_path / "run", progress=True)
    ds, sp = prep.dataset, prep.split
    copies = {i for i, r in enumerate(ds.records) if r.duplicate_set is not None}
    assert len(copies) == 2000 and copies <= set(sp.train.tolist())  # kept whole, in training
    assert not copies & set(sp.test.tolist()) and not copies & set(sp.val.tolist())
    others = len(ds) - len(copies)
    assert abs(len(sp.test) / others - 0.2) <= 1 / others + 1e-9  # 20 % of the other images, not 99.7 % of all
    said = capsys.readouterr().err
    assert "kept whole in train" in said and "2,000 images" in said
    msgs = [str(w.message) for w in caught if issubclass(w.category, SplitBalanceWarning)]
    assert len(msgs) == 1 and "test 0.6% of the images (asked 20%)" in msgs[0]
    cfg = prep.balance
    assert cfg["parts"]["test"]["images"] == len(sp.test) and cfg["off"]


def test_train_records_the_realised_split_and_warns_in_one_line(tmp_path: Path, tiny_kwargs: dict) -> None:
    from imbvision.workflows.train import train

    manifest = _hard_linked(tmp_path / "d", copies=59, others=60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(None, tmp_path / "run", **{**tiny_kwargs, "data": str(manifest)}, strategy="ce", progress=False)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    parts = cfg["split_realised"]["parts"]
    with open(tmp_path / "run" / "split.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    for name in ("train", "val", "test"):
        mine = [r for r in table if r["split"] == name]
        assert parts[name]["images"] == len(mine) and parts[name]["positives"] == sum(r["label"] == "1" for r in mine)
        assert parts[name]["fraction"] == len(mine) / len(table)
    assert cfg["split_realised"]["off"]  # 60 copies of one image: train holds them all
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["split"] == cfg["split_realised"]
    msgs = [str(w.message) for w in caught if issubclass(w.category, SplitBalanceWarning)]
    assert len(msgs) == 1 and "\n" not in msgs[0] and "kept whole in train" in msgs[0]
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "The split as realised" in html and "kept whole in train" in html


def test_a_split_without_duplicates_is_within_tolerance_and_silent(tiny_manifest: Path) -> None:
    ds = check_dataset(__import__("imbvision.data.sources", fromlist=["x"]).load_source(str(tiny_manifest))).dataset
    for seed in range(3):
        bal = split_balance(train_val_test_split(ds, seed=seed), ds.labels, val=0.2, test=0.2)
        assert not bal["off"], bal


def test_zero_training_positive_rate_says_how_many_were_dropped(tiny_manifest: Path, tmp_path: Path, capsys) -> None:
    prep = prepare_data(str(tiny_manifest), seed=1, train_positive_rate=0, progress=True, out_dir=tmp_path)
    full = train_val_test_split(prep.dataset, seed=1)
    had = int(prep.dataset.labels[full.train].sum())
    assert had > 0 and prep.dataset.labels[prep.split.train].sum() == 0
    err = capsys.readouterr().err
    assert f"--train-positive-rate 0: {had} of {had} training positives dropped" in err
    assert prep.balance["train_after_positive_rate"]["positives"] == 0


def test_train_from_with_another_strategy_never_says_the_simplest_model_is_kept(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    import imbvision.cli as cli

    cfg = {"data": "demo:100", "strategies": ["ce", "focal"], "seeds": 3, "image_size": 64, "val": 0.25}
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "leaderboard.json").write_text(json.dumps({"config": cfg, "leaderboard": [
        {"strategy": "focal", "ap_mean": 0.81, "delta_ap": 0.01, "delta_ci": [-0.1, 0.1], "p_holm": 0.6, "cells": 3},
        {"strategy": "ce", "ap_mean": 0.8, "cells": 3}]}))
    seen = {}

    def fake_train(settings, out, **kw):
        seen.update(settings)
        raise SystemExit(0)

    monkeypatch.setattr(cli, "_train", fake_train)
    for args, trained in ((["--strategy", "focal"], "focal"), ([], "ce")):
        res = CliRunner().invoke(cli.app, ["train", "--from", str(tmp_path / "cmp"), "--out", str(tmp_path / "r"), *args])
        assert res.exit_code == 0, res.output
        why = seen["extra"]["chosen_because"]
        assert seen["strategy"] == trained
        if trained == "focal":
            assert "simplest model is kept" not in why.split("(its reason")[0]
            assert why.startswith("focal was asked for with --strategy; the comparison recommends ce")
        else:
            assert "so the simplest model is kept" in why


def test_audit_lists_a_cut_link_but_makes_no_label_conflict_suspect_of_it() -> None:
    from imbvision.audit.checks.duplicates import _duplicates
    from imbvision.data.records import Dataset, ImageRecord

    shas, ph, X = _chain(30)
    y = np.zeros(30, dtype=np.int64)
    y[29] = 1  # the chain's far end is a real defect: a look-alike of its neighbours, not a copy of a good image
    ds = Dataset([ImageRecord(Path(f"/d/{i:03d}.png"), int(y[i])) for i in range(30)])
    rows, summary = _duplicates(ds, X, y, shas, ph, None, 6, 0.98)
    dup = find_duplicates(shas, ph, X)
    assert summary["largest_set"] <= MAX_NEAR_SET and summary["near_links_cut"] == dup.links_cut > 0
    for r in rows:
        assert r["set"] == (dup.set_id[r["a"]] or dup.set_id[r["b"]])
        assert r["linked"] == bool(dup.set_id[r["a"]] == dup.set_id[r["b"]] != 0)
    conflicts = [r for r in rows if r["label_conflict"]]
    assert summary["label_conflict_pairs"] == sum(r["linked"] for r in conflicts)
    assert summary["label_conflict_pairs"] < len(conflicts)  # the chain's far links conflict but are cut
