"""The strategy comparison: leaderboard, statistics, resume and determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from imbvision.workflows.compare import run_compare
from imbvision.evaluation import average_precision, roc_auc
from imbvision.evaluation.metrics import _ap_rows
from imbvision.experiments.stats import holm, mean_ci

STRATS = "ce,weighted-ce,random-over"


def _kw(tiny_kwargs):
    kw = dict(tiny_kwargs)
    kw.pop("max_synthetic")
    kw.pop("n_boot")
    return kw


def _board(out):
    d = json.loads((out / "leaderboard.json").read_text())
    d.pop("timing")
    for r in d["leaderboard"]:
        r.pop("fit_seconds")
    return d


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_kwargs):
    out = tmp_path_factory.mktemp("cmp") / "c"
    return run_compare(strategies=STRATS, seeds=2, out=out, n_boot=200, progress=False, **_kw(tiny_kwargs))


def test_outputs_and_leaderboard(compared):
    out = compared.out
    for f in ("leaderboard.csv", "leaderboard.json", "report.html", "config.json"):
        assert (out / f).is_file()
    names = {r["strategy"] for r in compared.leaderboard}
    assert names == {"ce", "weighted-ce", "random-over"}
    assert len(list((out / "cells").glob("*.json"))) == 6
    for r in compared.leaderboard:
        assert r["ap_ci"][0] < r["ap_mean"] < r["ap_ci"][1]
        if r["strategy"] != "ce":
            assert 0 < r["p"] <= 1 and r["p_holm"] >= r["p"]
            assert len(r["delta_per_split"]) == 2 and r["delta_ci"][0] < r["delta_ap"] < r["delta_ci"][1]
    assert "baseline" in compared.recommendation
    assert "Only 2 paired splits" in compared.recommendation  # said plainly
    page = (out / "report.html").read_text()
    assert page.count("Only 2 paired splits") == 1  # once: in the recommendation, not again in a warning box
    # one naming of the per-split columns in every table: the seed (as in "Test AP per split")
    assert "<th>seed 0</th><th>seed 1</th>" in page and "<th>split 1</th>" not in page
    assert '<span class="tok">weighted-ce</span>' in page  # a strategy name is never cut at its hyphen


def test_one_set_of_full_precision_scores(compared):
    """ΔAP equals the difference of AP means; every cell's AP is the AP of its stored scores."""
    board = {r["strategy"]: r for r in compared.leaderboard}
    y = None
    for path in (compared.out / "cells").glob("*.json"):
        c = json.loads(path.read_text())
        if y is None:
            from imbvision.data.sources import load_source
            y = load_source(json.loads((compared.out / "config.json").read_text())["data"]).labels
        yt = y[np.asarray(c["test_index"])]
        assert c["ap"] == average_precision(yt, c["test_score"])
        assert c["roc_auc"] == roc_auc(yt, c["test_score"])
        assert any(len(repr(v)) > 9 for v in c["test_score"])  # not rounded to 7 decimals
        assert c["ap"] in board[c["strategy"]]["ap_per_split"]
    assert min(min(json.loads(p.read_text())["test_score"]) for p in (compared.out / "cells").glob("*.json")) < 0
    for name, r in board.items():
        assert r["ap_mean"] == pytest.approx(np.mean(r["ap_per_split"]), abs=1e-12)
        if name != "ce":
            assert r["delta_ap"] == pytest.approx(r["ap_mean"] - board["ce"]["ap_mean"], abs=1e-9)
    csv_rows = (compared.out / "leaderboard.csv").read_text().splitlines()
    first = dict(zip(csv_rows[0].split(","), csv_rows[1].split(",")))
    assert float(first["ap_mean"]) == compared.leaderboard[0]["ap_mean"]  # the CSV keeps full precision


def test_ranking_metrics_do_not_depend_on_calibration(compared, tmp_path, tiny_kwargs):
    iso = run_compare(strategies=STRATS, seeds=2, out=tmp_path / "iso", calibration="isotonic", n_boot=200,
                      progress=False, **_kw(tiny_kwargs))
    a = {r["strategy"]: r for r in compared.leaderboard}
    b = {r["strategy"]: r for r in iso.leaderboard}
    for name in a:
        for key in ("ap_mean", "roc_auc", "delta_ap", "p_holm"):
            assert a[name].get(key) == b[name].get(key), (name, key)
    # Calibration did act, and its quality is reported separately.
    assert all(0 <= r["brier"] <= 1 for r in iso.leaderboard)
    assert any(a[n]["brier"] != b[n]["brier"] for n in a)


def test_same_seed_identical_leaderboard(compared, tmp_path, tiny_kwargs):
    again = run_compare(strategies=STRATS, seeds=2, out=tmp_path / "again", n_boot=200, progress=False, **_kw(tiny_kwargs))
    assert _board(compared.out) == _board(again.out)


def test_resume_recomputes_only_missing_cells(compared, tmp_path, tiny_kwargs):
    import shutil
    out = tmp_path / "resume"
    shutil.copytree(compared.out, out)
    victim = sorted((out / "cells").glob("*.json"))[0]
    victim.unlink()
    others = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    res = run_compare(strategies=STRATS, seeds=2, out=out, n_boot=200, progress=False, **_kw(tiny_kwargs))
    assert victim.exists()
    assert res.cells_reused == len(others)  # the report's wall time says the run was resumed
    assert f"resumed: {len(others)} cells reused" in (out / "report.html").read_text(encoding="utf-8")
    assert all(p.stat().st_mtime_ns == t for p, t in others.items())
    assert _board(out) == _board(compared.out)


