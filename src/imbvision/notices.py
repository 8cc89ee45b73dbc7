"""Warnings that matter to a user, collected once per run and shown in its report.

A remedy or data step warns with :func:`warnings.warn` (double prior
correction, few positives, duplicates grouped into one split, masks proposed
automatically...). The same warning can fire several times in one run (every
``compose`` of a recipe, every fold); :func:`collect_warnings` wraps a run,
records each distinct imbvision warning once, re-emits it once when the run
ends, and :func:`run_warnings` hands the list to the run's report (and keeps it
in ``warnings.json`` so ``imbvision evaluate`` can rewrite the same report).

Built on :func:`warnings.catch_warnings`, which is process-global: wrap whole
runs, not code that runs in several threads at once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import json
import threading
import warnings
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, TypeVar

__all__ = ["collect_warnings", "run_warnings", "unique_messages", "warn_about_data", "DataWarning", "ReportNote", "add_report_note",
           "FEW_POSITIVES", "CacheWarning", "LibraryWarning", "library_line", "passing_result_warnings",
           "emit_library_lines", "convergence_line", "thread_safe_quiet", "in_main_thread"]

F = TypeVar("F", bound=Callable[..., Any])
_CURRENT: ContextVar[list[warnings.WarningMessage] | None] = ContextVar("imbvision_warnings", default=None)
_FILE = "warnings.json"


FEW_POSITIVES = 20


class DataWarning(UserWarning):
    """The data will make the numbers shaky or a remedy guess (few positives, masks proposed automatically)."""


def warn_about_data(labels: Any, train_index: Any, masks: list[Any], specs: Any) -> None:
    """Warn (:class:`DataWarning`) about what a user should know before trusting a run.

    Parameters
    ----------
    labels
        ``(N,)`` 0/1 labels of the whole dataset.
    train_index
        Indices of the training split.
    masks
        Mask path (or None) per image, ``(N,)``.
    specs
        The recipe's strategy specs (``name`` and ``params``); a strategy with an
        ``auto_mask`` parameter switched on segments positives that lack a mask.
    """
    import numpy as np

    y = np.asarray(labels)
    idx = np.asarray(train_index, dtype=int)
    pos = [int(i) for i in idx if y[i] == 1]
    # the normality head learns from negatives alone: few (or no) training positives are its normal use
    if len(pos) < FEW_POSITIVES and not any(not getattr(getattr(sp, "record", None), "needs_positives", True)
                                            for sp in specs):
        warnings.warn(f"only {len(pos)} positive images to train on: expect wide confidence intervals and an "
                      "unstable threshold; more positives (or `compare` over several seeds) will say more",
                      DataWarning, stacklevel=2)
    auto = [sp.name for sp in specs if dict(getattr(sp, "params", {}) or {}).get("auto_mask")]
    missing = sum(masks[i] is None for i in pos)
    if auto and missing:
        warnings.warn(f"{' and '.join(auto)}: {missing} of {len(pos)} training positives have no mask, so their "
                      "objects are segmented automatically (propose_mask), which misses low-contrast defects; "
                      "check the examples in the report, or give real masks", DataWarning, stacklevel=2)


class CacheWarning(RuntimeWarning):
    """A cached artefact failed verification and is recomputed, or a cache cannot be written (kept in memory)."""


class LibraryWarning(UserWarning):
    """A library warning that changes a result (scikit-learn's ``ConvergenceWarning``), as one line."""


def library_line(w: warnings.WarningMessage, where: str = "") -> str | None:
    """One line for a library warning that changes a result, else ``None``.

    scikit-learn's ``ConvergenceWarning`` (matched by name, so sklearn is not imported here) means a fit
    stopped before converging: its scores differ from a converged fit's.
    """
    if getattr(w.category, "__name__", "") != "ConvergenceWarning":
        return None
    return convergence_line(where, " ".join(str(w.message).split("\n")[0].split()))


def convergence_line(where: str, detail: str) -> str:
    """The one line for a fit that stopped before converging (``detail``: the solver's own words)."""
    return (f"scikit-learn did not converge{f' in {where}' if where else ''} ({detail.rstrip('.:')}): the fit "
            "stopped early and its scores differ from a converged fit's; raise max_iter")


@contextlib.contextmanager
def passing_result_warnings(where: str = ""):
    """Silence the warnings of a block (a cell of a grid repeats them) except those that change its result:
    :class:`CacheWarning` (re-emitted) and library convergence warnings.

    Yields the list that receives the library lines (one :class:`LibraryWarning` line each, filled when the
    block ends); they are not emitted here but kept with the result, whose reader says them once
    (:func:`emit_library_lines`) -- whether it was computed now, in another thread or process, or reused.
    """
    lines: list[str] = []
    if not in_main_thread():  # warning state is process-wide: a worker thread leaves it alone (thread_safe_quiet)
        yield lines
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield lines
    for w in caught:
        line = library_line(w, where)
        if line is not None:
            if line not in lines:
                lines.append(line)
        elif issubclass(w.category, CacheWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def in_main_thread() -> bool:
    """Whether this is the main thread: the only one that may change the (process-wide) warning state."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def thread_safe_quiet(*categories: type[Warning], keep: tuple[type[Warning], ...] = ()):
    """Ignore warnings of ``categories`` (except ``keep``) inside the block -- in the main thread only.

    :func:`warnings.catch_warnings` saves and restores process-wide state: entered by two threads at once
    (``compare --jobs``), the one leaving last restores the other's filters and recorder, so later warnings
    of the whole run are lost or filtered. In a worker thread the block changes nothing: its warnings reach
    the run's recorder (:func:`collect_warnings`), which shows each distinct one once.
    """
    if not in_main_thread():
        yield
        return
    with warnings.catch_warnings():
        for c in categories:
            warnings.simplefilter("ignore", category=c)
        for c in keep:
            warnings.simplefilter("always", category=c)
        yield


def emit_library_lines(lines: Any) -> None:
    """Say again the :class:`LibraryWarning` lines a stored result kept (a reused compare cell, a cell computed
    in another process); :func:`collect_warnings` shows each distinct line once."""
    for line in lines or []:
        warnings.warn(str(line), LibraryWarning, stacklevel=2)


class ReportNote(DataWarning):
    """A remark already printed once (e.g. "12 duplicate sets grouped"): recorded for the report, not re-emitted."""


def add_report_note(message: str) -> None:
    """Put ``message`` in the report of the run being collected (no-op outside :func:`collect_warnings`)."""
    caught = _CURRENT.get()
    if caught is not None:
        caught.append(warnings.WarningMessage(ReportNote(message), ReportNote, __file__, 0))


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _ours(w: warnings.WarningMessage) -> bool:
    """An imbvision warning: its class is ours, or it was raised from a file inside this package
    (not merely from a path that contains the word, e.g. a checkout folder named ``imbvision``)."""
    mod = getattr(w.category, "__module__", "") or ""
    return mod.startswith("imbvision") or os.path.abspath(str(w.filename)).startswith(_PACKAGE_DIR)


def _folded(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    """``caught`` with each library warning that changes a result as its one :class:`LibraryWarning` line.

    A solver's own warning raised in a worker thread (``compare --jobs``) reaches the run's recorder as is,
    while the cell it belongs to names it with its strategy (a head's ``library_notes``): when such a named
    line exists for the same solver, the unnamed one says nothing more and is left out.
    """
    named = [str(w.message) for w in caught if issubclass(w.category, LibraryWarning)]
    out = []
    for w in caught:
        line = library_line(w)
        if line is not None:
            solver = line.split("(", 1)[-1].split(" ", 1)[0]
            if any(f"({solver} " in n and " in " in n.split("(", 1)[0] for n in named):
                continue
            w = warnings.WarningMessage(LibraryWarning(line), LibraryWarning, __file__, 0)
        out.append(w)
    return out


def unique_messages(caught: list[warnings.WarningMessage]) -> list[str]:
    """The distinct imbvision warning texts in ``caught`` (library warnings that change a result as their
    one line), first-seen order."""
    return list(dict.fromkeys(str(w.message) for w in _folded(caught) if _ours(w)))


def collect_warnings(fn: F) -> F:
    """Decorator: record the warnings raised while ``fn`` runs; re-emit each distinct one once."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _CURRENT.get() is not None:  # already inside a collecting run
            return fn(*args, **kwargs)
        replay: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                token = _CURRENT.set(caught)
                try:
                    return fn(*args, **kwargs)
                finally:
                    _CURRENT.reset(token)
                    seen: set[tuple[type, str]] = set()
                    for w in _folded(caught):  # library warnings as one line each, as ours
                        key = (w.category, str(w.message))
                        if key not in seen and not issubclass(w.category, (DeprecationWarning, ReportNote)):
                            seen.add(key)
                            replay.append(w)
        finally:
            for w in replay:  # outside the recording context: shown by the caller's handler, once each
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    return wrapper  # type: ignore[return-value]


def run_warnings(run_dir: str | Path) -> list[str]:
    """The warnings of the run being written to ``run_dir``.

    Inside :func:`collect_warnings` the ones recorded so far are saved to
    ``run_dir/warnings.json`` and returned; outside (re-evaluating a finished
    run) the saved list is read back ([] when there is none).
    """
    path = Path(run_dir) / _FILE
    caught = _CURRENT.get()
    if caught is not None:
        msgs = unique_messages(caught)
        from ._io import write_json

        write_json(path, {"warnings": msgs})
        return msgs
    try:
        return [str(m) for m in json.loads(path.read_text(encoding="utf-8")).get("warnings", [])]
    except (OSError, ValueError, AttributeError):
        return []
