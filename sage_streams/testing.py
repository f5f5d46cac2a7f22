"""The public test kit: helpers for testing code that builds sage_streams graphs.

``ManualClock`` is a processing-time clock that moves only when told, so that processing-time
windows and idle timeouts are tested without sleeping::

    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    ...
    await clock.advance(60)   # every timer due by now fires

A user function under test may wait on it too: ``await clock.sleep(0.01)`` returns once the
clock has been advanced that far (a call's latency, without sleeping).

``leftover_tasks()`` lists the tasks of the running loop other than the caller's: after a graph
has ended, however it ended, the list must be empty (no operator, feeder or run task survives).

Example::

    async def test_pipeline():
        await env.execute()
        assert leftover_tasks() == set()
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

__all__ = ["ManualClock", "leftover_tasks"]


class _ManualTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A :class:`~sage_streams.time.Clock` that stands still until :meth:`advance` moves it.

    ``now()`` starts at ``start``; the wall clock, ``time()``, is ``now() + epoch_offset``
    (an attribute that may be set, say to today's epoch seconds, to see processing-time windows
    with realistic bounds). With the default offset 0 both readings agree.
    """

    def __init__(self, start: float = 0.0, *, epoch_offset: float = 0.0) -> None:
        self._now = float(start)
        self.epoch_offset = float(epoch_offset)
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        """The clock's reading, in seconds: ``start`` plus every :meth:`advance` so far."""
        return self._now

    def time(self) -> float:
        """Wall-clock seconds since the epoch, as processing-time window bounds read them."""
        return self._now + self.epoch_offset

    def call_at(self, deadline: float, callback: Callable[[], None]) -> _ManualTimer:
        """Run ``callback`` once the clock reaches ``deadline`` (its reading, as :meth:`now`);
        the timer returned has ``cancel()``. Timers due together run in the order they were set."""
        timer = _ManualTimer(callback)
        heapq.heappush(self._timers, (deadline, next(self._order), timer))
        return timer

    async def advance(self, seconds: float) -> None:
        """Move the clock on, run every timer now due, and let the tasks they wake run."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds!r})")
        self._now += seconds
        while self._timers and self._timers[0][0] <= self._now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback()
        # Let the woken tasks (and what they wake in turn) run before the caller goes on.
        for _ in range(20):
            await asyncio.sleep(0)

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has moved ``seconds`` on: in a test, the stand-in for
        ``asyncio.sleep`` in a user function (an async call of a given latency, say)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        ring = asyncio.Event()
        timer = self.call_at(self._now + seconds, ring.set)
        try:
            await ring.wait()
        finally:
            timer.cancel()


def leftover_tasks() -> set[asyncio.Task[object]]:
    """Tasks of the running loop other than the calling one."""
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current}
