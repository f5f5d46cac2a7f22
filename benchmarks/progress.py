"""What the harness is measuring right now: a progress bar on a terminal, plain lines elsewhere.

On a terminal (stdout and stderr both) a ``rich`` progress bar counts the measurements and shows
the one running; it disappears when the run ends, leaving only the table. Anywhere else (a pipe,
a CI log, the tests) or without ``rich``, each measurement is one plain line on stderr, so that
captured output stays readable and stdout holds only the table.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["Progress"]

T = TypeVar("T")


class Progress:
    """Counts measurements as they run (from several threads too).

    Args:
        total: how many measurements the run will make (0 if not known: lines then show no total).
        fancy: force the progress bar on or off; by default on when both stdout and stderr are
            terminals and ``rich`` imports.
    """

    def __init__(self, total: int = 0, *, fancy: bool | None = None) -> None:
        self.total = total
        self.started = 0
        self.done = 0
        if fancy is None:
            fancy = sys.stdout.isatty() and sys.stderr.isatty()
        self._bar: Any = _rich_bar() if fancy else None
        self._task: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("starting", total=self.total or None)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def run(self, label: str, measurement: Callable[[], T]) -> T:
        """Show ``label``, run ``measurement``, count it done, and return what it returned."""
        with self._lock:
            self.started += 1
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, description=label)
            else:
                count = f"{self.started}/{self.total}" if self.total else f"{self.started}"
                print(f"  [{count}] {label}", file=sys.stderr, flush=True)
        result = measurement()
        with self._lock:
            self.done += 1
            if self._bar is not None and self._task is not None:
                self._bar.advance(self._task)
        return result


def _rich_bar() -> Any:
    """A transient rich progress bar on stderr, or None if rich is not installed."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:
        return None
    return Progress(
        TextColumn("[bold]{task.description:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
