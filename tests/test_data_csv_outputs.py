"""Issue 14 §2: formula prefixes are neutralised in every CSV the tool writes, and read back exactly."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imbvision._csv import csv_text, neutralize, unneutralize
from imbvision.audit import apply_review, run_audit
from imbvision.data.checks import load_checked
from imbvision.data.sources import load_source
from imbvision.data.splits import read_split_csv, read_split_rows, train_val_test_split

EVIL = ["=HYPERLINK(\"x\",\"y\").png", "+cmd.png", "-2+3.png", "@sum.png", "\tt.png", "\rr.png"]


@pytest.mark.parametrize("value", EVIL + ["'=x", "''-1", "=", "-", "'"])
def test_neutralize_quotes_formulas_and_round_trips(value: str) -> None:
    out = neutralize(value)
    if value.lstrip("'")[:1] in ("=", "+", "-", "@", "\t", "\r"):
        assert out == "'" + value
    assert unneutralize(out) == value


@pytest.mark.parametrize("number", ["-0.014", "+3", "1e-5", "-2", "0.5", "-1.5E+3"])
def test_plain_numbers_are_left_alone(number: str) -> None:
    assert neutralize(number) == number and csv_text(["a"], [[number]]) == f"a\n{number}\n"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_bad_files_split_audit_and_review_csvs_are_neutralised(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths: a cell starts with the file name itself
    rng = np.random.default_rng(0)
    names = [f"n{i}.png" for i in range(30)] + EVIL[:4]
    labels = [int(i % 4 == 0) for i in range(len(names))]
    for n in names:
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / n)
    (tmp_path / "=bad().png").write_bytes(b"not an image")
    with open("m.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows([[n, y] for n, y in zip(names, labels)] + [["=bad().png", 0]])
    rep = load_checked("m.csv", skip_bad=True, out_dir=tmp_path / "out")
    raw = (tmp_path / "out" / "bad_files.csv").read_text(encoding="utf-8")
    assert "\n'=bad().png," in raw and "\n=bad" not in raw
    ds = rep.dataset
    split = train_val_test_split(ds, seed=0)
    split.write_csv(tmp_path / "out" / "split.csv", ds)
    text = (tmp_path / "out" / "split.csv").read_text(encoding="utf-8")
    for evil in EVIL[:4]:
        assert f"\n{evil}" not in text and f"'{evil}" in text.replace('""', '"')
    back = read_split_csv(tmp_path / "out" / "split.csv")
    assert np.array_equal(back.test, split.test) and np.array_equal(back.train, split.train)
    rows = read_split_rows(tmp_path / "out" / "split.csv")  # what `evaluate` reads: the names exactly
    assert {rows[i]["path"] for i in rows} == {str(r.path) for r in ds.records}
    # audit outputs
    X = rng.normal(size=(len(ds), 8)) + np.outer(ds.labels, np.ones(8)) * 3
    res = run_audit(ds, X, tmp_path / "audit", progress=False, repeats=1)
    for f in ("suspects.csv", "duplicates.csv"):
        for row in _rows(tmp_path / "audit" / f):
            for v in row.values():
                assert not (v[:1] in ("=", "+", "@", "\t", "\r") or (v[:1] == "-" and not _is_number(v))), (f, v)
    # a review of an evil name is read back to the right image
    review = tmp_path / "review.csv"
    with open(review, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "decision"])
        w.writerow([neutralize(EVIL[0]), "drop"])
    summary = apply_review(review, ds, tmp_path / "new.csv")
    assert summary["dropped"] == 1 and summary["dropped_paths"][0].endswith(EVIL[0])
    assert len(load_source(str(tmp_path / "new.csv"))) == len(ds) - 1
    assert res.summary["counts"]["images"] == len(ds)


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def test_a_manifest_written_by_imbvision_is_read_back_with_formula_names(tmp_path: Path) -> None:
    """A cell neutralised by imbvision (``'=x.png``) names the file ``=x.png`` when read as a manifest."""
    rng = np.random.default_rng(1)
    for i, n in enumerate(EVIL[:4] + ["a.png", "b.png"]):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / n)
    (tmp_path / "m.csv").write_text(csv_text(["path", "label"], [[n, int(i < 3)] for i, n in
                                                                  enumerate(EVIL[:4] + ["a.png", "b.png"])]),
                                    encoding="utf-8")
    ds = load_source(str(tmp_path / "m.csv"))
    assert [r.path.name for r in ds.records][:4] == EVIL[:4] and all(r.path.is_file() for r in ds.records)
