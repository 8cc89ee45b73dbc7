"""One cache root everywhere: ``--cache-dir``, then ``IMBVISION_CACHE``, then ``~/.cache/imbvision`` (issue 19 §6).

The ONNX exports made at prediction time, the pixel-space compare cells and the report's heat maps used to
ignore both and write to ``~/.cache/imbvision``. Every command here runs in its own process with ``HOME``
pointing to an empty folder: nothing may appear in it -- neither imbvision's caches nor onnxruntime's telemetry
files (``~/.cache/Microsoft/DeveloperTools``, switched off by imbvision). Matplotlib's own font cache is
configured by the user through ``MPLCONFIGDIR``, which the commands get.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture()
def env(tmp_path) -> dict[str, str]:
    (tmp_path / "home").mkdir()
    out = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY",
                                                             "IMBVISION_CACHE")}
    return {**out, "HOME": str(tmp_path / "home"), "IMBVISION_CACHE": str(tmp_path / "cache"),
            "MPLCONFIGDIR": str(tmp_path / "mpl"), "PYTHONPATH": str(REPO / "src"), "COLUMNS": "4000"}


def _cli(env: dict[str, str], *args: str) -> None:
    res = subprocess.run([sys.executable, "-m", "imbvision.cli", *args], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


def _opts(tiny_kwargs) -> list[str]:  # no --cache-dir: the environment names the root
    return ["--data", tiny_kwargs["data"], "--backbone", "test_efficientnet", "--weights", "none", "--image-size", "64"]


def _images(tiny_kwargs, n: int) -> list[str]:
    return sorted(str(p) for p in (Path(tiny_kwargs["data"]).parent / "images").glob("*.png"))[:n]


def test_train_predict_compare_report_write_nothing_under_home(env, tiny_kwargs, tmp_path):
    home, cache = Path(env["HOME"]), Path(env["IMBVISION_CACHE"])
    run = tmp_path / "run"
    _cli(env, "train", *_opts(tiny_kwargs), "--strategy", "patch", "--out", str(run))  # report heat maps
    _cli(env, "predict", str(run), *_images(tiny_kwargs, 4), "--heatmaps", str(tmp_path / "maps"))
    _cli(env, "compare", *_opts(tiny_kwargs), "--strategies", "patch,copy-paste", "--seeds", "1",
         "--out", str(tmp_path / "cmp"))  # pixel-space cells
    _cli(env, "evaluate", str(run))  # the report rewritten, heat maps again
    assert _files(home) == []
    assert any((cache / "onnx").glob("patch-*.onnx"))  # the exports went to the one root
    assert "data:image/png" in (run / "report.html").read_text(encoding="utf-8")


def test_cache_dir_comes_before_the_environment(env, tiny_kwargs, tmp_path):
    home, env_cache, given = Path(env["HOME"]), Path(env["IMBVISION_CACHE"]), tmp_path / "given"
    run = tmp_path / "run"
    _cli(env, "train", *_opts(tiny_kwargs), "--strategy", "normality", "--out", str(run), "--cache-dir", str(given))
    _cli(env, "predict", str(run), *_images(tiny_kwargs, 2), "--heatmaps", str(tmp_path / "maps"),
         "--cache-dir", str(given))
    assert not env_cache.exists() or _files(env_cache) == []
    assert _files(home) == []
    assert any((given / "onnx").glob("patch-*.onnx"))
