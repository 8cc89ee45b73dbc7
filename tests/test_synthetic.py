"""The procedural demo set: deterministic, masks exactly on the objects, the asked positive rate, and hard.

"Hard" is measured: a logistic regression on raw pixels (32x32 grey,
standardised) under stratified cross-validation stays far below AP 1.0,
while the same pipeline separates an easy control set -- so the hardness
figure says something about the data, not about a broken pipeline.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from imbvision.data.sources import read_csv
from imbvision.data.synthetic import (
    DemoSpec,
    ensure_demo_dataset,
    generate_demo_dataset,
    make_object,
    make_surface,
    render_demo_image,
)
from imbvision.errors import ConfigError

#: Asserted ceiling of the raw-pixel AP: far below 1.0 (the positive rate here is 0.25).
HARDNESS_AP_CEILING = 0.6


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def manifest_rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_byte_identical_for_the_same_seed_and_different_for_another(tmp_path: Path) -> None:
    spec = DemoSpec(n=24, positive_rate=0.25, seed=11, size=48)
    a = generate_demo_dataset(tmp_path / "a", spec).parent
    b = generate_demo_dataset(tmp_path / "b", spec).parent
    da, db = tree_digest(a), tree_digest(b)
    assert len(da) == 24 + 6 + 1  # images, masks, manifest
    assert da == db
    c = generate_demo_dataset(tmp_path / "c", DemoSpec(n=24, positive_rate=0.25, seed=12, size=48)).parent
    dc = tree_digest(c)
    assert sum(da[k] != dc.get(k) for k in da if k.startswith("images/")) >= 20
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_positive_rate_as_asked(tmp_path: Path) -> None:
    for n, rate, want in ((200, 0.1, 20), (60, 0.05, 3), (40, 0.5, 20), (10, 0.01, 3)):
        m = generate_demo_dataset(tmp_path / f"{n}-{rate}", DemoSpec(n=n, positive_rate=rate, seed=1, size=32))
        ds = read_csv(m)
        assert len(ds) == n and int(ds.labels.sum()) == want, (n, rate)


def test_masks_exactly_where_the_objects_are(tmp_path: Path) -> None:
    spec = DemoSpec(n=30, positive_rate=0.3, seed=5, size=64)
    m = generate_demo_dataset(tmp_path / "d", spec)
    rows = manifest_rows(m)
    kinds = set()
    for i, row in enumerate(rows):
        saved = np.asarray(Image.open(m.parent / row["path"]))
        if row["label"] == "0":
            assert row["mask"] == "" and row["kind"] == "none"
            continue
        kinds.add(row["kind"])
        mask = np.asarray(Image.open(m.parent / row["mask"])) > 0
        assert mask.shape == saved.shape[:2] and 0 < mask.sum() < mask.size * 0.2
        # Rebuild the image with and without its object from the same random draws.
        rng = np.random.default_rng([spec.seed, i])
        surface = make_surface(rng, spec.size)
        obj, obj_mask, kind = make_object(rng, spec.size)
        tint = 1 + rng.normal(0, 0.03, 3)
        with_obj = np.clip((surface + obj)[..., None] * tint, 0, 1)
        without = np.clip(surface[..., None] * tint, 0, 1)
        assert kind == row["kind"]
        np.testing.assert_array_equal(saved, (with_obj * 255 + 0.5).astype(np.uint8))  # the file is this image
        np.testing.assert_array_equal(mask, obj_mask)
        effect = np.abs(with_obj - without).mean(axis=2)
        strong = effect >= 0.5 * effect.max()
        assert strong.sum() > 0
        assert (strong & mask).sum() / strong.sum() >= 0.95, "the object's strong pixels lie inside the mask"
        assert effect[mask].mean() > 8 * max(effect[~mask].mean(), 1e-9), "the mask is where the object changes the image"
    assert kinds, "no positive image checked"


def test_negative_images_carry_no_object(tmp_path: Path) -> None:
    spec = DemoSpec(n=12, positive_rate=0.25, seed=2, size=40)
    arr, mask, kind = render_demo_image(spec, 0, positive=False)
    assert mask is None and kind == "" and arr.shape == (40, 40, 3) and arr.dtype == np.uint8
    arr2, mask2, kind2 = render_demo_image(spec, 0, positive=True)
    assert mask2 is not None and kind2 in ("blob", "scratch", "spot")


@pytest.mark.parametrize("kw, needle", [({"n": 5}, "n=5"), ({"positive_rate": 0.0}, "positive_rate=0.0"),
                                        ({"positive_rate": 1.0}, "positive_rate=1.0"), ({"size": 16}, "size=16"),
                                        ({"seed": -3}, "seed=-3")])
def test_spec_validation(kw: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        DemoSpec(**kw)


def test_ensure_does_not_regenerate(tmp_path: Path) -> None:
    spec = DemoSpec(n=10, positive_rate=0.3, seed=0, size=32)
    m = ensure_demo_dataset(tmp_path / "d", spec)
    first = m.stat().st_mtime_ns
    (m.parent / "marker").write_text("kept")
    assert ensure_demo_dataset(tmp_path / "d", spec) == m
    assert m.stat().st_mtime_ns == first and (m.parent / "marker").exists()


def pixel_features(paths: list[Path], side: int = 32) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("L").resize((side, side), Image.BILINEAR), np.float32).ravel()
                     / 255.0 for p in paths])


def cv_average_precision(X: np.ndarray, y: np.ndarray, seed: int = 0, C: float = 0.01) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500))
    scores = cross_val_predict(clf, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                               method="decision_function")
    return float(average_precision_score(y, scores))


def test_demo_is_hard_for_raw_pixels(tmp_path: Path, record_property) -> None:
    spec = DemoSpec(n=240, positive_rate=0.25, seed=0)
    ds = read_csv(generate_demo_dataset(tmp_path / "demo", spec))
    X, y = pixel_features([r.path for r in ds.records]), ds.labels
    ap = cv_average_precision(X, y)
    record_property("demo_raw_pixel_ap", ap)
    print(f"\ndemo hardness: raw-pixel logistic regression, 5-fold CV AP = {ap:.3f} (prevalence {y.mean():.2f})")
    assert ap < HARDNESS_AP_CEILING, f"demo set too easy: raw-pixel AP {ap:.3f}"

    # Control: the same pipeline on an easy variant (a large bright square) is near perfect,
    # so the low figure above is the data's hardness, not a broken pipeline.
    easy = X.reshape(-1, 32, 32).copy()
    easy[y == 1, 8:20, 8:20] += 0.5
    assert cv_average_precision(easy.reshape(len(y), -1), y) > 0.95
