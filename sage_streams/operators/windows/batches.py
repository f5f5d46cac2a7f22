"""Event time through a batch: feeding a ``WindowState`` item-exactly.

A window operator receives items in batches, but what fires must never depend on how they were
batched. So the watermark moves item by item: each item is judged late or not against the
watermark before it, then moves the watermark on, and the windows the watermark reaches fire right
then, before the next item is looked at. :func:`feed_batch` does exactly that, item by item for
sliding windows and sessions.

For tumbling windows it finds the same points without per-item watermark work. Whether an item
moves the watermark to a deadline is monotone in its timestamp, so the first item that does in a
batch is found by a binary search over maxima of slices, computed in C. The items up to it go to
``WindowState.add_run`` in one tight loop, then what is due fires, and
the search goes on from the next item. A run also ends early after an item that makes the next
deadline earlier, since the search was made for the old one.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

from sage_streams.operators.windows.panes import FiredWindow
from sage_streams.operators.windows.state import WindowState
from sage_streams.time import EventTime

__all__ = ["feed_batch"]


def feed_batch(
    state: WindowState,
    time: EventTime,
    index: int,
    items: Sequence[Any],
    stamps: Sequence[float],
    keys: Sequence[Hashable],
    late: list[Any],
    fired: list[FiredWindow],
) -> tuple[int, Exception | None]:
    """Feed ``items`` of input ``index`` to ``state``, moving ``time`` on item by item.

    ``stamps`` are the items' finite timestamps, ``keys`` their hashable keys. Late items are
    appended to ``late``, fired windows to ``fired``, in order.

    Returns:
        How many items were fed; and ``None``, or the error of the next item, which could not be
        added and left no trace (``time`` is past the items before it, not past it).
    """
    feeder = _Feeder(state, time, late, fired)
    feed = feeder.runs if state.tumbling else feeder.each
    return feed(index, items, stamps, keys)


class _Feeder:
    """What feeding a batch changes: the windows, event time, and the late and fired lists."""

    __slots__ = ("fired", "late", "state", "time")

    def __init__(
        self, state: WindowState, time: EventTime, late: list[Any], fired: list[FiredWindow]
    ) -> None:
        self.state = state
        self.time = time
        self.late = late
        self.fired = fired

    def each(
        self, index: int, items: Sequence[Any], stamps: Sequence[float], keys: Sequence[Hashable]
    ) -> tuple[int, Exception | None]:
        """One item at a time, for any windows."""
        state, time = self.state, self.time
        for position, (item, stamp, key) in enumerate(zip(items, stamps, keys, strict=True)):
            try:
                # Judged against the watermark before this item moves it, as in Flink.
                added = state.add(key, stamp, index, item, time.watermark)
            except Exception as exc:
                return position, exc
            if not added:
                self.late.append(item)
            self._move_on(stamp)
        return len(items), None

    def runs(
        self, index: int, items: Sequence[Any], stamps: Sequence[float], keys: Sequence[Hashable]
    ) -> tuple[int, Exception | None]:
        """A run at a time, up to each item that may fire something, for tumbling windows."""
        state, time = self.state, self.time
        start = 0
        while start < len(items):
            deadline = state.next_deadline()
            rest = _part(stamps, start, len(stamps))
            top = max(rest)
            reaching = _first_reaching(time, rest, deadline, top)  # len(rest): none
            stop = start + reaching + 1
            run = _part(stamps, start, stop)
            watermark_at = _WatermarkAt(time, run)
            taken, error = state.add_run(
                index, _part(items, start, stop), run, _part(keys, start, stop), watermark_at, self.late
            )
            start += taken
            if error is not None:
                time.pass_items(run[:taken])  # none of them reaches the deadline
                return start, error
            if reaching < len(rest) or state.next_deadline() < deadline:
                # The last item taken reaches the deadline, or the new one it set: it may fire.
                time.pass_items(run[: taken - 1])
                self._move_on(run[taken - 1])
            else:
                time.pass_item(top)  # no item reaches the deadline, nor moved it: none fires
        return len(items), None

    def _move_on(self, stamp: float) -> None:
        """Move time past an item at ``stamp``; fire what the watermark reaches.

        Whether or not the watermark rose: an item for a window it has already reached (one
        within allowed lateness, firing again or for the first time) makes that window due at
        once, so it fires before the next item is looked at, as Flink's event-time trigger does.
        """
        self.time.pass_item(stamp)
        if self.time.watermark >= self.state.next_deadline():
            self.fired += self.state.advance(self.time.watermark)


def _first_reaching(time: EventTime, stamps: Sequence[float], deadline: float, top: float) -> int:
    """The position of the first item that moves the watermark to ``deadline``, or ``len(stamps)``.

    ``top`` is the largest stamp. ``time.reaches`` is monotone in the stamp, so the first stamp
    that reaches is the first whose slice maximum does: a binary search on slices, each maximum
    taken in C.
    """
    if not time.reaches(top, deadline):
        return len(stamps)
    low, high = 0, len(stamps)  # the first stamp that reaches is in stamps[low:high]
    while high - low > 1:
        middle = (low + high) // 2
        if time.reaches(max(stamps[low:middle]), deadline):
            high = middle
        else:
            low = middle
    return low


def _part(sequence: Sequence[Any], start: int, stop: int) -> Sequence[Any]:
    """``sequence[start:stop]``, without a copy when that is all of it."""
    return sequence if start == 0 and stop >= len(sequence) else sequence[start:stop]


class _WatermarkAt:
    """The watermark just before each item of a run, for ``add_run``, found when asked.

    The positions asked for only grow, so the stamps before each are scanned once in all.
    """

    __slots__ = ("latest", "scanned", "stamps", "time")

    def __init__(self, time: EventTime, stamps: Sequence[float]) -> None:
        self.time = time
        self.stamps = stamps
        self.scanned = 0
        self.latest = -math.inf

    def __call__(self, position: int) -> float:
        if position > self.scanned:
            self.latest = max(self.latest, max(self.stamps[self.scanned : position]))
            self.scanned = position
        return self.time.after(self.latest)
