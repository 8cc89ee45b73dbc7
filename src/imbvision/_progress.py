"""One progress-bar set-up for every long loop (rich), or a silent stand-in.

``progress_bar(enabled)`` returns a :class:`rich.progress.Progress` with the
same columns everywhere (description, bar, done/total, optional rate, time
left), or -- when disabled -- an object with the same ``add_task`` /
``advance`` / ``update`` interface that does nothing and is falsy.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, TypeVar

__all__ = ["progress_bar", "track", "step"]

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
        Show the bar (on stderr's console, as rich does).
    rate
        Unit of a speed column (e.g. ``"img/s"``); no speed column when None.
    transient
        Remove the bar from the terminal when done.
    """
    if not enabled:
        return _Null()
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

    Context manager: ``with step("fitting the head", enabled=progress): ...``."""

    def __init__(self, text: str, enabled: bool = True) -> None:
        self.text, self.enabled = text, enabled
        self._p: Any = None

    def __enter__(self) -> "step":
        if not self.enabled:
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

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None
