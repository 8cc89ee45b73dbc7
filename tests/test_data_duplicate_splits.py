"""Issue 12 §5: duplicates and near duplicates never straddle two splits (the audit's detector, one implementation)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imbvision.data.checks import check_dataset, link_duplicates, load_checked
from imbvision.data.duplicates import find_duplicates, hamming
from imbvision.data.records import Dataset, ImageRecord
from imbvision.data.splits import kfold_splits, train_val_test_split
from imbvision.training.prepare import prepare_data


def _noise(seed: int, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _manifest(tmp: Path, n_pos: int = 8, n_neg: int = 32, copies: int = 3) -> tuple[Path, list[str]]:
    """Distinct images plus one positive saved under ``copies`` names (same bytes)."""
    (tmp / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_pos + n_neg):
        Image.fromarray(_noise(i)).save(tmp / "img" / f"{i}.png")
        rows.append([f"img/{i}.png", int(i < n_pos)])
    data = (tmp / "img" / "0.png").read_bytes()
    names = [f"img/copy_{k}.png" for k in range(copies - 1)]
    for name in names:
        (tmp / name).write_bytes(data)
        rows.append([name, 1])
    with open(tmp / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return tmp / "manifest.csv", ["img/0.png", *names]


def _part_of(split, n: int) -> np.ndarray:
    return split.assignment(n)


def test_a_positive_saved_under_three_names_never_lands_in_two_splits(tmp_path: Path) -> None:
    manifest, names = _manifest(tmp_path)
    rep = load_checked(str(manifest), group_duplicates=True)
    ds = rep.dataset
    idx = [i for i, r in enumerate(ds.records) if any(str(r.path).endswith(n) for n in names)]
    assert len(idx) == 3
    assert len({ds.records[i].duplicate_set for i in idx}) == 1 and ds.records[idx[0]].duplicate_set is not None
    assert any("1 duplicate set (" in n for n in rep.notes)
    for seed in range(25):
        parts = _part_of(train_val_test_split(ds, seed=seed), len(ds))
        assert len({parts[i] for i in idx}) == 1, seed
        for fold in kfold_splits(ds, 3, seed=seed):
            parts = _part_of(fold, len(ds))
            assert len({parts[i] for i in idx}) == 1, seed
    # turned off, the copies do straddle splits on some seed (the leak the grouping prevents)
    plain = load_checked(str(manifest), group_duplicates=False).dataset
    assert all(r.duplicate_set is None for r in plain.records)
    assert any(len({_part_of(train_val_test_split(plain, seed=s), len(plain))[i] for i in idx}) > 1
               for s in range(25))


def test_prepare_data_writes_the_group_into_split_csv_and_says_how_many_sets(tmp_path: Path, capsys) -> None:
    manifest, names = _manifest(tmp_path)
    prep = prepare_data(str(manifest), seed=3, out_dir=tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert "1 duplicate set (" in err and "--no-group-duplicates" in err
    rows = list(csv.DictReader(open(tmp_path / "run" / "split.csv", encoding="utf-8")))
    copies = [r for r in rows if any(r["path"].endswith(n) for n in names)]
    assert len(copies) == 3 and len({r["duplicate_set"] for r in copies}) == 1 and copies[0]["duplicate_set"] == "1"
    assert len({r["split"] for r in copies}) == 1
    assert all(r["duplicate_set"] == "" for r in rows if r not in copies)
    off = prepare_data(str(manifest), seed=3, out_dir=tmp_path / "off", group_duplicates=False)
    assert all(r.duplicate_set is None for r in off.dataset.records)
    assert prep.dataset.labels.tolist() == off.dataset.labels.tolist()


def test_without_duplicates_the_split_is_unchanged(tmp_path: Path) -> None:
    manifest, _ = _manifest(tmp_path, copies=1)
    linked = load_checked(str(manifest), group_duplicates=True).dataset
    plain = load_checked(str(manifest)).dataset
    for seed in range(5):
        a, b = train_val_test_split(linked, seed=seed), train_val_test_split(plain, seed=seed)
        assert all(np.array_equal(x, y) for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)))


def test_near_duplicates_need_the_embedding_criterion_too(tmp_path: Path) -> None:
    """A re-encoded copy is a near duplicate when embeddings agree; the perceptual hash alone never links."""
    manifest, _ = _manifest(tmp_path, copies=1)
    smooth = np.kron(_noise(99, 6), np.ones((4, 4, 1), dtype=np.uint8))  # low-frequency picture: robust pHash
    Image.fromarray(smooth).save(tmp_path / "img" / "a.png")
    Image.fromarray(smooth).save(tmp_path / "img" / "a_copy.jpg", quality=90)
    with open(manifest, "a", encoding="utf-8") as fh:
        fh.write("img/a.png,1\nimg/a_copy.jpg,1\n")
    rep = check_dataset(load_checked(str(manifest)).dataset)
    n = len(rep.dataset)
    X = np.random.default_rng(0).normal(size=(n, 8))
    X[-1] = X[-2] + 1e-3  # the two copies embed alike
    near = link_duplicates(rep, X).dataset.records
    assert near[-1].duplicate_set is not None and near[-1].duplicate_set == near[-2].duplicate_set
    assert sum(r.duplicate_set is not None for r in near) == 2
    exact_only = link_duplicates(check_dataset(rep.dataset), None).dataset.records
    assert all(r.duplicate_set is None for r in exact_only)


def test_duplicate_sets_merge_the_groups_they_touch() -> None:
    recs = [ImageRecord(Path(f"/x/{i}.png"), int(i % 5 == 0), group=f"g{i // 2}",
                        duplicate_set=1 if i in (0, 9) else None) for i in range(60)]
    ds = Dataset(recs)
    for seed in range(10):
        parts = train_val_test_split(ds, seed=seed).assignment(60)
        # 0 and 9 are duplicates; their groups g0 = {0, 1} and g4 = {8, 9} must all go together
        assert len({parts[i] for i in (0, 1, 8, 9)}) == 1


@pytest.mark.parametrize("threshold", [0, 3, 6, 10])
def test_hash_only_candidates_find_every_pair_brute_force_finds(threshold: int) -> None:
    rng = np.random.default_rng(threshold)
    base = rng.integers(0, 2 ** 63, 40, dtype=np.uint64)
    flips = [np.uint64(1) << np.uint64(int(b)) for b in rng.integers(0, 64, 200)]
    hashes = list(base)
    for k, f in enumerate(flips[:60]):
        hashes.append(np.uint64(hashes[k % 40]) ^ f ^ flips[(k + 7) % 200])
    ph = [int(h) for h in hashes]
    found = find_duplicates([None] * len(ph), ph, None, hash_threshold=threshold)
    arr = np.array(ph, dtype=np.uint64)
    brute = sorted((a, b) for a in range(len(ph)) for b in range(a + 1, len(ph))
                   if hamming(arr[a], arr[b]) <= threshold)
    assert [(a, b) for a, b, _ in found.near] == brute


@pytest.mark.parametrize("command", ["train", "compare"])
def test_cli_has_the_switch_to_turn_grouping_off(command: str) -> None:
    from typer.testing import CliRunner

    from imbvision.cli import app

    out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
    assert "--no-group-duplicates" in out


def test_grouping_note_reaches_the_run_report(tmp_path, cache_dir):
    """Issue 13: "duplicates grouped" is a warning that matters, so the run's report shows it too."""
    import json

    from imbvision.workflows.train import train

    manifest, _ = _manifest(tmp_path / "data")
    res = train(data=str(manifest), out=tmp_path / "run", backbone="test_efficientnet", weights="none",
                image_size=32, n_boot=0, cache_dir=str(cache_dir), progress=False)
    notes = json.loads((res.out / "warnings.json").read_text(encoding="utf-8"))["warnings"]
    grouped = [n for n in notes if "duplicate set" in n]
    assert len(grouped) == 1 and grouped[0].startswith("1 duplicate set")
    assert grouped[0] in (res.out / "report.html").read_text(encoding="utf-8")


def test_no_note_when_there_is_no_duplicate(tmp_path):
    """A clean dataset gets no "0 duplicate sets" remark (nothing to warn about in the report)."""
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(12):
        Image.fromarray(_noise(100 + i)).save(tmp_path / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{int(i < 4)}")
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    rep = load_checked(str(tmp_path / "m.csv"), progress=False)
    assert not any("duplicate set" in n for n in rep.notes)
