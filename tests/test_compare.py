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

from imbvision.experiments.compare import run_compare
from imbvision.experiments.stats import _ap_rows, holm, mean_ci, paired_bootstrap_delta

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
        assert r["ap_ci"][0] <= r["ap_mean"] <= r["ap_ci"][1]
        if r["strategy"] != "ce":
            assert 0 < r["p_bootstrap"] <= 1 and r["p_holm"] >= r["p_bootstrap"]
    assert "baseline" in compared.recommendation


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
    run_compare(strategies=STRATS, seeds=2, out=out, n_boot=200, progress=False, **_kw(tiny_kwargs))
    assert victim.exists()
    assert all(p.stat().st_mtime_ns == t for p, t in others.items())
    assert _board(out) == _board(compared.out)


def test_other_settings_in_same_folder_refused(compared, tiny_kwargs):
    with pytest.raises(ValueError, match="other settings"):
        run_compare(strategies=STRATS, seeds=3, out=compared.out, n_boot=200, progress=False, **_kw(tiny_kwargs))


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(compared, tmp_path, tiny_kwargs):
    out = tmp_path / "killed"
    kw = _kw(tiny_kwargs)
    code = (
        "from imbvision.experiments.compare import run_compare\n"
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
    good = y + rng.normal(0, 0.3, 80)
    bad = rng.normal(0, 1, 80)
    d = paired_bootstrap_delta([(y, good, bad)], n_boot=300)
    assert d["delta"] > 0 and d["lo"] > 0 and d["p"] < 0.05
    same = paired_bootstrap_delta([(y, good, good)], n_boot=300)
    assert same["delta"] == 0 and same["p"] == 1.0
