"""Progress in a log: plain lines (done/total, rate, time left) when stderr is not a terminal."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

from imbvision._progress import PlainProgress, progress_bar, step


def test_plain_progress_prints_counts_rate_and_eta_then_one_final_line() -> None:
    buf = io.StringIO()
    with PlainProgress(rate="img/s", interval=0.0, stream=buf) as bar:
        task = bar.add_task("embedding", total=4)
        for _ in range(4):
            time.sleep(0.01)
            bar.advance(task)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "embedding: 0/4 (0%)"
    assert re.fullmatch(r"embedding: 2/4 \(50%\) · [\d.]+ img/s · ETA 0:\d\d", lines[2]), lines
    assert re.fullmatch(r"embedding: 4/4 \(100%\) · [\d.]+ img/s · done in 0:\d\d", lines[-1]), lines
    assert sum("4/4" in ln for ln in lines) == 1  # the end is said once


def test_plain_progress_is_throttled_to_its_interval() -> None:
    buf = io.StringIO()
    with PlainProgress(interval=3600, stream=buf) as bar:
        task = bar.add_task("cells", total=1000, completed=10)
        for _ in range(500):
            bar.advance(task)
    lines = buf.getvalue().splitlines()
    # the start, nothing for the next hour, and the unfinished state when the block ends (resumed: from 10)
    assert lines[0] == "cells: 10/1000 (1%)" and len(lines) == 2 and lines[1].startswith("cells: 510/1000 (51%)")


def test_a_redirected_stderr_gets_plain_lines_and_a_terminal_gets_rich() -> None:
    code = ("import sys; from imbvision._progress import progress_bar, step\n"
            "bar = progress_bar(True)\n"
            "print(type(bar).__name__)\n"
            "with bar:\n"
            "    t = bar.add_task('checking images', total=3)\n"
            "    [bar.advance(t) for _ in range(3)]\n"
            "with step('fitting the head'):\n"
            "    pass\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": "/usr/bin"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "PlainProgress"
    err = res.stderr.splitlines()
    assert err[0] == "checking images: 0/3 (0%)" and err[1].startswith("checking images: 3/3 (100%)")
    assert err[2] == "fitting the head ..." and err[3].startswith("fitting the head: done in 0:0")
    forced = subprocess.run([sys.executable, "-c", "from imbvision._progress import progress_bar;"
                             "print(type(progress_bar(True)).__name__)"],
                            capture_output=True, text=True, env={"PATH": "/usr/bin", "FORCE_COLOR": "1"})
    assert forced.stdout.strip() == "Progress"


def test_disabled_progress_prints_nothing(capsys) -> None:
    with progress_bar(False) as bar:
        bar.advance(bar.add_task("x", total=2))
    with step("quiet", enabled=False):
        pass
    assert capsys.readouterr().err == ""
