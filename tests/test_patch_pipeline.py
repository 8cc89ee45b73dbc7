"""Patch-level heads through ``train``, ``compare``, the saved model, ``predict --heatmaps`` (tiny data)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import imbvision
from imbvision.cli import app
from imbvision.data.sources import load_source
from imbvision.errors import ConfigError
from imbvision.model import Model


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory, tiny_kwargs):
    out = tmp_path_factory.mktemp("patchrun") / "run"
    return imbvision.train(out=out, strategy="patch", progress=False, resize="keep-aspect", **tiny_kwargs)


def test_train_patch_head_saves_a_model_that_explains(patch_run, tiny_kwargs):
    model = Model.load(patch_run.out)
    assert model.meta["head"]["name"] == "patch" and model.meta["backbone"]["resize"] == "keep-aspect"
    ds = load_source(tiny_kwargs["data"])
    paths = [str(r.path) for r in ds.records[:4]]
    p = model.predict_proba(paths)
    assert p.shape == (4,) and np.all((p >= 0) & (p <= 1))
    maps = model.explain(paths)
    assert maps.shape == (4, 64, 64) and np.isfinite(maps).all()
    # the stored raw test scores are what the saved model gives again
    import json
    raw = json.loads((patch_run.out / "raw_scores.json").read_text())
    from imbvision.data.splits import read_split_csv
    split = read_split_csv(patch_run.out / "split.csv")
    again = model.raw_scores([np.asarray(__import__("PIL.Image").Image.open(ds.records[i].path).convert("RGB"))
                              for i in split.test[:5]])
    np.testing.assert_allclose(again, raw["test"][:5], atol=2e-3)


def test_patch_layers_travel_into_the_model_and_old_bundles_keep_theirs(patch_run, tiny_kwargs, tmp_path):
    """The finer stride-8 + 16 pair is a run setting; the bundle records it, and prediction uses it."""
    ds = load_source(tiny_kwargs["data"])
    paths = [str(r.path) for r in ds.records[:3]]
    assert Model.load(patch_run.out).meta["backbone"]["patch_layers"] == "s16+s32"
    fine = imbvision.train(out=tmp_path / "fine", strategy="normality", progress=False, patch_layers="s8+s16",
                           **tiny_kwargs)
    model = Model.load(fine.out)
    assert model.meta["backbone"]["patch_layers"] == "s8+s16"
    assert model.explain(paths).shape == (3, 64, 64)
    # a bundle saved before the setting existed (no "patch_layers") was made with s8+s16 features
    meta = dict(model.meta, backbone={k: v for k, v in model.meta["backbone"].items() if k != "patch_layers"})
    legacy = Model(meta, model.arrays, model.run_dir)
    np.testing.assert_allclose(legacy.predict_proba(paths), model.predict_proba(paths))
    with pytest.raises(ConfigError, match="--patch-layers 's4' invalid"):
        imbvision.train(out=tmp_path / "bad", strategy="normality", progress=False, patch_layers="s4", **tiny_kwargs)


def test_report_thumbnails_get_the_heat_map(patch_run, tiny_kwargs):
    """Issue 13/15: the report's false-negative/positive thumbnails show the heat map of a patch model."""
    from imbvision.data.decode import load_image_array
    from imbvision.explain import overlay_heatmap
    from imbvision.workflows.train import _heatmap_hook

    model = Model.load(patch_run.out)
    hook = _heatmap_hook(model)
    path = str(load_source(tiny_kwargs["data"]).records[0].path)
    img = load_image_array(path)
    shown = hook(path)
    assert shown.shape == img.shape and shown.dtype == np.uint8
    np.testing.assert_array_equal(shown, overlay_heatmap(img, model.explain([img])[0], min_side=1))
    assert np.abs(shown.astype(int) - img.astype(int)).mean() > 1  # the colours are really drawn in
    from imbvision.htmlreport import thumbnail_jpeg
    assert thumbnail_jpeg(path, overlay=shown) != thumbnail_jpeg(path)


def test_report_of_a_global_model_has_no_heat_map_hook(tmp_path, tiny_kwargs):
    from imbvision.workflows.train import _heatmap_hook

    run = imbvision.train(out=tmp_path / "g2", strategy="ce", progress=False, **tiny_kwargs)
    assert _heatmap_hook(Model.load(run.out)) is None


