"""Library warnings that change a result reach the user once, in imbvision's words, and the report (issue 19 §5).

``logreg:max_iter=3`` stops scikit-learn's solver early: its scores differ from a converged fit's. The
``ConvergenceWarning`` used to be swallowed by the head fit's filter on ``UserWarning`` (its base class), so the
CLI said nothing.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from imbvision.cli import app

WORDS = "scikit-learn did not converge"


def _opts(tiny_kwargs) -> list[str]:
    return ["--data", tiny_kwargs["data"], "--backbone", "test_efficientnet", "--weights", "none",
            "--image-size", "64", "--cache-dir", tiny_kwargs["cache_dir"]]


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "converge" in ln.lower()]


def _one_line_in_our_words(stderr: str) -> str:
    lines = _lines(stderr)
    assert len(lines) == 1, stderr
    assert WORDS in lines[0] and "raise max_iter" in lines[0]
    assert "ConvergenceWarning" not in stderr and "sklearn/" not in stderr and "Traceback" not in stderr
    return lines[0]


def test_train_says_an_unconverged_fit_once_and_reports_it(tiny_kwargs, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", *_opts(tiny_kwargs), "--strategy", "logreg:max_iter=3", "--out", str(out)],
                             env={"COLUMNS": "4000"})
    assert res.exit_code == 0, res.output
    _one_line_in_our_words(res.stderr)
    saved = json.loads((out / "warnings.json").read_text(encoding="utf-8"))["warnings"]
    assert sum(WORDS in w for w in saved) == 1
    assert WORDS in (out / "report.html").read_text(encoding="utf-8")


def test_a_converged_fit_says_nothing(tiny_kwargs, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", *_opts(tiny_kwargs), "--strategy", "logreg", "--out", str(out)],
                             env={"COLUMNS": "4000"})
    assert res.exit_code == 0, res.output
    assert not _lines(res.stderr)
    assert WORDS not in (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_compare_says_it_once_per_run_also_when_its_cells_are_reused(tiny_kwargs, tmp_path, jobs):
    out = tmp_path / "cmp"
    args = ["compare", *_opts(tiny_kwargs), "--strategies", "logreg:max_iter=3", "--seeds", "2", "--jobs", jobs,
            "--out", str(out)]
    for attempt in ("fresh", "cells reused"):
        res = CliRunner().invoke(app, args, env={"COLUMNS": "4000"})
        assert res.exit_code == 0, (attempt, res.output)
        assert "logreg:max_iter=3" in _one_line_in_our_words(res.stderr), attempt
        assert WORDS in (out / "report.html").read_text(encoding="utf-8"), attempt
    cells = [json.loads(p.read_text(encoding="utf-8")) for p in (out / "cells").glob("logreg*.json")]
    assert len(cells) == 2 and all(WORDS in c["library_warnings"][0] for c in cells)


def test_worker_threads_leave_the_warning_state_alone():
    """``catch_warnings`` entered by two threads at once leaves one thread's filters and recorder behind (the
    process-wide state): a threaded compare then lost its later warnings. Worker threads change nothing now."""
    import threading
    import warnings

    from imbvision.notices import passing_result_warnings, thread_safe_quiet

    before = (list(warnings.filters), warnings.showwarning)
    inside, gate = [], threading.Barrier(2)

    def work():
        with passing_result_warnings("x"), thread_safe_quiet(UserWarning):
            gate.wait(timeout=10)
            inside.append(list(warnings.filters))
            gate.wait(timeout=10)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (list(warnings.filters), warnings.showwarning) == before
    assert inside == [before[0], before[0]]
    with thread_safe_quiet(UserWarning):  # the main thread still silences
        assert warnings.filters[0][:3] == ("ignore", None, UserWarning)
