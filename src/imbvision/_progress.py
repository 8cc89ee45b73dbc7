"""One progress-bar set-up for every long loop (rich), a plain-line stand-in for logs, or a silent one.

``progress_bar(enabled)`` returns a :class:`rich.progress.Progress` with the
same columns everywhere (description, bar, done/total, optional rate, time
left) when stderr is a terminal; when it is not (output redirected to a file,
a CI log, ``nohup``), a :class:`PlainProgress` with the same ``add_task`` /
``advance`` / ``update`` interface that prints one plain line every
:data:`PLAIN_INTERVAL_S` seconds (done/total, rate, time left) and one when a
task ends, since a redrawn bar prints nothing to a file until it is done.
When disabled, a stand-in that does nothing and is falsy. Hand-written: rich
draws live bars only on terminals and has no periodic-line mode.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Iterable, Iterator, TypeVar

__all__ = ["progress_bar", "track", "step", "PlainProgress", "PLAIN_INTERVAL_S", "stderr_is_terminal"]

#: Seconds between two plain progress lines (``IMBVISION_PROGRESS_SECONDS`` overrides; 0 prints every step).
PLAIN_INTERVAL_S = 10.0


def _interval() -> float:
    raw = os.environ.get("IMBVISION_PROGRESS_SECONDS")
    try:
        return max(0.0, float(raw)) if raw else PLAIN_INTERVAL_S
    except ValueError:
        return PLAIN_INTERVAL_S


def stderr_is_terminal() -> bool:
    """Whether stderr draws live bars (rich's own test: a TTY, or ``FORCE_COLOR``/``TTY_COMPATIBLE`` set)."""
    from rich.console import Console

    return Console(stderr=True).is_terminal


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class PlainProgress:
    """Progress as plain lines on stderr, for logs: ``desc: done/total (pct) · rate · ETA m:ss``.

    Same interface as the part of :class:`rich.progress.Progress` imbvision uses (context manager,
    ``add_task``, ``advance``, ``update``). A line is printed when a task starts, at most every
    ``interval`` seconds while it runs (default :data:`PLAIN_INTERVAL_S`), and once when it
    completes or the block ends.
    """

    def __init__(self, *, rate: str | None = None, interval: float | None = None, stream: Any = None) -> None:
        self.rate = rate or "items/s"
        self.interval = _interval() if interval is None else interval
        self.stream = stream
        self._tasks: list[dict[str, Any]] = []

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: Any) -> bool:
        for t in self._tasks:
            if not t["ended"] and t["done"] > t["start_done"]:
                self._line(t, final=True)
        return False

    def __bool__(self) -> bool:
        return True

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_: Any) -> int:
        now = time.monotonic()
        self._tasks.append({"desc": description, "total": total, "done": completed, "start_done": completed,
                            "t0": now, "last": now, "ended": False})
        self._line(self._tasks[-1])
        return len(self._tasks) - 1

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def update(self, task: int, *, advance: float | None = None, completed: float | None = None,
               total: float | None = None, description: str | None = None, **_: Any) -> None:
        t = self._tasks[task]
        if total is not None:
            t["total"] = total
        if description is not None:
            t["desc"] = description
        if completed is not None:
            t["done"] = completed
        if advance:
            t["done"] += advance
        finished = t["total"] is not None and t["done"] >= t["total"]
        if finished and not t["ended"]:
            self._line(t, final=True)
        elif not finished and time.monotonic() - t["last"] >= self.interval:
            self._line(t)

    def _line(self, t: dict[str, Any], final: bool = False) -> None:
        now = time.monotonic()
        t["last"] = now
        elapsed = now - t["t0"]
        done, total = t["done"], t["total"]
        count = f"{done:g}/{total:g}" if total is not None else f"{done:g}"
        if total:
            count += f" ({done / total:.0%})"
        parts = [f"{t['desc']}: {count}"]
        moved = done - t["start_done"]
        if moved > 0 and elapsed > 0:
            speed = moved / elapsed
            parts.append(f"{speed:.1f} {self.rate}")
            if final:
                parts.append(f"done in {_clock(elapsed)}")
            elif total is not None:
                parts.append(f"ETA {_clock((total - done) / speed)}")
        elif final:
            parts.append(f"done in {_clock(elapsed)}")
        if final:
            t["ended"] = True
        stream = self.stream or sys.stderr
        print(" · ".join(parts), file=stream, flush=True)

T = TypeVar("T")


class _Null:
    """A disabled progress bar: every call is a no-op; ``bool(bar)`` is False."""

    def __enter__(self) -> "_Null":
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False

    def __bool__(self) -> bool:
        return False

    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def advance(self, *a: Any, **k: Any) -> None:
        pass

    def update(self, *a: Any, **k: Any) -> None:
        pass


def progress_bar(enabled: bool, *, rate: str | None = None, transient: bool = False):
    """A rich progress bar, or a silent stand-in when ``enabled`` is False.

    Parameters
    ----------
    enabled
        Show the bar (on stderr's console, as rich does); when stderr is not a terminal, a
        :class:`PlainProgress` that prints plain lines instead.
    rate
        Unit of a speed column (e.g. ``"img/s"``); no speed column when None.
    transient
        Remove the bar from the terminal when done.
    """
    if not enabled:
        return _Null()
    if not stderr_is_terminal():
        return PlainProgress(rate=rate)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class _Rate(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task):  # type: ignore[override]
            speed = task.finished_speed or task.speed
            return Text(f"{speed:6.1f} {rate}" if speed else f"   -- {rate}")

    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if rate:
        cols.append(_Rate())
    cols.append(TimeRemainingColumn())
    return Progress(*cols, transient=transient)


def track(items: Iterable[T], enabled: bool, description: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` with a progress bar when ``enabled``; the bar stops at once on an error."""
    if not enabled:
        yield from items
        return
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress_bar(True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


class step:
    """A spinner with elapsed time for a step that has no count of its own (fitting a head, the report...).

    Context manager: ``with step("fitting the head", enabled=progress): ...``. When stderr is not a
    terminal: a line when it starts, ``still running (m:ss)`` every 3 × :data:`PLAIN_INTERVAL_S`,
    and ``done in m:ss`` at the end."""

    def __init__(self, text: str, enabled: bool = True) -> None:
        self.text, self.enabled = text, enabled
        self._p: Any = None
        self._beat: threading.Thread | None = None

    def __enter__(self) -> "step":
        if not self.enabled:
            return self
        if not stderr_is_terminal():  # a log: say it started, every PLAIN_INTERVAL_S × 3 that it runs, and when done
            self._t0 = time.monotonic()
            print(f"{self.text} ...", file=sys.stderr, flush=True)
            self._stop = threading.Event()
            self._beat = threading.Thread(target=self._heartbeat, daemon=True)
            self._beat.start()
            return self
        from rich.console import Console
        from rich.errors import LiveError
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        p = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                     console=Console(stderr=True), transient=False)
        try:
            p.start()
        except LiveError:  # inside another live display: that one already shows progress
            return self
        p.add_task(self.text, total=None)
        self._p = p
        return self

    def _heartbeat(self) -> None:
        every = max(_interval() * 3, 1.0)
        while not self._stop.wait(every):
            print(f"{self.text}: still running ({_clock(time.monotonic() - self._t0)})", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._beat is not None:
            self._stop.set()
            self._beat.join()
            self._beat = None
            if exc[0] is None:
                print(f"{self.text}: done in {_clock(time.monotonic() - self._t0)}", file=sys.stderr, flush=True)
        if self._p is not None:
            self._p.stop()
            self._p = None
