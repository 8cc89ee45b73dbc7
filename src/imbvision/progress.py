"""A spinner with elapsed time for a step that has no progress of its own.

Steps that take more than a few seconds without a natural count (fitting a
head, making synthetic images, bootstrap intervals and the report, the audit's
signals) show ``⠋ fitting the logreg head 0:00:04`` on stderr, so a terminal is
never silent. Built on rich's :class:`~rich.progress.Progress`; a no-op when
disabled or when another live display (a progress bar) is already running.
"""

from __future__ import annotations

from typing import Any

__all__ = ["step"]


class step:
    """Context manager: ``with step("fitting the head", enabled=progress): ...``."""

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