def test_predict_writes_heatmaps(patch_run, tiny_kwargs, tmp_path):
    ds = load_source(tiny_kwargs["data"])
    imgs = [str(r.path) for r in ds.records[:3]]
    res = CliRunner().invoke(app, ["predict", str(patch_run.out), *imgs, "--heatmaps", str(tmp_path / "maps"),
                                   "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    pngs = sorted((tmp_path / "maps").glob("*.png"))
    assert len(pngs) == 3 and pngs[0].stat().st_size > 500



def test_predict_heatmaps_outline_the_masks_the_source_has(patch_run, tiny_kwargs, tmp_path):
    from PIL import Image

    res = CliRunner().invoke(app, ["predict", str(patch_run.out), "--data", tiny_kwargs["data"],
                                   "--heatmaps", str(tmp_path / "maps"), "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    ds = load_source(tiny_kwargs["data"])
    pngs = sorted((tmp_path / "maps").glob("*.png"))
    assert len(pngs) == len(ds)

    def green(png):
        a = np.asarray(Image.open(png).convert("RGB")).astype(int)
        return int(((a[..., 1] == 255) & (a[..., 0] == 0) & (a[..., 2] == 0)).sum())

    with_mask = [green(p) for p, r in zip(pngs, ds.records) if r.mask is not None]
    without = [green(p) for p, r in zip(pngs, ds.records) if r.mask is None]
    assert with_mask and min(with_mask) > 0 and max(without) == 0


def test_heatmap_on_a_global_model_is_refused(tmp_path, tiny_kwargs):
    run = imbvision.train(out=tmp_path / "g", strategy="ce", progress=False, **tiny_kwargs)
    model = Model.load(run.out)
    with pytest.raises(ConfigError, match="heat maps need a patch-level head.*'logreg'"):
        model.explain([str(load_source(tiny_kwargs["data"]).records[0].path)])


@pytest.mark.parametrize("strategy", ["normality", "fusion", "copy-paste+patch"])
def test_train_other_patch_heads(strategy, tmp_path, tiny_kwargs):
    run = imbvision.train(out=tmp_path / "r", strategy=strategy, progress=False, **tiny_kwargs)
    assert 0 <= run.metrics["ap"] <= 1
    res = __import__("json").loads((run.out / "results.json").read_text())
    if strategy == "copy-paste+patch":
        assert res["train"]["synthetic_rows"] > 0


def test_compare_shows_patch_heads_beside_the_remedies(tmp_path, tiny_kwargs):
    from imbvision.workflows.compare import DEFAULT_STRATEGIES, run_compare

    assert {"patch", "normality", "fusion"} <= set(DEFAULT_STRATEGIES)
    kw = {k: v for k, v in tiny_kwargs.items() if k not in ("max_synthetic",)}
    res = run_compare(strategies="ce,patch,normality,fusion", seeds=2, out=tmp_path / "cmp", progress=False, **kw)
    names = {r["strategy"] for r in res.leaderboard}
    assert names == {"ce", "patch", "normality", "fusion"}
    assert all(0 <= r["ap_mean"] <= 1 for r in res.leaderboard)
    fusion = next(r for r in res.leaderboard if r["strategy"] == "fusion")
    assert set(fusion["fusion_weights"]) == {"global", "patch", "normality"}
    assert fusion["fusion_winner"] == max(fusion["fusion_weights"], key=fusion["fusion_weights"].get)
    assert "won:" in (res.out / "report.html").read_text()
    # the patch features are a run setting: another --patch-layers in the same folder is refused by name
    with pytest.raises(ConfigError, match=r"other settings \(patch_layers: 's16\+s32' → 's8\+s16'"):
        run_compare(strategies="ce,normality", seeds=2, out=tmp_path / "cmp", progress=False,
                    patch_layers="s8+s16", **kw)


def test_zero_training_positives_train_normality_only(tmp_path, tiny_kwargs):
    import warnings

    from imbvision.notices import DataWarning
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run = imbvision.train(out=tmp_path / "n", strategy="normality", train_positive_rate=0, progress=False,
                              **tiny_kwargs)
    # zero training positives is the normality head's normal use, not a data problem to warn about
    assert not [w for w in seen if issubclass(w.category, DataWarning) and "positive images to train on" in str(w.message)]
    res = __import__("json").loads((run.out / "results.json").read_text())
    assert res["train"]["counts_after_resampling"][1] == 0 and 0 <= run.metrics["ap"] <= 1
    with pytest.raises(ConfigError, match="no positive; only --strategy normality"):
        imbvision.train(out=tmp_path / "c", strategy="ce", train_positive_rate=0, progress=False, **tiny_kwargs)


def test_derive_masks_writes_a_manifest_copy_paste_can_use(patch_run, tiny_kwargs, tmp_path):
    import csv

    from imbvision.data.records import ImageRecord
    ds = load_source(tiny_kwargs["data"])
    # drop the masks of the positives: they are derived from the heat maps
    recs = [ImageRecord(r.path, r.label, None, r.group, r.class_name) for r in ds.records]
    src = tmp_path / "nomask.csv"
    with open(src, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for r in recs:
            w.writerow([str(r.path), r.label])
    res = CliRunner().invoke(app, ["derive-masks", str(patch_run.out), "--data", str(src), "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    derived = load_source(str(tmp_path / "d" / "manifest.csv"))
    with_mask = [r for r in derived.records if r.mask is not None]
    assert with_mask and all(r.label == 1 for r in with_mask)  # masks only for positives
    assert (tmp_path / "d" / "derived_masks.png").stat().st_size > 1000  # the contact sheet to check them
    run = imbvision.train(out=tmp_path / "cp", strategy="copy-paste", progress=False,
                          **{**tiny_kwargs, "data": str(tmp_path / "d" / "manifest.csv")})
    assert 0 <= run.metrics["ap"] <= 1


def test_empty_mask_is_named_or_skipped_in_train(tmp_path, tiny_kwargs):
    import csv
    from PIL import Image

    from imbvision.notices import DataWarning

    ds = load_source(tiny_kwargs["data"])
    pos = next(r for r in ds.records if r.label == 1 and r.mask is not None)
    w, h = Image.open(pos.path).size
    empty = tmp_path / "empty_mask.png"
    Image.fromarray(np.zeros((h, w), np.uint8)).save(empty)
    src = tmp_path / "m.csv"
    with open(src, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["path", "label", "mask"])
        for r in ds.records:  # every positive's mask is empty: some of them are in the training split
            wr.writerow([str(r.path), r.label, str(empty) if r.mask is not None else ""])
    kw = {**tiny_kwargs, "data": str(src)}
    with pytest.raises(Exception, match="empty_mask.png.*empty.*--skip-bad"):
        imbvision.train(out=tmp_path / "a", strategy="patch", progress=False, **kw)
    # a head that never reads masks is not stopped by them
    norm = imbvision.train(out=tmp_path / "n", strategy="normality", progress=False, **kw)
    assert 0 <= norm.metrics["ap"] <= 1
    with pytest.warns(DataWarning, match=r"--skip-bad: \d+ positive mask\(s\) dropped .*empty_mask.png: mask of a "
                                         r"positive image is empty"):
        run = imbvision.train(out=tmp_path / "b", strategy="patch", progress=False, skip_bad=True, **kw)
    res = __import__("json").loads((run.out / "results.json").read_text())
    assert res["train"]["embedding"]["bad_masks"][0].endswith("empty_mask.png: mask of a positive image is empty")
    assert "--skip-bad" not in " ".join(res["train"]["embedding"]["bad_masks"])


def test_files_are_scored_from_the_pixels_training_saw(patch_run, tiny_kwargs, tmp_path):
    """A large JPEG is decoded in draft mode in training, so prediction and heat maps decode it the same way."""
    from PIL import Image

    from imbvision.data.decode import load_image_array

    model = Model.load(patch_run.out)
    assert model.decode_min_side() == 64  # the input size (head mode, no tiles)
    yy, xx = np.mgrid[0:300, 0:260] / 9.0
    pic = np.stack([128 + 90 * np.sin(xx), 128 + 90 * np.cos(yy), 128 + 50 * np.sin(xx + yy)], -1).astype(np.uint8)
    path = tmp_path / "large.jpg"
    Image.fromarray(pic).save(path, quality=90)
    drafted = load_image_array(path, min_side=64)
    assert drafted.shape[:2] == (75, 65)  # 1/4 of 300 x 260: both sides still >= 64
    np.testing.assert_array_equal(model.predict_proba([str(path)]), model.predict_proba([drafted]))
    heat = model.explain([str(path)])
    assert heat.shape == (1, 300, 260)  # the map comes at the file's full size
    # bundles saved before draft decoding (no "preprocess" entry) keep decoding files in full
    meta = dict(model.meta, backbone={k: v for k, v in model.meta["backbone"].items() if k != "preprocess"})
    assert Model(meta, model.arrays, model.run_dir).decode_min_side() is None
