"""The window operator, and the records of fired windows it emits.

:class:`WindowOperator` is what the runtime's operator head feeds (see
``sage_streams._runtime.operator_head``): it reads each item's timestamp and key, keeps the
watermarks, feeds the pure logic of :mod:`sage_streams.operators.windows.state` and turns what fires into
:class:`WindowData` (for ``process``) or :class:`WindowAggregate` (for ``aggregate``).
``sage_streams.api.windowed`` builds it into the graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sage_streams._codegen import KeyReader, each, key_reader
from sage_streams.operators.base import ItemError, OperatorBase
from sage_streams.operators.timestamps import TimestampSpec, timestamp_reader
from sage_streams.operators.windows.batches import feed_batch
from sage_streams.operators.windows.panes import FiredWindow
from sage_streams.operators.windows.state import WindowState
from sage_streams.time import Clock, EventTime

__all__ = ["WindowAggregate", "WindowData", "WindowOperator"]


class WindowData:
    """One fired window: per input stream, in the order given, the list of its items.

    Iterating gives one list per input stream. ``start_time`` and ``end_time`` bound the window
    (``[start, end)``; in processing time, wall-clock seconds since the epoch), ``key`` is its
    key (``None`` without ``key_func``), ``by_stream`` maps each input's name to its list, and
    ``refire`` says it fires again with late items.
    """

    __slots__ = ("_items", "_lists", "_names", "end_time", "key", "refire", "start_time")

    def __init__(self, fired: FiredWindow, names: Sequence[str]) -> None:
        self.start_time = fired.start
        self.end_time = fired.end
        self.key = fired.key
        self.refire = fired.refire
        self._items = fired.items
        self._names = names
        self._lists: list[list[Any]] | None = None

    @property
    def by_stream(self) -> dict[str, list[Any]]:
        """Each input stream's name, mapped to its list of items in the window."""
        return dict(zip(self._names, self._streams(), strict=True))

    def __iter__(self) -> Iterator[list[Any]]:
        return iter(self._streams())

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index: int) -> list[Any]:
        return self._streams()[index]

    def _streams(self) -> list[list[Any]]:
        """The lists, made when first asked for.

        A watermark often fires many windows at once. Copying each window's items just before its
        window function reads them, rather than all windows' items together long before, saves a
        trip to memory per item once they no longer fit in the CPU caches.
        """
        if self._lists is None:
            self._lists = [list(items) for items in self._items]
            self._items = ()
        return self._lists

    def __repr__(self) -> str:
        sizes = {name: len(items) for name, items in self.by_stream.items()}
        return f"<WindowData [{self.start_time}, {self.end_time}) key={self.key!r} {sizes}>"


@dataclass(frozen=True, slots=True)
class WindowAggregate:
    """One fired window of :meth:`WindowedStream.aggregate`: its key, bounds and folded value.

    Attributes:
        key: the window's key (``None`` without ``key_func``).
        start_time: the window's start, included.
        end_time: the window's end, excluded.
        value: the accumulator that the window's items were folded into; for a window over
            several inputs (``ConnectedStreams.window``), a tuple of one accumulator per input, in
            input order (an input with no items in the window gives its initial accumulator).
        refire: ``True`` when the window fires again because late items arrived within
            ``allowed_lateness``; ``value`` then has folded in every item, old and new.
    """

    key: Hashable
    start_time: float
    end_time: float
    value: Any
    refire: bool = False