def test_other_settings_in_same_folder_refused(compared, tiny_kwargs):
    # the message names the setting that differs, old -> new (and only that one)
    with pytest.raises(ValueError, match=r"other settings \(seeds: 2 → 3; saved in") as err:
        run_compare(strategies=STRATS, seeds=3, out=compared.out, n_boot=200, progress=False, **_kw(tiny_kwargs))
    assert "n_boot" not in str(err.value) and "threshold" not in str(err.value)


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(compared, tmp_path, tiny_kwargs):
    out = tmp_path / "killed"
    kw = _kw(tiny_kwargs)
    code = (
        "from imbvision.workflows.compare import run_compare\n"
        f"run_compare(strategies={STRATS!r}, seeds=2, out={str(out)!r}, n_boot=200, progress=False, **{kw!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    rng = np.random.default_rng(int(time.time()))
    target = int(rng.integers(1, 5))
    while time.time() < deadline and proc.poll() is None:
        if (out / "cells").is_dir() and len(list((out / "cells").glob("*.json"))) >= target:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # No half-written cell is ever visible: every file there parses.
    for p in (out / "cells").glob("*.json"):
        json.loads(p.read_text())
    assert not list((out / "cells").glob("*.tmp")) or all(p.name.startswith(".") for p in (out / "cells").glob("*.tmp"))
    run_compare(strategies=STRATS, seeds=2, out=out, n_boot=200, progress=False, **kw)
    assert _board(out) == _board(compared.out)


def test_stats_helpers():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    y = (rng.random(80) < 0.2).astype(int)
    y[0] = 1
    s = np.round(rng.random(80), 2)
    assert _ap_rows(y[None], s[None])[0] == pytest.approx(average_precision_score(y, s))
    assert holm([0.01, 0.04, None, 0.03]) == [0.03, 0.06, None, 0.06]
    m, sd, lo, hi = mean_ci([0.5, 0.6, 0.7])
    assert m == pytest.approx(0.6) and lo < m < hi


def test_kfold_uses_the_fold_sizes_in_the_corrected_variance(tmp_path, tiny_kwargs):
    res = run_compare(strategies="ce,weighted-ce", seeds=1, folds=3, out=tmp_path / "kf", n_boot=0,
                      progress=False, **_kw(tiny_kwargs))
    st = json.loads((res.out / "leaderboard.json").read_text())["statistics"]
    assert st["splits"] == 3 and res.leaderboard[0]["cells"] == 3
    assert 35 <= st["n_test"] <= 45 and st["n_train"] + st["n_test"] < 120  # a third tested; validation held out
    assert st["variance_factor"] == pytest.approx(1 / 3 + st["n_test"] / st["n_train"])
    assert "Only 3 paired splits" in res.recommendation


def test_declared_primary_is_recorded_and_fixed_for_the_folder(compared, tmp_path, tiny_kwargs):
    import shutil
    out = tmp_path / "primary"
    shutil.copytree(compared.out, out)
    (out / "config.json").unlink()  # a new declaration needs a new folder; the cells are reused by their keys
    with pytest.raises(ValueError, match=r"--primary 'focal' is not one of the compared strategies; valid: weighted-ce, random-over"):
        run_compare(strategies=STRATS, seeds=2, out=out, n_boot=200, progress=False, primary="focal", **_kw(tiny_kwargs))
    res = run_compare(strategies=STRATS, seeds=2, out=out, n_boot=200, progress=False, primary="random-over",
                      **_kw(tiny_kwargs))
    by = {r["strategy"]: r for r in res.leaderboard}
    # the declaration is analysis, not a cell setting: every cell of the undeclared run was reused as it was
    for f in (compared.out / "cells").glob("*.json"):
        assert (out / "cells" / f.name).read_bytes() == f.read_bytes(), f.name
    assert by["random-over"]["gate"] == "primary" and by["weighted-ce"]["gate"] == "after primary"
    assert by["random-over"]["p_holm"] == pytest.approx(by["random-over"]["p"])  # the full 5% level
    assert by["weighted-ce"]["p_holm"] >= by["random-over"]["p"]
    assert "Declared primary comparison: random-over vs ce" in res.recommendation
    assert json.loads((out / "config.json").read_text())["primary"] == "random-over"
    # the declaration belongs to the folder: changing it afterwards is refused, naming it
    with pytest.raises(ValueError, match=r"other settings \(primary: 'random-over' → 'weighted-ce'"):
        run_compare(strategies=STRATS, seeds=2, out=out, n_boot=200, progress=False, primary="weighted-ce",
                    **_kw(tiny_kwargs))


def test_adding_or_removing_a_patch_head_keeps_every_other_cell(compared, tmp_path, tiny_kwargs):
    """Only a patch-level head's cells carry the patch-feature version: the global heads' cells stay valid."""
    import shutil
    out = tmp_path / "grow"
    shutil.copytree(compared.out, out)
    before = {f.name: f.read_bytes() for f in (out / "cells").glob("*.json")}
    run_compare(strategies=STRATS + ",patch", seeds=2, out=out, n_boot=200, progress=False, **_kw(tiny_kwargs))
    after = {f.name: f.read_bytes() for f in (out / "cells").glob("*.json")}
    assert all(after[n] == b for n, b in before.items())  # reused byte for byte
    patch_cells = {n: b for n, b in after.items() if n not in before}
    assert len(patch_cells) == 2
    res = run_compare(strategies=STRATS, seeds=2, out=out, n_boot=200, progress=False, **_kw(tiny_kwargs))
    assert res.cells_reused == 6 and all((out / "cells" / n).read_bytes() == b for n, b in before.items())
    # and back: the patch cells were kept too
    res = run_compare(strategies=STRATS + ",patch", seeds=2, out=out, n_boot=200, progress=False, **_kw(tiny_kwargs))
    assert res.cells_reused == 8
