"""The shared HTML builder and the report pieces of issue 13 (no browser needed)."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
import pytest
from PIL import Image

from imbvision.evaluation.plots import merged_reliability_bins, plot_reliability, plot_seed_dots, plot_training_history
from imbvision.evaluation.report import _threshold_rows, applied_config
from imbvision.htmlreport import GalleryItem, Report, draw_outline, format_prob, thumbnail_jpeg
from imbvision.notices import collect_warnings, run_warnings


def test_one_score_format():
    assert format_prob(1.03e-76) == format_prob(0.0001) == "<0.001"
    assert format_prob(0.0) == "0.000" and format_prob(0.1996) == "0.200" and format_prob(0.99999) == ">0.999"
    assert format_prob(1.0) == "1.000" and format_prob(None) == "—" and format_prob(float("nan")) == "—"


def test_threshold_table_has_no_duplicate_looking_rows():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.1).astype(int)
    s = np.clip(rng.random(300) * 0.6 + 0.4 * y, 0, 1)
    rows = _threshold_rows(y, s, 0.1996)
    shown = [r["threshold"] for r in rows]
    assert "0.1996 (chosen)" in shown and "0.200" not in shown
    assert len(shown) == len(set(shown))
    assert [float(t.split()[0]) for t in shown] == sorted(float(t.split()[0]) for t in shown)


def test_threshold_table_one_format_for_every_row():
    """A fixed 0.5 reads "0.500 (chosen)" beside "0.400", not "0.5 (chosen)"; a tuned 0.1996 makes every row 4 decimals."""
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.1).astype(int)
    s = np.clip(rng.random(300) * 0.6 + 0.4 * y, 0, 1)
    shown = [r["threshold"] for r in _threshold_rows(y, s, 0.5)]
    assert "0.500 (chosen)" in shown and "0.400" in shown and "0.5 (chosen)" not in shown
    assert all(len(t.split()[0]) == 5 for t in shown)
    shown4 = [r["threshold"] for r in _threshold_rows(y, s, 0.1996)]
    assert "0.1996 (chosen)" in shown4 and "0.1000" in shown4
    assert all(len(t.split()[0]) == 6 for t in shown4)


def test_names_and_intervals_do_not_break_mid_token():
    from imbvision.htmlreport import Report
    from imbvision._text import plural

    html = Report("t").add_table([{"strategy": "focal:gamma=2+copy-paste", "AP [CI]": "0.833 [0.31, 1.00]",
                                   "note": "free text wraps"}]).to_html()
    # wrap only between the '+'-joined parts; the interval stays on one line (td.num is nowrap)
    assert '<span class="tok">focal:gamma=2</span>+<wbr><span class="tok">copy-paste</span>' in html
    assert '<td class="num">0.833 [0.31, 1.00]</td>' in html and "<td>free text wraps</td>" in html
    assert "td.name .tok { white-space: nowrap; }" in html
    assert plural(1, "paired split") == "1 paired split" and plural(3, "paired split") == "3 paired splits"
    assert plural(2, "strategy", "strategies") == "2 strategies" and plural("?", "split") == "? splits"


def test_config_shows_only_what_applied():
    cfg = {"mode": "head", "strategy": "ce", "tiles": 2, "epochs": 10, "lr": 3e-4, "devices": 1, "extra": {}}
    assert applied_config(cfg) == {"mode": "head", "strategy": "ce", "tiles": 2}
    ft = applied_config({**cfg, "mode": "finetune"})
    assert ft["epochs"] == 10 and ft["lr"] == 3e-4 and "tiles" not in ft


def test_reliability_bins_are_merged_until_dense():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.random(200) * 0.1, [0.55, 0.95]])  # two lone predictions
    y = (rng.random(len(p)) < p).astype(int)
    rb = merged_reliability_bins(y, p, n_bins=10, min_count=10)
    assert rb["count"].sum() == len(p) and (rb["count"] >= 10).all()
    assert np.all(np.diff(rb["lo"]) > 0)


def test_reliability_on_60_test_images_keeps_a_curve_and_the_count_panel_shows_its_bins():
    """60 predictions, most near 0: not one merged dot "n=60" but >= 3 points, and the count panel has the same bins."""
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.random(54) * 0.08, [0.2, 0.35, 0.5, 0.7, 0.85, 0.95]])
    y = (rng.random(60) < p).astype(int)
    rb = merged_reliability_bins(y, p, n_bins=10, min_count=10)
    assert len(rb["count"]) >= 3 and rb["count"].sum() == 60
    assert np.all(np.diff(rb["prob_pred"]) > 0) and np.allclose(rb["hi"][:-1], rb["lo"][1:])
    fig = plot_reliability(y, p, labels=("model", ""))
    texts = [t for t in fig.axes[0].texts if t.get_text().startswith("n=")]
    # every label names a bin's count; labels of points crowded into one corner are not stacked on each
    # other (the count panel below still shows every bin)
    pts = {(round(float(x), 9), round(float(yy), 9)): int(c)
           for x, yy, c in zip(rb["prob_pred"], rb["prob_true"], rb["count"])}
    at = [(round(float(t.xy[0]), 9), round(float(t.xy[1]), 9)) for t in texts]
    assert texts and all(pts[a] == int(t.get_text()[2:]) for a, t in zip(at, texts))
    assert all(np.hypot(a[0] - b[0], a[1] - b[1]) >= 0.07 for i, a in enumerate(at) for b in at[i + 1:])
    assert at[0] == next(iter(pts))  # the first bin is always labelled
    panel = [pt for pt in fig.axes[1].patches]  # one stairs outline: its heights are the bins' counts
    heights = panel[0].get_data().values
    assert list(heights) == list(rb["count"])
    # no spread: one bin of everything
    one = merged_reliability_bins(np.array([0, 1, 0]), np.array([0.3, 0.3, 0.3]))
    assert list(one["count"]) == [3]


def test_reliability_draws_one_line_when_calibration_changed_nothing():
    rng = np.random.default_rng(2)
    p = rng.random(300)
    y = (rng.random(300) < p).astype(int)
    fig = plot_reliability(y, p, p.copy())
    ax = fig.axes[0]
    assert len(ax.lines) == 2  # the diagonal and one model line
    assert "unchanged" in ax.get_legend().get_texts()[1].get_text()
    assert any(t.get_text().startswith("n=") for t in ax.texts)
    fig2 = plot_reliability(y, p, np.sqrt(p))
    assert len(fig2.axes[0].lines) == 3


def test_seed_dots_and_history_plots():
    fig = plot_seed_dots({"ce": [0.5, 0.6, 0.55], "focal": [0.52, 0.7, float("nan")]}, baseline="ce")
    ax = fig.axes[0]
    dots = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert sum(len(ln.get_xdata()) for ln in dots) == 5  # NaN skipped
    hist = [{"epoch": e, "train_loss": 1 / e, "val_ap": 0.5, "lr": 1e-3} for e in (1, 2, 3)]
    fig = plot_training_history(hist, kept_epoch=2)
    assert len(fig.axes) == 3 and all(any(ln.get_xdata()[0] == 2 for ln in a.lines if ln.get_linestyle() == "--")
                                      for a in fig.axes)


def _jpeg_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=int)


def test_thumbnail_outlines_the_mask_and_takes_a_heat_map(tmp_path):
    img = np.full((120, 160, 3), 128, np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[40:80, 60:100] = True
    plain = _jpeg_rgb(thumbnail_jpeg(img))
    outlined = _jpeg_rgb(thumbnail_jpeg(img, mask=mask))
    red = (outlined[..., 0] > 200) & (outlined[..., 1] < 90)
    assert red.sum() > 100 and not ((plain[..., 0] > 200) & (plain[..., 1] < 90)).any()
    assert not red[55:65, 75:85].any()  # the outline, not a filled box
    heat = np.zeros((4, 4))
    heat[1:3, 1:3] = 1.0
    hot = _jpeg_rgb(thumbnail_jpeg(img, overlay=heat))
    assert np.abs(hot - plain).mean() > 5
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert thumbnail_jpeg(bad) is None
    with pytest.raises(ValueError, match="does not match"):
        draw_outline(img, mask[:10])


def test_gallery_enlarges_on_click_without_script():
    jpeg = thumbnail_jpeg(np.zeros((8, 8, 3), np.uint8))
    page = Report("t").add_gallery([GalleryItem(jpeg, "a <b>"), (None, "broken")]).to_html()
    assert '<a href="#img-1">' in page and 'id="img-1"' in page and ".zoom:target" in page
    assert page.count("data:image/jpeg;base64,") == 1  # embedded once, enlarged by CSS
    assert "a &lt;b&gt;" in page and "cannot show this image" in page
    assert "<script" not in page.lower() and "script-src 'none'" in page


def test_audit_page_uses_the_shared_builder():
    from imbvision.audit import _report

    src = open(_report.__file__).read()
    assert "<!doctype" not in src.lower() and "Report(" in src
    assert "apply_review</code>" not in src


def test_run_warnings_are_collected_once_and_kept(tmp_path):
    from imbvision.strategies.registry import DoubleCorrectionWarning

    @collect_warnings
    def run():
        for _ in range(3):
            warnings.warn("double prior correction", DoubleCorrectionWarning)
        warnings.warn("a third-party note", UserWarning)  # not imbvision's: not in the report
        return run_warnings(tmp_path)

    with warnings.catch_warnings(record=True) as outer:
        warnings.simplefilter("always")
        msgs = run()
    assert msgs == ["double prior correction"]
    assert [str(w.message) for w in outer] == ["double prior correction", "a third-party note"]  # once each
    assert run_warnings(tmp_path) == ["double prior correction"]  # read back outside a run


def test_page_has_no_external_resources():
    page = Report("x", extra_css=".x{}").add_html("<p>ok</p>").to_html()
    assert not re.search(r"(src|href)=\"(https?:|//)", page) and ".x{}" in page


def test_data_warnings_few_positives_and_automatic_masks():
    from types import SimpleNamespace

    from imbvision.notices import DataWarning, warn_about_data

    y = np.array([1] * 5 + [0] * 50)
    masks = [None, "m.png", None, None, None] + [None] * 50
    cp = SimpleNamespace(name="copy-paste", params={"auto_mask": True})
    with pytest.warns(DataWarning) as got:
        warn_about_data(y, np.arange(55), masks, [cp])
    text = [str(w.message) for w in got]
    assert text[0].startswith("only 5 positive images") and "4 of 5 training positives have no mask" in text[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_about_data(np.array([1] * 30 + [0] * 30), np.arange(60), ["m"] * 60, [cp])  # nothing to say


def test_a_warning_from_a_folder_named_imbvision_is_not_ours(tmp_path, monkeypatch):
    # CI clones the project into a folder named imbvision: a third-party warning raised from a file
    # under it counted as imbvision's and landed in the report.
    import importlib
    import sys

    pkg = tmp_path / "imbvision" / "elsewhere"
    pkg.mkdir(parents=True)
    (pkg / "third_party_mod.py").write_text("import warnings\n\ndef go():\n    warnings.warn('a third-party note', UserWarning)\n")
    monkeypatch.syspath_prepend(str(pkg))
    mod = importlib.import_module("third_party_mod")
    try:
        @collect_warnings
        def run():
            mod.go()
            return run_warnings(tmp_path)

        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            assert run() == []
    finally:
        sys.modules.pop("third_party_mod", None)
