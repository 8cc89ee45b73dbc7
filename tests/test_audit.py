"""Tests of the dataset audit (synthetic images and Gaussian-blob features; fast)."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imbvision.audit import AuditResult, apply_review, run_audit
from imbvision.data.records import Dataset, ImageRecord
from imbvision.data.sources import load_source
from imbvision.errors import ConfigError, DataError

N_NEG, N_POS, DIM = 120, 24, 16
FLIP_POS = [3, 11, 19]  # positives (by position among positives) whose label is flipped to negative
FLIP_NEG = [5, 40, 77]  # negatives whose label is flipped to positive


def _write_images(folder: Path, n: int, rng: np.random.Generator) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def _blobs(y_true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    X = rng.normal(size=(len(y_true), DIM))
    X[:, 0] += np.where(y_true == 1, 4.0, -4.0)
    X[:, 1] += 1.0  # keep cosine geometry away from the origin
    return X


def _tree_digest(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """A 120:24 dataset written as a CSV manifest, with 3 + 3 injected label flips."""
    root = tmp_path_factory.mktemp("audit_data")
    rng = np.random.default_rng(0)
    paths = _write_images(root / "images", N_NEG + N_POS, rng)
    y_true = np.array([0] * N_NEG + [1] * N_POS)
    flipped_pos = np.array([N_NEG + i for i in FLIP_POS])
    flipped_neg = np.array(FLIP_NEG)
    y = y_true.copy()
    y[flipped_pos] = 0
    y[flipped_neg] = 1
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for p, lab in zip(paths, y):
            w.writerow([f"images/{p.name}", int(lab)])
    ds = load_source(str(manifest))
    X = _blobs(y_true, rng)
    before = _tree_digest(root)
    res = run_audit(ds, X, root.parent / (root.name + "_out"), k=10, seed=0, folds=5, progress=False)
    return {"root": root, "ds": ds, "X": X, "res": res, "y": y, "manifest": manifest,
            "flipped_pos": flipped_pos, "flipped_neg": flipped_neg, "before": before}


def test_writes_the_four_files(noisy):
    res: AuditResult = noisy["res"]
    for name in ("audit.json", "suspects.csv", "duplicates.csv", "audit.html"):
        assert (res.out_dir / name).is_file(), name
    summary = json.loads(res.json_path.read_text())
    c = summary["counts"]
    assert (c["positive"], c["negative"]) == (N_POS, N_NEG)  # labels as given: 3 + 3 flips cancel
    assert c["imbalance_ratio"] == pytest.approx(N_NEG / N_POS)
    assert c["always_negative_accuracy"] == pytest.approx(N_NEG / (N_NEG + N_POS))
    h = summary["hardness"]
    assert 0.0 <= h["minority_mostly_majority_share"] <= 1.0
    assert h["tomek_links"] >= 0
    assert h["cv_average_precision"] > h["cv_ap_chance_level"]
    with open(res.suspects_path, newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["rank", "path", "label", "class_name", "score", "p_oof", "knn_majority_share",
                      "reasons", "suggested_action", "decision"]


def test_injected_flips_rank_near_the_top(noisy):
    res: AuditResult = noisy["res"]
    flipped = set(noisy["flipped_pos"].tolist()) | set(noisy["flipped_neg"].tolist())
    top = set(res.ranking()[: 2 * len(flipped)].tolist())
    assert flipped <= top, f"flips {sorted(flipped)} not all in the top {2 * len(flipped)}: {sorted(top)}"
    listed = [s["_index"] for s in res.suspects]
    assert flipped <= set(listed[: 2 * len(flipped)])
    scores = [s["score"] for s in res.suspects]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)


def test_both_directions_are_flagged_with_reasons(noisy):
    res: AuditResult = noisy["res"]
    assert res.flags[noisy["flipped_pos"]].all(), "defects labelled negative (missed objects) not flagged"
    assert res.flags[noisy["flipped_neg"]].all(), "negatives labelled positive not flagged"
    # confident learning (mean self-confidence thresholds) is conservative; it must still fire both ways
    assert res.cl_flags[noisy["flipped_pos"]].any() and res.cl_flags[noisy["flipped_neg"]].any()
    assert res.cl_flags.sum() <= 12
    by_index = {s["_index"]: s for s in res.suspects}
    s = by_index[int(noisy["flipped_neg"][0])]
    assert s["reasons"].startswith("labelled positive;") and "out-of-fold P(positive)=" in s["reasons"]
    assert "neighbours negative" in s["reasons"]
    s = by_index[int(noisy["flipped_pos"][0])]
    assert s["reasons"].startswith("labelled negative;") and "neighbours positive" in s["reasons"]
    assert s["suggested_action"] in ("relabel", "review")
    noise = res.summary["label_noise"]
    assert noise["confident_learning_by_direction"]["labelled_negative_looks_positive"] >= 1
    assert noise["confident_learning_by_direction"]["labelled_positive_looks_negative"] >= 1
    assert noise["majority_surrounded_by_minority"] >= 1 and noise["minority_surrounded_by_majority"] >= 1


def test_audit_never_touches_the_input(noisy):
    assert _tree_digest(noisy["root"]) == noisy["before"]


def test_apply_review_writes_a_new_manifest(noisy, tmp_path):
    res: AuditResult = noisy["res"]
    src_bytes = noisy["manifest"].read_bytes()
    review = tmp_path / "reviewed.csv"
    with open(res.suspects_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    relabel_path = str(noisy["ds"][int(noisy["flipped_pos"][0])].path)
    drop_path = str(noisy["ds"][int(noisy["flipped_neg"][0])].path)
    for r in rows:
        r["decision"] = {relabel_path: "Relabel ", drop_path: "drop"}.get(r["path"], "")
    with open(review, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "new" / "manifest.reviewed.csv"
    info = apply_review(review, noisy["ds"], out)
    assert info["relabelled"] == 1 and info["dropped"] == 1
    assert noisy["manifest"].read_bytes() == src_bytes  # source untouched
    assert _tree_digest(noisy["root"]) == noisy["before"]
    new = load_source(str(out))
    assert len(new) == len(noisy["ds"]) - 1
    by_path = {str(r.path): r.label for r in new}
    assert drop_path not in by_path
    assert by_path[relabel_path] == 1  # was a defect labelled 0
    untouched = str(noisy["ds"][0].path)
    assert by_path[untouched] == noisy["ds"][0].label


def test_apply_review_rejects_bad_decisions_and_overwrites(noisy, tmp_path):
    res: AuditResult = noisy["res"]
    with open(res.suspects_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[1]["decision"] = "delete"
    review = tmp_path / "bad.csv"
    with open(review, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ConfigError, match=r"line 3.*'delete'.*keep, relabel, drop"):
        apply_review(review, noisy["ds"], tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    src_bytes = noisy["manifest"].read_bytes()
    with pytest.raises(ConfigError, match="source manifest"):
        apply_review(res.suspects_path, noisy["ds"], noisy["manifest"])
    assert noisy["manifest"].read_bytes() == src_bytes


def test_exact_duplicates_across_labels_are_conflicts(tmp_path):
    rng = np.random.default_rng(1)
    paths = _write_images(tmp_path / "img", 40, rng)
    copy = tmp_path / "img" / "copy_of_img005.png"
    shutil.copyfile(paths[5], copy)
    recs = [ImageRecord(p, int(i >= 32)) for i, p in enumerate(paths)] + [ImageRecord(copy, 1)]
    ds = Dataset(recs, source="test")
    y_true = np.array([r.label for r in recs])
    X = _blobs(y_true, rng)  # the copy gets a positive-looking feature row: only the bytes match
    split = np.array(["train"] * 40 + ["test"])
    res = run_audit(ds, X, tmp_path / "out", split=split, progress=False)
    with open(res.duplicates_path, newline="") as fh:
        dups = list(csv.DictReader(fh))
    exact = [d for d in dups if d["kind"] == "exact"]
    assert len(exact) == 1
    assert {exact[0]["path_a"], exact[0]["path_b"]} == {str(paths[5]), str(copy)}
    assert exact[0]["label_conflict"] == "true" and exact[0]["split_leak"] == "true"
    d = res.summary["duplicates"]
    assert d["exact_sets_label_conflict"] == 1 and d["split_leak_pairs"] >= 1
    reasons = {s["path"]: s["reasons"] for s in res.suspects}
    assert "exact duplicate" in reasons[str(copy)] and "exact duplicate" in reasons[str(paths[5])]


def test_near_duplicates_need_hash_and_embedding(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "img"
    folder.mkdir()
    # smooth images so the perceptual hash is stable under re-encoding
    paths = []
    for i in range(30):
        yy, xx = np.mgrid[0:64, 0:64]
        f = rng.uniform(0.05, 0.3, 2)
        img = (127 + 120 * np.sin(f[0] * xx + rng.uniform(0, 6)) * np.cos(f[1] * yy)).astype(np.uint8)
        p = folder / f"s{i:02d}.png"
        Image.fromarray(np.stack([img] * 3, -1)).save(p)
        paths.append(p)
    near = folder / "s03_requantised.jpg"
    Image.open(paths[3]).convert("RGB").save(near, quality=70)
    recs = [ImageRecord(p, int(i >= 25)) for i, p in enumerate(paths)] + [ImageRecord(near, 1)]
    X = rng.normal(size=(31, 8)) + 3.0
    X[30] = X[3] + 1e-3  # same embedding
    res = run_audit(Dataset(recs), X, tmp_path / "out", progress=False)
    near_rows = [d for d in res.duplicates if d["kind"] == "near"]
    assert [(d["a"], d["b"]) for d in near_rows] == [(3, 30)]
    assert near_rows[0]["label_conflict"] is True
    # the same pair with unrelated embeddings is not a near duplicate
    X[30] = -X[3]
    res2 = run_audit(Dataset(recs), X, tmp_path / "out2", progress=False)
    assert not [d for d in res2.duplicates if d["kind"] == "near"]


def test_fewer_than_three_minority_skips_with_reasons(tmp_path):
    rng = np.random.default_rng(3)
    paths = _write_images(tmp_path / "img", 30, rng)
    shutil.copyfile(paths[0], tmp_path / "img" / "dup.png")
    recs = [ImageRecord(p, int(i >= 28)) for i, p in enumerate(paths)] + [ImageRecord(tmp_path / "img" / "dup.png", 0)]
    X = _blobs(np.array([r.label for r in recs]), rng)
    res = run_audit(Dataset(recs), X, tmp_path / "out", progress=False)
    s = json.loads(res.json_path.read_text())
    assert s["counts"]["positive"] == 2 and s["counts"]["imbalance_ratio"] == pytest.approx(29 / 2)
    assert s["duplicates"]["exact_sets"] == 1
    for section in ("hardness", "label_noise"):
        assert "only 2 positive" in s[section]["skipped"]
        assert "only 2 positive" in s["skipped"][section]
    assert res.scores is None
    html = res.html_path.read_text()
    assert "skipped" in html and "only 2 positive" in html


def test_bad_features_raise_data_error(noisy, tmp_path):
    ds, X = noisy["ds"], noisy["X"]
    with pytest.raises(DataError, match=rf"{len(ds) - 1} rows but the dataset has {len(ds)}"):
        run_audit(ds, X[:-1], tmp_path / "a", progress=False)
    Xn = X.copy()
    Xn[7, 2] = np.nan
    with pytest.raises(DataError, match=r"NaN.*7 \(.*img007\.png\)"):
        run_audit(ds, Xn, tmp_path / "b", progress=False)
    assert not (tmp_path / "b" / "audit.json").exists()
    with pytest.raises(ConfigError, match="valid: train, val, test"):
        run_audit(ds, X, tmp_path / "c", split=np.array(["train"] * (len(ds) - 1) + ["holdout"]), progress=False)


def test_html_is_self_contained_and_escaped(tmp_path):
    rng = np.random.default_rng(4)
    paths = _write_images(tmp_path / "img", 24, rng)
    evil = "<script>alert(1)</script>"
    recs = [ImageRecord(p, int(i >= 18), class_name=evil if i == 20 else "ok") for i, p in enumerate(paths)]
    y = np.array([r.label for r in recs])
    y_true = y.copy()
    y_true[20] = 0  # looks negative: becomes a suspect shown with its class name
    res = run_audit(Dataset(recs, source=evil), _blobs(y_true, rng), tmp_path / "out", progress=False)
    html = res.html_path.read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "data:image/jpeg;base64," in html
    assert "file:" not in html and 'src="/' not in html


def test_masks_are_a_second_label(tmp_path):
    rng = np.random.default_rng(5)
    paths = _write_images(tmp_path / "img", 36, rng)
    empty = np.zeros((16, 16), np.uint8)
    blob = empty.copy()
    blob[4:8, 4:8] = 255
    recs = []
    for i, p in enumerate(paths):
        label = int(i >= 30)
        m = p.with_name(p.stem + "_mask.png")
        # image 2: negative whose mask outlines an object; image 31: positive with an empty mask
        Image.fromarray(blob if (label and i != 31) or i == 2 else empty).save(m)
        recs.append(ImageRecord(p, label, mask=m, group=f"part{i // 2}"))
    X = _blobs(np.array([r.label for r in recs]), rng)
    res = run_audit(Dataset(recs), X, tmp_path / "out", progress=False)
    m = res.summary["counts"]["masks"]
    assert (m["with_mask"], m["negative_with_object"], m["positive_with_empty_mask"]) == (36, 1, 1)
    reasons = {s["path"]: (s["reasons"], s["suggested_action"]) for s in res.suspects}
    assert "mask outlines an object but it is labelled negative" in reasons[str(paths[2])][0]
    assert "mask is empty but it is labelled positive" in reasons[str(paths[31])][0]
    assert reasons[str(paths[2])][1] in ("review", "relabel")
    g = res.summary["counts"]["groups"]
    assert g["groups"] == 18 and g["groups_with_positive"] == 3
    assert res.summary["hardness"]["cv_splitter"] == "StratifiedGroupKFold"


def test_apply_review_relabel_drops_the_stale_mask(tmp_path):
    rng = np.random.default_rng(6)
    paths = _write_images(tmp_path / "img", 4, rng)
    masks = []
    for p in paths:
        m = p.with_name(p.stem + "_mask.png")
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(m)
        masks.append(m)
    ds = Dataset([ImageRecord(p, int(i == 3), mask=m, group="g") for i, (p, m) in enumerate(zip(paths, masks))],
                 source="magnetic-tile:/nowhere")
    review = tmp_path / "review.csv"
    review.write_text(f"path,label,decision\n{paths[3]},1,relabel\n{paths[0]},0,\n")
    info = apply_review(review, ds, tmp_path / "new.csv")
    rows = list(csv.DictReader(open(tmp_path / "new.csv")))
    assert [r["path"] for r in rows] == [str(p.resolve()) for p in paths]
    assert [r["label"] for r in rows] == ["0", "0", "0", "0"] and info["positive"] == 0
    assert rows[3]["mask"] == "" and rows[0]["mask"] == str(masks[0].resolve()) and rows[0]["group"] == "g"
    review.write_text(f"path,label,decision\n{paths[3]},0,keep\n")
    with pytest.raises(DataError, match="labelled 0 in the review but 1 in the dataset"):
        apply_review(review, ds, tmp_path / "new2.csv")
    review.write_text(f"path,decision\n{tmp_path / 'elsewhere.png'},drop\n")
    with pytest.raises(DataError, match="not an image of the source dataset"):
        apply_review(review, ds, tmp_path / "new3.csv")


def test_clean_rare_class_the_model_vouches_for_is_not_a_suspect(tmp_path):
    """Clean labels, a rare class the linear head finds but the neighbours do not (a small object on a
    large background, as in the demo set): positives the model scores high are not suspects, every
    listed image is suggested for review or relabelling, and the list is short."""
    rng = np.random.default_rng(0)
    n_neg, n_pos, dim = 285, 15, 48
    y = np.array([0] * n_neg + [1] * n_pos)
    X = rng.normal(size=(n_neg + n_pos, dim))
    X[:, 0] += np.where(y == 1, 5.0, 0.0)  # one direction among 48: separable, yet neighbours stay negative
    X[:, 1] += 3.0
    paths = _write_images(tmp_path / "images", len(y), rng)
    ds = Dataset([ImageRecord(p, int(lab)) for p, lab in zip(paths, y)], "clean", "1", "0")
    res = run_audit(ds, X, tmp_path / "out", k=10, seed=0, folds=5, progress=False, data_arg="demo:300")
    nz = res.summary["label_noise"]
    t_pos = nz["thresholds"]["t_positive"]
    listed = [s["_index"] for s in res.suspects]
    # the kind of fault: a positive with a high out-of-fold P(positive) listed because of its neighbours
    assert not [i for i in listed if y[i] == 1 and res.p_oof[i] >= t_pos]
    assert {s["suggested_action"] for s in res.suspects} <= {"review", "relabel"}  # listed means "look at it"
    assert len(listed) <= 0.05 * len(y) and sum(y[i] for i in listed) <= 3
    assert (res.signals["knn_flag"] & (y == 1)).sum() == 0  # surrounded is the norm for this class: no evidence
    # one review command, on the page and in audit.json, naming the --data the user gave
    cmd = res.summary["review_command"]
    assert cmd == f"imbvision audit --data demo:300 --review {tmp_path / 'out' / 'suspects.csv'}"
    assert cmd in (tmp_path / "out" / "audit.html").read_text()
