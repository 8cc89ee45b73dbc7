"""A saved model scores a file exactly as its training run did (issue 19 §5).

Large JPEGs are decoded in draft mode (reduced DCT scale) at a side chosen from what each part of the
features needs: the global view with its tiles needs ``image_size × tiles``, the patch canvas only
``image_size``. Before the decoding rule was shared (``imbvision.backbones.decoding``), ``predict`` decoded a
patch-level model's input once at the global side, so with ``--tiles 2`` its probabilities differed from the
run's own ``scores_test.csv``.

Each case trains one model on 1000×1000 images (demo objects, upscaled) and checks that
``Model.load(run).predict_proba`` gives ``scores_test.csv`` again. The cases cover every head kind
(pooled ``ce``/``logreg``; ``patch``, ``normality``, ``fusion``) × tiles (none, 2, 2 with tile features) and
every pair of those with resize (stretch, keep-aspect) and format (JPEG large enough for draft mode, PNG); each
patch-level head meets tiles 2 on a JPEG.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imbvision.model import Model

SIDE = 1000  # large enough for draft mode at 64 px: 1/8 for the patch canvas, 1/4 for a 2×2 tiled view

# (strategy, tiles, features, resize, format)
CASES = [
    ("logreg", 0, "auto", "stretch", "png"),
    ("ce", 2, "auto", "keep-aspect", "jpg"),
    ("logreg", 2, "both", "stretch", "jpg"),
    ("logreg", 2, "tiles", "keep-aspect", "png"),
    ("patch", 0, "auto", "keep-aspect", "jpg"),
    ("patch", 2, "auto", "stretch", "jpg"),
    ("patch", 2, "both", "keep-aspect", "png"),
    ("normality", 0, "auto", "stretch", "jpg"),
    ("normality", 2, "auto", "keep-aspect", "jpg"),
    ("normality", 2, "tiles", "stretch", "png"),
    ("fusion", 0, "auto", "keep-aspect", "png"),
    ("fusion", 2, "both", "stretch", "jpg"),
]


@pytest.fixture(scope="module")
def large_sets(tmp_path_factory) -> dict[str, Path]:
    """The same 40 demo images (30% with an object, masks kept) at 1000×1000 as JPEG and as PNG."""
    from imbvision.data.synthetic import DemoSpec, generate_demo_dataset

    root = tmp_path_factory.mktemp("large")
    man = generate_demo_dataset(root / "src", DemoSpec(n=40, positive_rate=0.3, seed=1, size=128))
    rows = list(csv.DictReader(man.open(encoding="utf-8")))
    out = {}
    for fmt in ("jpg", "png"):
        d = root / fmt
        (d / "img").mkdir(parents=True)
        (d / "mask").mkdir()
        lines = ["path,label,mask"]
        for r in rows:
            name = Path(r["path"]).stem
            im = Image.open(root / "src" / r["path"]).convert("RGB").resize((SIDE, SIDE), Image.BILINEAR)
            im.save(d / "img" / f"{name}.{fmt}", **({"quality": 92} if fmt == "jpg" else {}))
            mask = ""
            if r["mask"]:
                Image.open(root / "src" / r["mask"]).resize((SIDE, SIDE), Image.NEAREST).save(d / "mask" / f"{name}.png")
                mask = f"mask/{name}.png"
            lines.append(f"img/{name}.{fmt},{r['label']},{mask}")
        (d / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        out[fmt] = d / "manifest.csv"
    return out


def _train(tmp_path: Path, manifest: Path, cache: Path, strategy: str, tiles: int, features: str, resize: str) -> Path:
    import imbvision

    out = tmp_path / "run"
    imbvision.train(data=str(manifest), out=out, strategy=strategy, backbone="test_efficientnet", weights="none",
                    image_size=64, tiles=tiles, features=features, resize=resize, n_boot=20, cache_dir=str(cache),
                    max_synthetic=10, progress=False)
    return out


def _scores_test(run: Path) -> tuple[list[str], np.ndarray]:
    rows = list(csv.DictReader((run / "scores_test.csv").open(encoding="utf-8")))
    return [r["path"] for r in rows], np.array([float(r["probability"]) for r in rows])


def test_the_cases_meet_draft_mode(large_sets):
    """The JPEGs are decoded in draft mode, at another scale for a tiled global view than for the patch canvas
    (the condition of the bug); PNGs are decoded in full."""
    from imbvision.backbones.decoding import decode_part

    jpg = Path(large_sets["jpg"]).parent / "img" / "img_00000.jpg"
    png = Path(large_sets["png"]).parent / "img" / "img_00000.png"
    assert decode_part(jpg, "patches", 64).shape[:2] == (125, 125)  # 1/8
    assert decode_part(jpg, "global", 64, 2).shape[:2] == (250, 250)  # 1/4: each of 2×2 tiles >= 64 px
    assert decode_part(jpg, "global", 64, 0).shape[:2] == (125, 125)
    assert decode_part(png, "patches", 64).shape[:2] == decode_part(png, "global", 64, 2).shape[:2] == (SIDE, SIDE)


@pytest.mark.parametrize("strategy,tiles,features,resize,fmt", CASES,
                         ids=[f"{s}-t{t}-{f}-{r}-{x}" for s, t, f, r, x in CASES])
def test_predict_equals_the_runs_test_scores(strategy, tiles, features, resize, fmt, large_sets, cache_dir, tmp_path):
    run = _train(tmp_path, large_sets[fmt], cache_dir, strategy, tiles, features, resize)
    model = Model.load(run)
    assert model.representation() == ("global" if strategy in ("ce", "logreg") else "patches")
    paths, expected = _scores_test(run)
    assert len(paths) >= 5
    got = model.predict_proba(paths)
    np.testing.assert_allclose(got.astype(np.float32), expected.astype(np.float32), rtol=1e-6, atol=0)
    rows, bad = model.predict_files(paths, batch=3)  # batches of other sizes: the same numbers
    assert not bad
    np.testing.assert_allclose(np.array([r["probability"] for r in rows], np.float32), expected.astype(np.float32),
                               rtol=1e-6, atol=0)


def test_cli_predict_and_heatmaps_decode_as_training(large_sets, cache_dir, tmp_path):
    """``imbvision predict`` (with ``--heatmaps``) prints the run's test scores for a tiled fusion model."""
    from typer.testing import CliRunner

    from imbvision.cli import app

    run = _train(tmp_path, large_sets["jpg"], cache_dir, "fusion", 2, "auto", "keep-aspect")
    paths, expected = _scores_test(run)
    res = CliRunner().invoke(app, ["predict", str(run), *paths[:6], "--heatmaps", str(tmp_path / "maps"),
                                   "--cache-dir", str(cache_dir)])
    assert res.exit_code == 0, res.output
    got = {r["path"]: float(r["probability"]) for r in csv.DictReader(res.stdout.splitlines())}
    np.testing.assert_allclose(np.float32([got[p] for p in paths[:6]]), np.float32(expected[:6]), rtol=1e-6, atol=0)
    assert len(list((tmp_path / "maps").glob("*.png"))) == 6
    heat = Model.load(run).explain(paths[:2])
    assert heat.shape == (2, SIDE, SIDE) and np.isfinite(heat).all()  # at the file's full size
