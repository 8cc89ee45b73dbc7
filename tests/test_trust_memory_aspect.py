"""Predictions whose memory does not grow with the input's shape (issue 19 §4).

``predict --heatmaps`` on a 100000×10 PNG used to write a 2,560,000×256 overlay (7.8 GB RSS): the overlay was
enlarged until its short side reached 256 px whatever its length. Heat maps are capped at
``HEATMAP_MAX_SIDE`` on the long side and overlays at ``OVERLAY_MAX_SIDE``, aspect kept; an image beyond the
aspect the image check accepts (``MAX_ASPECT``) is refused in one line naming the file and the limit.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import imbvision
from imbvision.cli import app
from imbvision.data.decode import MAX_ASPECT
from imbvision.explain import HEATMAP_MAX_SIDE, OVERLAY_MAX_SIDE, overlay_heatmap, overlay_scale


@pytest.fixture(scope="module")
def patch_model(tmp_path_factory, tiny_kwargs):
    out = tmp_path_factory.mktemp("aspect") / "run"
    imbvision.train(out=out, strategy="normality", progress=False, **tiny_kwargs)
    return out


def _strip(path, width: int, height: int):
    yy, xx = np.mgrid[0:height, 0:width]
    arr = (128 + 60 * np.sin(xx / 7.0) + 40 * np.cos(yy / 5.0)).astype(np.uint8)
    Image.fromarray(np.repeat(arr[..., None], 3, axis=2)).save(path)
    return path


@pytest.mark.parametrize("width,height", [(10000, 100), (100, 10000), (1000, 1000)])
def test_heatmap_overlays_stay_bounded_with_the_aspect_kept(patch_model, tiny_kwargs, tmp_path, width, height):
    img = _strip(tmp_path / f"s{width}x{height}.png", width, height)
    res = CliRunner().invoke(app, ["predict", str(patch_model), str(img), "--heatmaps", str(tmp_path / "maps"),
                                   "--cache-dir", tiny_kwargs["cache_dir"]], env={"COLUMNS": "4000"})
    assert res.exit_code == 0, res.output
    (overlay,) = (tmp_path / "maps").glob("*.png")
    w, h = Image.open(overlay).size
    assert max(w, h) <= OVERLAY_MAX_SIDE
    assert max(w, h) >= HEATMAP_MAX_SIDE if max(width, height) > HEATMAP_MAX_SIDE else True
    assert abs((w / h) / (width / height) - 1) < 0.05  # aspect kept (up to rounding of the short side)
    assert (w > h) == (width > height) or width == height


def test_too_extreme_an_aspect_is_refused_in_one_line(patch_model, tiny_kwargs, tmp_path):
    img = _strip(tmp_path / "needle.png", 100000, 10)
    res = CliRunner().invoke(app, ["predict", str(patch_model), str(img), "--heatmaps", str(tmp_path / "maps"),
                                   "--cache-dir", tiny_kwargs["cache_dir"]], env={"COLUMNS": "4000"})
    assert res.exit_code == 2, res.output  # nothing could be scored
    assert "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if "needle.png" in ln]
    assert len(lines) == 1, res.stderr
    assert f"at most {MAX_ASPECT}:1" in lines[0] and "100000x10" in lines[0]
    assert not list((tmp_path / "maps").glob("*.png"))
    # the limit is the image check's: a run's data check refuses the same file with the same words
    from imbvision.data.checks import _check_record
    from imbvision.data.records import ImageRecord
    from imbvision.errors import BadFileError
    with pytest.raises(BadFileError, match=f"at most {MAX_ASPECT}:1"):
        _check_record(ImageRecord(img, 0))
    ok = _strip(tmp_path / "edge.png", 100 * MAX_ASPECT, 100)  # exactly at the limit: accepted
    _check_record(ImageRecord(ok, 0))


def test_overlay_scale_enlarges_thin_strips_only_within_the_cap():
    assert overlay_scale(10, 1024) == OVERLAY_MAX_SIDE // 1024
    assert overlay_scale(64, 64) == 4
    assert overlay_scale(1, 1) == 256
    assert overlay_scale(3000, 5000) == 1
    heat = np.random.default_rng(0).random((10, 1024))
    out = overlay_heatmap(np.zeros((10, 1024, 3), np.uint8), heat, np.zeros((10, 1024), bool))
    assert out.shape == (40, 4096, 3)


@pytest.mark.parametrize("target", ["file", "proc"])
def test_heatmaps_onto_a_file_or_a_special_folder_is_one_line(patch_model, tiny_kwargs, tmp_path, target):
    from pathlib import Path

    if target == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux procfs")
    dest = tmp_path / "taken.txt" if target == "file" else Path("/proc/self")
    if target == "file":
        dest.write_text("keep me", encoding="utf-8")
    img = _strip(tmp_path / "ok.png", 200, 100)
    res = CliRunner().invoke(app, ["predict", str(patch_model), str(img), "--heatmaps", str(dest),
                                   "--cache-dir", tiny_kwargs["cache_dir"]], env={"COLUMNS": "4000"})
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)  # a one-line error, not a crash
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(dest) in lines[0], res.stderr
    if target == "file":
        assert dest.read_text(encoding="utf-8") == "keep me"
