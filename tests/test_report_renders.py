"""Render the HTML report in headless Chromium (`.ci/run` installs it; CI fails on a skip).

Besides "no console errors", the screenshots are read: the plots' curve colour, the
thumbnails' colour and the red mask outline must be on the page, and opening a
thumbnail's anchor must show the enlarged view.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imbvision.evaluation import build_run_report, tune_threshold

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed"),
    pytest.mark.slow,
]

REPO = Path(__file__).resolve().parents[1]
_EVIL = "<script>document.title='pwned'</script>"
# what Chromium logs when a page writes to the console, is refused something, or loads from the net
_BAD_LOG = re.compile(r"CONSOLE|Refused to|Failed to load|net::ERR_|Uncaught", re.I)


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("render")
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.08).astype(int)
    y[:2] = [0, 1]
    s = 1 / (1 + np.exp(-(rng.normal(size=400) + 2.0 * y - 2)))
    paths, masks = [], []
    for i in range(len(y)):
        p = root / "imgs" / f"{i:03d}.png"
        p.parent.mkdir(exist_ok=True)
        arr = np.zeros((96, 96, 3), dtype=np.uint8)
        arr[..., 0] = rng.integers(200, 240, (96, 96))  # a yellow the figures never use
        arr[..., 1] = rng.integers(180, 220, (96, 96))
        arr[..., 2] = rng.integers(0, 30, (96, 96))
        mask = None
        if y[i]:
            arr[:, 40:56] = 20
            m = np.zeros((96, 96), dtype=np.uint8)
            m[10:86, 36:60] = 255
            mask = root / "imgs" / f"{i:03d}_mask.png"
            Image.fromarray(m).save(mask)
        Image.fromarray(arr).save(p)
        paths.append(str(p))
        masks.append(None if mask is None else str(mask))
    Path(paths[5]).write_bytes(b"corrupt")
    return build_run_report(
        root / "run",
        {
            "test": {"y": y, "score": s, "score_uncalibrated": np.sqrt(s), "paths": paths, "masks": masks},
            "val": {"y": y[::-1], "score": s[::-1]},
            "threshold": tune_threshold(y[::-1], s[::-1], "max-f1"),
            "name": f"class {_EVIL}",
            "warnings": ["focal + balanced-sampler each shift the class prior", f"warning {_EVIL}"],
            "history": {"epochs": [{"epoch": e, "train_loss": 1 / e, "val_ap": 0.5 + e / 20, "lr": 1e-3 / e}
                                   for e in range(1, 6)], "kept_epoch": 4},
        },
        {"classes": ["ok", _EVIL], "root": str(root)},
        images={"examples": [(paths[1], "one"), (paths[5], "corrupt")]},
        n_boot=50,
    )


def _assert_not_blank(png: Path) -> None:
    im = np.asarray(Image.open(io.BytesIO(png.read_bytes())).convert("L"), dtype=float)
    assert im.std() > 10, "screenshot is blank"
    assert (im < 100).mean() > 0.005, "no text or figures in the screenshot"


def test_report_screenshot_without_console_errors(report: Path, tmp_path: Path):
    shot = tmp_path / "shot.png"
    res = _chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,3000",
                    report.as_uri())
    assert res.returncode == 0, res.stderr[-3000:]
    assert shot.exists() and shot.stat().st_size > 10_000
    _assert_not_blank(shot)
    bad = [ln for ln in res.stderr.splitlines() if _BAD_LOG.search(ln)]
    assert bad == [], "\n".join(bad)


def _rgb(png: Path) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png.read_bytes())).convert("RGB"), dtype=int)


def _near(im: np.ndarray, rgb: tuple[int, int, int], tol: int) -> int:
    return int((np.abs(im - np.asarray(rgb)).max(axis=2) <= tol).sum())


def test_screenshot_shows_plots_thumbnails_and_mask_outlines(report: Path, tmp_path: Path):
    shot = tmp_path / "full.png"
    res = _chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,9000", report.as_uri())
    assert res.returncode == 0, res.stderr[-3000:]
    im = _rgb(shot)
    assert _near(im, (31, 119, 180), 25) > 500, "no plot curves (matplotlib blue) in the screenshot"
    assert _near(im, (220, 200, 15), 30) > 20_000, "no thumbnails (the fixture's yellow) in the screenshot"
    assert _near(im, (255, 40, 40), 40) > 200, "no red mask outline on the false-negative thumbnails"
    bad = [ln for ln in res.stderr.splitlines() if _BAD_LOG.search(ln)]
    assert bad == [], "\n".join(bad)


def test_clicked_thumbnail_opens_large_without_script(report: Path, tmp_path: Path):
    before, after = tmp_path / "before.png", tmp_path / "after.png"
    for url, shot in ((report.as_uri(), before), (report.as_uri() + "#img-1", after)):
        res = _chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,900", url)
        assert res.returncode == 0, res.stderr[-3000:]
    b, a = _rgb(before), _rgb(after)
    # the enlarged view darkens the whole window and shows the image large in its middle
    assert a[:40].mean() < 60 < b[:40].mean(), "the :target view does not cover the page"
    middle = a[200:700, 300:900]
    assert _near(middle, (220, 200, 15), 30) > 0.3 * middle.shape[0] * middle.shape[1]


def test_report_dom_has_no_script_and_escaped_title(report: Path, tmp_path: Path):
    res = _chromium(tmp_path / "profile", "--dump-dom", report.as_uri())
    assert res.returncode == 0, res.stderr[-3000:]
    dom = res.stdout
    assert "<script" not in dom.lower()
    title = re.findall(r"<title>(.*?)</title>", dom, re.S)[0]
    assert title.startswith("imbvision run") and "&lt;script&gt;" in title  # text, not run
    assert "&lt;script&gt;" in dom
    assert dom.count('src="data:image/png;base64,') >= 6
    bad = [ln for ln in res.stderr.splitlines() if _BAD_LOG.search(ln)]
    assert bad == [], "\n".join(bad)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not available")
def test_check_report_script(report: Path, tmp_path: Path):
    shot = tmp_path / "script.png"
    res = subprocess.run(
        ["bash", str(REPO / "scripts" / "check_report.sh"), str(report), str(shot)],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "CHROMIUM": CHROMIUM},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    _assert_not_blank(shot)
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom')</script></body></html>")
    res = subprocess.run(
        ["bash", str(REPO / "scripts" / "check_report.sh"), str(bad), str(tmp_path / "bad.png")],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "CHROMIUM": CHROMIUM},
    )
    assert res.returncode != 0 and "console" in res.stderr.lower()
