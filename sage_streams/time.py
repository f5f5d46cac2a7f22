"""Event time: reading and validating the timestamps of items.

A timestamp comes from ``item[field]`` or from ``fn(item)``. It must be a finite real number
(``int`` or ``float``, not ``bool``); a ``datetime`` is converted to seconds since the epoch
(aware ones by their UTC offset; naive ones as UTC, and one stream may not mix the two). A bad
timestamp is an error of its item, raised as :class:`~sage_streams.operators.base.ItemError`, never of
the runtime.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "SystemClock", "TimerHandle"]


class TimerHandle(Protocol):
    """What :meth:`Clock.call_at` returns: a timer that can be called off."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Processing time: what processing-time windows and idle timeouts read and wait on.

    The runtime takes it from ``LocalEnvironment(clock=...)``; tests pass
    :class:`sage_streams.testing.ManualClock` to move time by hand instead of sleeping. Timers
    are callbacks, so that an operator waits on one doorbell for data and time alike.

    Two readings: :meth:`now`, monotonic, which timers and idle timeouts run on (a wall clock
    set back or forward must not stall or rush them), and :meth:`time`, wall-clock seconds
    since the epoch, which processing-time windows take their bounds from, as Flink's
    processing time does, so that a window's ``start_time`` means a moment a user can name.
    """

    def now(self) -> float:
        """Seconds on this monotonic clock (only differences matter)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (``time.time()``)."""
        ...

    def call_at(self, deadline: float, callback: Callable[[], None]) -> TimerHandle:
        """Call ``callback`` once ``now() >= deadline``."""
        ...


class SystemClock:
    """The event loop's monotonic clock, and the system's wall clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def time(self) -> float:
        return time.time()

    def call_at(self, deadline: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_at(deadline, callback)
