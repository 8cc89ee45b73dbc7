"""Issue 21 §2, §3: a given test set (``--split-file``, ``--split official``) and the benchmark folder layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imbvision.data.records import Dataset
from imbvision.data.sources import load_source
from imbvision.data.split_file import given_test, read_split_file
from imbvision.data.splits import train_val_test_split
from imbvision.errors import ConfigError, DataError


def make_mvtec(root: Path, *, train_good: int = 24, test_good: int = 10, per_type: int = 4, size: int = 64) -> Path:
    """A small MVTec-layout folder from the demo generator; numbering restarts at 000 in every folder."""
    from imbvision.data.synthetic import DemoSpec, render_demo_image

    spec = DemoSpec(n=200, positive_rate=0.2, seed=5, size=size)
    k = 0

    def save(folder: Path, i: int, positive: bool) -> tuple[Path, np.ndarray | None, str]:
        nonlocal k
        arr, mask, kind = render_demo_image(spec, k, positive)
        k += 1
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:03d}.png"
        Image.fromarray(arr).save(path)
        return path, mask, kind

    for i in range(train_good):
        save(root / "train" / "good", i, False)
    for i in range(test_good):
        save(root / "test" / "good", i, False)
    for kind in ("crack", "hole"):
        for i in range(per_type):
            path, mask, _ = save(root / "test" / kind, i, True)
            (root / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "ground_truth" / kind / f"{i:03d}_mask.png")
    return root


@pytest.fixture(scope="module")
def mvtec(tmp_path_factory) -> Path:
    return make_mvtec(tmp_path_factory.mktemp("mvtec") / "part")


def test_benchmark_layout_reads_types_masks_and_its_own_division(mvtec: Path) -> None:
    for kind in ("mvtec", "anomaly-folder"):
        ds = load_source(f"{kind}:{mvtec}")
        assert len(ds) == 24 + 10 + 8
        by = {(r.part, r.class_name): [] for r in ds.records}
        for r in ds.records:
            by[(r.part, r.class_name)].append(r)
        assert sorted(by) == [("test", "crack"), ("test", "good"), ("test", "hole"), ("train", "good")]
        assert all(r.label == 0 and r.mask is None for r in by[("train", "good")] + by[("test", "good")])
        for r in by[("test", "crack")]:
            assert r.label == 1 and r.mask == mvtec / "ground_truth" / "crack" / f"{r.path.stem}_mask.png"


def test_benchmark_layout_errors_name_the_folder(tmp_path: Path, mvtec: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_source(f"mvtec:{tmp_path / 'nope'}")
    (tmp_path / "cats" / "bottle").mkdir(parents=True)
    (tmp_path / "cats" / "bottle" / "test").symlink_to(mvtec / "test")
    with pytest.raises(DataError, match=r"holds 1 categories \(bottle\); give one of them"):
        load_source(f"mvtec:{tmp_path / 'cats'}")
    (tmp_path / "e" / "test" / "crack").mkdir(parents=True)
    with pytest.raises(DataError, match="has no images"):
        load_source(f"mvtec:{tmp_path / 'e'}")


def test_official_split_keeps_the_layouts_test_and_works_without_training_positives(mvtec: Path) -> None:
    ds = load_source(f"mvtec:{mvtec}")
    test, notes = given_test(ds, split="official")
    assert sorted(ds.records[i].part for i in test) == ["test"] * 18 and notes
    for seed in range(4):
        sp = train_val_test_split(ds, val=0.2, test=0.2, seed=seed, fixed_test=test)
        assert sp.fixed_test and np.array_equal(sp.test, np.sort(test))
        assert ds.labels[sp.train].sum() == 0 and ds.labels[sp.val].sum() == 0  # zero positives outside test
        assert {ds.records[i].part for i in np.r_[sp.train, sp.val]} == {"train"}
        assert abs(len(sp.val) - 0.2 * len(ds)) <= 1  # `val` of all images (within one), drawn from the training part
    seeds = [tuple(train_val_test_split(ds, seed=s, fixed_test=test).val) for s in range(4)]
    assert len(set(seeds)) > 1  # seeds redraw validation


def test_official_split_needs_a_layout_with_its_own_division(tiny_manifest: Path) -> None:
    ds = load_source(str(tiny_manifest))
    with pytest.raises(DataError, match="--split official needs a source with its own train/test division"):
        given_test(ds, split="official")
    with pytest.raises(ConfigError, match="valid: random, official"):
        given_test(ds, split="offical")


def _write(path: Path, rows: list[list[str]], header=("path", "split")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _rows(ds: Dataset, root: Path, test_every: int = 4) -> list[list[str]]:
    """Every image, paths relative to the data root; every 4th of each class in test."""
    seen = {0: 0, 1: 0}
    out = []
    for r in ds.records:
        seen[r.label] += 1
        out.append([Path(r.path).relative_to(root).as_posix(), "test" if seen[r.label] % test_every == 0 else "train"])
    return out


def test_split_file_fixes_the_test_set_and_its_errors_name_the_line(tmp_path: Path, tiny_manifest: Path) -> None:
    ds = load_source(str(tiny_manifest))
    root = tiny_manifest.parent
    rows = _rows(ds, root)
    good = _write(tmp_path / "split.csv", rows)
    part, _ = read_split_file(good, ds)
    test = np.flatnonzero(part == "test")
    assert len(test) == sum(r[1] == "test" for r in rows)
    for seed in range(3):
        sp = train_val_test_split(ds, seed=seed, fixed_test=test)
        assert np.array_equal(sp.test, test)
        assert len(np.intersect1d(sp.val, test)) == 0 and len(sp.train) + len(sp.val) + len(sp.test) == len(ds)
    bad = [r[:] for r in rows]
    bad[5][1] = "holdout"
    with pytest.raises(DataError, match=r"line 7: unknown split 'holdout'.*valid: train, val, test"):
        read_split_file(_write(tmp_path / "b1.csv", bad), ds)
    with pytest.raises(DataError, match=r"1 path\(s\) that are not images of the data: images/none.png \(line 122\)"):
        read_split_file(_write(tmp_path / "b2.csv", rows + [["images/none.png", "train"]]), ds)
    with pytest.raises(DataError, match=r"does not list 1 image\(s\)"):
        read_split_file(_write(tmp_path / "b3.csv", rows[1:]), ds)
    one_class = [[p, "test" if i < 10 and ds.records[i].label == 0 else "train"] for i, (p, _) in enumerate(rows)]
    with pytest.raises(DataError, match="test split holds .* no positive"):
        read_split_file(_write(tmp_path / "b4.csv", one_class), ds)
    (tmp_path / "b5.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    with pytest.raises(DataError, match="split file .*b5.csv is not UTF-8"):
        read_split_file(tmp_path / "b5.csv", ds)
    with pytest.raises(DataError, match="lacks column"):
        read_split_file(_write(tmp_path / "b6.csv", rows, header=("file", "part")), ds)
    with pytest.raises(DataError, match="lists .* twice"):
        read_split_file(_write(tmp_path / "b7.csv", rows + [rows[0]]), ds)


def test_compare_on_a_split_file_keeps_the_test_set_and_says_what_the_interval_covers(
        tmp_path: Path, tiny_manifest: Path, tiny_kwargs: dict) -> None:
    from imbvision.workflows.compare import run_compare

    ds = load_source(str(tiny_manifest))
    split_file = _write(tmp_path / "split.csv", _rows(ds, tiny_manifest.parent, test_every=3))
    res = run_compare(**{**tiny_kwargs, "max_synthetic": 20}, strategies="ce,weighted-ce", seeds=3, out=tmp_path / "cmp",
                      split_file=str(split_file), progress=False)
    board = json.loads((tmp_path / "cmp" / "leaderboard.json").read_text())
    st = board["statistics"]
    assert st["fixed_test"] and "not the sampling of the test images" in st["replication"]
    tests = {tuple(json.loads(p.read_text())["test_index"]) for p in (tmp_path / "cmp" / "cells").glob("*.json")}
    assert len(tests) == 1  # every cell, every seed: one test set
    assert len(board["splits"]) == 3 and all(b["parts"]["test"]["images"] == len(next(iter(tests))) for b in board["splits"])
    from imbvision.experiments.split_plan import plan_splits
    planned = plan_splits(ds, 3, None, 0.2, 0.2, None, np.asarray(next(iter(tests))))
    assert len({tuple(sp.val) for _, _, sp in planned}) == 3  # each seed redraws validation around the fixed test
    html = (tmp_path / "cmp" / "report.html").read_text(encoding="utf-8")
    assert "not the sampling of the test images" in html and "The splits as realised" in html
    assert board["config"]["split_file"]["sha256"] and res.fixed_test
    from imbvision.workflows.promote import settings_from_compare
    assert settings_from_compare(tmp_path / "cmp")[0]["split_file"] == str(split_file)  # train --from keeps the test set
    # the same folder with another split file is another comparison: refused, not resumed
    other = _write(tmp_path / "split2.csv", _rows(ds, tiny_manifest.parent, test_every=4))
    with pytest.raises(ConfigError, match="other settings"):
        run_compare(**tiny_kwargs, strategies="ce,weighted-ce", seeds=3, out=tmp_path / "cmp",
                    split_file=str(other), progress=False)
    with pytest.raises(ConfigError, match="drop --folds"):
        run_compare(**tiny_kwargs, strategies="ce", seeds=2, folds=3, out=tmp_path / "cmp3", split_file=str(split_file),
                    progress=False)


def test_train_on_the_benchmark_layout_names_files_with_their_folder_and_reports_ap_per_type(
        tmp_path: Path, mvtec: Path, tiny_kwargs: dict) -> None:
    from imbvision.workflows.train import train

    # a split file giving test images from both test/good and test/<type>, and training positives
    ds = load_source(f"mvtec:{mvtec}")
    rows = []
    for r in ds.records:
        rel = Path(r.path).relative_to(mvtec).as_posix()
        test = r.part == "test" and int(rel.split("/")[-1][:3]) % 2 == 0
        rows.append([rel, "test" if test else "train"])
    split_file = _write(tmp_path / "split.csv", rows)
    res = train(None, tmp_path / "run", **{**tiny_kwargs, "data": f"mvtec:{mvtec}"}, split_file=str(split_file),
                strategy="ce", progress=False)
    out = tmp_path / "run"
    with open(out / "split.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    names = [r["name"] for r in table]
    assert "test/good/000.png" in names and "test/crack/000.png" in names and "train/good/000.png" in names
    assert len(set(names)) == len(names)
    assert {r["name"] for r in table if r["split"] == "test"} == {r[0] for r in rows if r[1] == "test"}
    results = json.loads((out / "results.json").read_text())
    assert set(results["ap_by_type"]) == {"crack", "hole"}
    assert all(0 <= v["ap"] <= 1 and v["positives"] == 2 for v in results["ap_by_type"].values())
    cfg = json.loads((out / "config.json").read_text())
    n_test = sum(r[1] == "test" for r in rows)
    assert cfg["split_file"] == str(split_file) and cfg["split_realised"]["parts"]["test"]["images"] == n_test
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Average precision per type" in html and "The split as realised" in html
    assert res.metrics["n"] == n_test


def test_split_file_errors_are_one_line_on_the_command_line(tmp_path: Path, tiny_manifest: Path, tiny_kwargs: dict) -> None:
    from typer.testing import CliRunner

    import imbvision.cli as cli

    ds = load_source(str(tiny_manifest))
    rows = _rows(ds, tiny_manifest.parent)
    rows[0][1] = "Testing"
    bad = _write(tmp_path / "bad.csv", rows)
    base = ["--data", str(tiny_manifest), "--backbone", "test_efficientnet", "--weights", "none", "--image-size", "64",
            "--cache-dir", tiny_kwargs["cache_dir"]]
    for cmd in (["train", *base, "--out", str(tmp_path / "r")], ["compare", *base, "--out", str(tmp_path / "c"),
                                                                 "--strategies", "ce", "--seeds", "2"]):
        res = CliRunner().invoke(cli.app, [*cmd, "--split-file", str(bad)])
        assert res.exit_code == 2, res.output
        assert "line 2: unknown split 'Testing'" in res.output and "Traceback" not in res.output
        res = CliRunner().invoke(cli.app, [*cmd, "--split", "official"])
        assert res.exit_code == 2 and "--split official needs a source with its own train/test division" in res.output
    assert not (tmp_path / "r").exists()  # nothing half-made left behind
    res = CliRunner().invoke(cli.app, ["audit", "--data", str(tiny_manifest), "--out", str(tmp_path / "a"),
                                       "--split-file", str(bad)])
    assert res.exit_code == 2 and "unknown split 'Testing'" in res.output
