"""Time, both kinds: the processing-time :class:`Clock` and the event time of an input.

Processing time is what a clock says: timers, idle timeouts and processing-time windows read it.
Event time is what the items say: a timestamp is seconds as a ``float`` (read from items by
:mod:`sage_streams.operators.timestamps`), and a watermark is the event time up to which an
input is taken to be complete. :class:`EventTime` is the one type that moves a watermark on:
window operators keep one per input, interval joins one per side, and what it says travels
between operators as the channel's :class:`~sage_streams.channel.Watermark` message, a float of
the same scale. ``-math.inf`` means no event time yet; ``math.inf``, an input that has ended.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Clock", "EventTime", "SystemClock", "TimerHandle"]


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


@dataclass(slots=True)
class EventTime:
    """Event time as one input of an operator moves it on, item by item.

    An input's ``mark`` is the largest timestamp it has delivered minus ``delay`` (the
    out-of-orderness); the operator's ``watermark`` is the smallest mark among its inputs that
    count, so it is this input's mark held down by ``cap``, the smallest mark of the others
    (``inf`` when none counts). The watermark is recomputed when this input's mark rises, and it
    never goes back. ``latest`` is the largest timestamp seen by the operator.
    """

    watermark: float
    mark: float = -math.inf
    cap: float = math.inf
    delay: float = 0.0
    latest: float = -math.inf

    def after(self, stamp: float) -> float:
        """The watermark once an item at ``stamp`` has passed (nothing is changed): what
        :meth:`pass_item` would make it, computed without a copy (a run of items with new keys
        asks once per item)."""
        mark = stamp - self.delay
        if mark <= self.mark:
            return self.watermark
        return max(self.watermark, min(mark, self.cap))

    def reaches(self, stamp: float, deadline: float) -> bool:
        """Whether an item at ``stamp`` moves the watermark, up to ``deadline`` or past it."""
        watermark = self.after(stamp)
        return watermark > self.watermark and watermark >= deadline

    def pass_item(self, stamp: float) -> bool:
        """Move on past an item at ``stamp``; ``True`` when the watermark rose."""
        if stamp > self.latest:
            self.latest = stamp
        mark = stamp - self.delay
        if mark <= self.mark:
            return False
        self.mark = mark
        watermark = min(mark, self.cap)
        if watermark <= self.watermark:
            return False
        self.watermark = watermark
        return True

    def pass_items(self, stamps: Sequence[float]) -> None:
        """Move on past items none of which makes anything fire: only the largest stamp matters."""
        if stamps:
            self.pass_item(max(stamps))