class WindowOperator(OperatorBase):
    """Reads timestamps and keys, keeps the watermarks, feeds :class:`WindowState`.

    A bad item (a missing or bad timestamp, a key function that raises or returns an unhashable
    key, an aggregate's ``add`` that raises) raises :class:`ItemError` with its position in the
    batch and the windows fired by the items before it, which were fed in full; it leaves no
    trace, so that the runtime can go on with the items after it, or retry from it, and get what
    a run without it gets.

    Fired windows leave as :class:`WindowData`, or as :class:`WindowAggregate` when the state
    holds accumulators (``aggregated``). With ``inline``, a key function of one expression is
    pasted into the loop reading the keys (:mod:`sage_streams._codegen.window_loops`).
    """

    SIDE_PORTS = ("late",)

    def __init__(
        self,
        names: Sequence[str],
        state: WindowState,
        *,
        key_func: Callable[[Any], Any] | None,
        timestamp: TimestampSpec,
        out_of_orderness: float,
        clock: Clock,
        processing_time: bool = False,
        idle_timeout: float | None = None,
        aggregated: bool = False,
        inline: bool = False,
    ) -> None:
        super().__init__()
        self.names = list(names)
        self.aggregated = aggregated
        self.clock = clock
        self.processing_time = processing_time
        # Processing time: window bounds are wall-clock epoch seconds, read as the monotonic
        # clock plus this offset, taken once, so that they never go back when the wall clock does.
        self.epoch_offset = clock.time() - clock.now() if processing_time else 0.0
        self.idle_timeout = idle_timeout
        # Per input, when it last delivered; an input that never does is timed from the start.
        self.last_arrival = [clock.now()] * len(names) if idle_timeout is not None else []
        self.windows = state
        self.read_keys: KeyReader | None = key_reader(key_func, inline=inline) if key_func else None
        self.readers = [timestamp_reader(timestamp) for _ in names]
        self.field = timestamp if isinstance(timestamp, str) else None
        self.delay = out_of_orderness
        self.marks = [-math.inf] * len(names)
        self.latest = -math.inf
        self.ended = [False] * len(names)
        self.watermark = -math.inf
        self.late_items = 0

    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        if self.processing_time:
            return self._on_processing_batch(index, batch)
        if self.idle_timeout is not None:
            self.last_arrival[index] = self.clock.now()
        stamps, keys, error = self._read(index, batch)
        # The other inputs' marks hold this one's down; which of them count (idle or not) is
        # judged once per batch.
        event_time = EventTime(
            self.watermark, self.marks[index], cap=self._cap(index), delay=self.delay, latest=self.latest
        )
        late, waiting = self.side["late"], len(self.side["late"])
        fired: list[FiredWindow] = []
        items = batch if error is None else batch[: len(stamps)]
        fed, feed_error = feed_batch(self.windows, event_time, index, items, stamps, keys, late, fired)
        self.watermark, self.marks[index] = event_time.watermark, event_time.mark
        self.latest = event_time.latest
        self.late_items += len(late) - waiting
        if feed_error is not None:
            error = feed_error
        if error is not None:
            raise _item_error(batch, fed, error, self._fired(fired)) from error
        return self._fired(fired)

    def _read(
        self, index: int, batch: Sequence[Any]
    ) -> tuple[list[float], list[Hashable], BaseException | None]:
        """The timestamps and keys of the batch's items up to the first bad one, and its error.

        An item's timestamp is read before its key: the key of an item with a bad timestamp is
        never asked for.
        """
        stamps, error = self._timestamps(index, batch)
        keys, key_error = self._keys(batch[: len(stamps)] if error is not None else batch)
        if key_error is not None:
            return stamps[: len(keys)], keys, key_error
        return stamps, keys, error

    def _timestamps(self, index: int, batch: Sequence[Any]) -> tuple[list[float], BaseException | None]:
        """The batch's timestamps up to the first bad one, and its error.

        Fields holding finite floats, the common case, are read and checked all at once; anything
        else goes through the input's reader, item by item.
        """
        if self.field is not None:
            stamps = _finite_floats(batch, self.field)
            if stamps is not None:
                return stamps, None
        stamps, error = each(self.readers[index], batch)
        return stamps, error.error if isinstance(error, ItemError) else error

    def _keys(self, items: Sequence[Any]) -> tuple[list[Hashable], Exception | None]:
        """The items' keys up to the first the key function fails for, and its error.

        An unhashable key is an error the window logic finds.
        """
        if self.read_keys is None:
            return [None] * len(items), None
        return self.read_keys(items)

    def _counted(self) -> list[int]:
        """The inputs whose marks hold the watermark back: not ended, and not idle."""
        return [i for i, ended in enumerate(self.ended) if not ended and not self._is_idle(i)]

    def _lowest_mark(self) -> float:
        """The smallest mark of the inputs that still count: not ended, and not idle.

        When every open input is idle the watermark stays where it is.
        """
        if all(self.ended):
            return math.inf
        counted = self._counted()
        return min(self.marks[i] for i in counted) if counted else self.watermark

    def _cap(self, index: int) -> float:
        """The smallest mark of the inputs other than ``index`` that count (``inf``: none)."""
        return min((self.marks[i] for i in self._counted() if i != index), default=math.inf)

    def _is_idle(self, index: int) -> bool:
        if self.idle_timeout is None:
            return False
        return self.clock.now() - self.last_arrival[index] >= self.idle_timeout

    def _on_processing_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        """Processing time: an item's time is its arrival, in epoch seconds; nothing is ever late."""
        now = self.clock.now() + self.epoch_offset
        keys, error = self._keys(batch)
        count, add = len(keys), self.windows.add
        for position, (item, key) in enumerate(zip(batch, keys, strict=False)):
            try:
                add(key, now, index, item, -math.inf)
            except Exception as exc:  # an unhashable key
                count, error = position, exc
                break
        self.latest = now
        fired = self._advance_to(now)
        if error is not None:
            raise _item_error(batch, count, error, fired) from error
        return fired

    def _advance_to(self, watermark: float) -> list[Any]:
        if watermark <= self.watermark:
            return []
        self.watermark = watermark
        return self._fired(self.windows.advance(watermark))

    def next_timer(self) -> float | None:
        """Processing time: the next window end. Idle timeout: when the next input goes idle."""
        if self.processing_time:
            deadline = self.windows.next_deadline()
            return self._monotonic(deadline) if math.isfinite(deadline) else None
        if self.idle_timeout is None or len(self.names) < 2:
            return None
        due = [
            self.last_arrival[i] + self.idle_timeout
            for i, ended in enumerate(self.ended)
            if not ended and not self._is_idle(i)
        ]
        return min(due) if due else None

    def _monotonic(self, wall: float) -> float:
        """A reading of the monotonic clock at which epoch time has reached ``wall``, the
        earliest up to rounding.

        ``wall - epoch_offset`` may round to a reading whose epoch time falls just short, and a
        timer there would find nothing due and be set again at once, for ever.
        """
        offset = self.epoch_offset
        reading = wall - offset
        while reading + offset < wall:
            reading = math.nextafter(reading, math.inf)
        return reading

    async def on_timer(self, now: float) -> Sequence[Any]:
        if self.processing_time:
            return self._advance_to(now + self.epoch_offset)
        return self._advance_to(self._lowest_mark())

    async def on_end(self, index: int) -> Sequence[Any]:
        self.ended[index] = True
        if all(self.ended):
            return ()  # on_finish fires everything
        return self._advance_to(self._lowest_mark())

    async def on_watermark(self, index: int, time: float) -> Sequence[Any]:
        """Event time on input ``index`` has reached ``time`` upstream (behind another window, a
        watermark moves with no item): it raises that input's mark. Processing time ignores it."""
        if self.processing_time or time <= self.marks[index]:
            return ()
        self.marks[index] = time
        return self._advance_to(self._lowest_mark())

    def output_watermark(self) -> float:
        """The event time the fired windows have reached, passed on downstream after them."""
        return -math.inf if self.processing_time else self.watermark

    async def on_finish(self) -> Sequence[Any]:
        return self._fired(self.windows.flush())

    def _fired(self, fired: list[FiredWindow]) -> list[Any]:
        if not self.aggregated:
            return [WindowData(window, self.names) for window in fired]
        if len(self.names) == 1:
            return [WindowAggregate(w.key, w.start, w.end, w.items[0], w.refire) for w in fired]
        return [WindowAggregate(w.key, w.start, w.end, w.items, w.refire) for w in fired]

    def snapshot(self) -> dict[Hashable, Any]:
        """The windows' entries, and under ``"operator"`` the marks, watermark, ended inputs, the
        late count and when each input last delivered (for idle timeouts).

        Those arrival times are taken as wall-clock time: a restart reads another monotonic
        clock. For the same reason the processing-time offset is not kept but read afresh.
        """
        entries = self.windows.snapshot()
        entries["operator"] = self._scalars()
        return entries

    def snapshot_changes(self) -> tuple[dict[Hashable, Any], list[Hashable]]:
        """The entries of the windows' keys that changed since the last call and of those gone
        (see ``WindowState.snapshot_changes``), and the ``"operator"`` entry, as :meth:`snapshot`."""
        entries, gone = self.windows.snapshot_changes()
        entries["operator"] = self._scalars()
        return entries, gone

    def _scalars(self) -> tuple[Any, ...]:
        wall = self.clock.time() - self.clock.now()
        arrivals = [arrival + wall for arrival in self.last_arrival]
        return (list(self.marks), self.latest, list(self.ended), self.watermark, self.late_items, arrivals)

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        self.windows.restore(entries)
        marks, self.latest, ended, self.watermark, self.late_items, arrivals = entries["operator"]
        self.marks, self.ended = list(marks), list(ended)
        wall = self.clock.time() - self.clock.now()
        self.last_arrival = [arrival - wall for arrival in arrivals]

    def details(self) -> dict[str, float]:
        return {
            "open_windows": float(self.windows.open_windows()),
            "fired_windows": float(self.windows.fired_count()),
            "late_items": float(self.late_items),
            "watermark": self.watermark,
            # How far the watermark trails the latest timestamp seen; none when a watermark from
            # upstream, or processing time going on with no item, has taken it past that.
            "watermark_lag": max(0.0, self.latest - self.watermark) if self.latest > -math.inf else 0.0,
        }


def _finite_floats(batch: Sequence[Any], field: str) -> list[float] | None:
    """``item[field]`` of every item when all are finite floats, checked at once; else ``None``."""
    try:
        stamps = [item[field] for item in batch]
    except Exception:
        return None
    # A sum of floats is finite only when each is (an overflow only sends us the slow way).
    if set(map(type, stamps)) == {float} and math.isfinite(sum(stamps)):
        return stamps
    return None


def _item_error(
    batch: Sequence[Any], position: int, error: BaseException, output: Sequence[Any]
) -> ItemError:
    """The error of ``batch[position]``; ``output``: what the items before it fired."""
    return ItemError(batch[position], error, index=position, output=output)
