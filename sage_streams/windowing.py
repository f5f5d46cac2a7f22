"""Windowed streams: event-time windows over one or more inputs.

The window operator reads each item's timestamp, keeps a watermark per input (the largest
timestamp seen minus ``out_of_orderness``, never going back) and takes the smallest over the
inputs that have not ended as its own, as Flink does. It feeds the pure logic of
:mod:`sage_streams.windows`, which fires a window ``[start, end)`` once the watermark reaches
``end``. An item all of whose windows are past ``end + allowed_lateness`` is late: it goes to
``windowed.late()``, never silently away. At the end of input every open window fires.

A windowed stream is a stream of :class:`WindowData`; ``process(fn)`` turns each into results.

Example::

    windowed = connected.window("tumbling", size=60)
    totals = windowed.process(lambda window, state: sum(i["value"] for s in window for i in s))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sage_streams._conventions import window_results
from sage_streams._fusion import is_async_callable
from sage_streams._typing import UserFunction, check_choice
from sage_streams.errors import ItemError
from sage_streams.functions import resolve_function
from sage_streams.state import StreamState
from sage_streams.stream import DataStream
from sage_streams.time import Clock, TimestampSpec, timestamp_reader
from sage_streams.windows import FiredWindow, WindowState, window_config

if TYPE_CHECKING:
    from sage_streams.environment import LocalEnvironment

__all__ = ["WindowData", "WindowedStream", "window_node"]


class WindowData:
    """One fired window: per input stream, in the order given, the list of its items.

    Iterating gives one list per input stream. ``start_time`` and ``end_time`` bound the window
    (``[start, end)``), ``key`` is its key (``None`` without ``key_func``), ``by_stream`` maps
    each input's name to its list, and ``refire`` says it fires again with late items.
    """

    __slots__ = ("_lists", "by_stream", "end_time", "key", "refire", "start_time")

    def __init__(self, fired: FiredWindow, names: Sequence[str]) -> None:
        self.start_time = fired.start
        self.end_time = fired.end
        self.key = fired.key
        self.refire = fired.refire
        self._lists = [list(items) for items in fired.items]
        self.by_stream = dict(zip(names, self._lists, strict=True))

    def __iter__(self) -> Iterator[list[Any]]:
        return iter(self._lists)

    def __len__(self) -> int:
        return len(self._lists)

    def __getitem__(self, index: int) -> list[Any]:
        return self._lists[index]

    def __repr__(self) -> str:
        sizes = {name: len(items) for name, items in self.by_stream.items()}
        return f"<WindowData [{self.start_time}, {self.end_time}) key={self.key!r} {sizes}>"


class _WindowOperator:
    """Reads timestamps and keys, keeps the watermarks, feeds :class:`WindowState`."""

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
    ) -> None:
        self.names = list(names)
        self.clock = clock
        self.processing_time = processing_time
        self.idle_timeout = idle_timeout
        # Per input, when it last delivered; an input that never does is timed from the start.
        self.last_arrival = [clock.now()] * len(names) if idle_timeout is not None else []
        self.windows = state
        self.key_func = key_func
        self.readers = [timestamp_reader(timestamp) for _ in names]
        self.delay = out_of_orderness
        self.marks = [-math.inf] * len(names)
        self.latest = -math.inf
        self.ended = [False] * len(names)
        self.watermark = -math.inf
        self.late_items = 0
        self.side: dict[str, list[Any]] = {"late": []}

    def wants(self, index: int) -> bool:
        return True

    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        if self.processing_time:
            return self._on_processing_batch(index, batch)
        if self.idle_timeout is not None:
            self.last_arrival[index] = self.clock.now()
        read, key_of, windows = self.readers[index], self.key_func, self.windows
        late, fired = self.side["late"], []
        single = len(self.marks) == 1
        add = windows.add
        for item in batch:
            stamp = read(item)
            try:
                # Judged against the watermark before this item moves it, as in Flink. A key
                # function that raises, or returns an unhashable key, is an error of this item.
                added = add(key_of(item) if key_of is not None else None, stamp, index, item, self.watermark)
            except Exception as exc:
                raise ItemError(item, exc) from exc
            if not added:
                late.append(item)
                self.late_items += 1
            if stamp > self.latest:
                self.latest = stamp
            if stamp - self.delay > self.marks[index]:
                self.marks[index] = stamp - self.delay
                watermark = self.marks[index] if single else self._lowest_mark()
                if watermark > self.watermark:
                    # Fire as the watermark moves, item by item, so that what fires (and what
                    # re-fires with allowed-late items) never depends on how items were batched.
                    self.watermark = watermark
                    if watermark >= windows.next_deadline():
                        fired += windows.advance(watermark)
        return self._fired(fired)

    def _lowest_mark(self) -> float:
        """The smallest mark of the inputs that still count: not ended, and not idle.

        When every open input is idle the watermark stays where it is.
        """
        open_inputs = [i for i, ended in enumerate(self.ended) if not ended]
        if not open_inputs:
            return math.inf
        counted = [i for i in open_inputs if not self._is_idle(i)]
        return min(self.marks[i] for i in counted) if counted else self.watermark

    def _is_idle(self, index: int) -> bool:
        if self.idle_timeout is None:
            return False
        return self.clock.now() - self.last_arrival[index] >= self.idle_timeout

    def _on_processing_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        """Processing time: an item's time is its arrival on the clock; nothing is ever late."""
        now = self.clock.now()
        key_of, add = self.key_func, self.windows.add
        for item in batch:
            add(_key(key_of, item) if key_of is not None else None, now, index, item, -math.inf)
        self.latest = now
        return self._advance_to(now)

    def _advance_to(self, watermark: float) -> list[WindowData]:
        if watermark <= self.watermark:
            return []
        self.watermark = watermark
        return self._fired(self.windows.advance(watermark))

    def next_timer(self) -> float | None:
        """Processing time: the next window end. Idle timeout: when the next input goes idle."""
        if self.processing_time:
            deadline = self.windows.next_deadline()
            return deadline if math.isfinite(deadline) else None
        if self.idle_timeout is None or len(self.names) < 2:
            return None
        due = [
            self.last_arrival[i] + self.idle_timeout
            for i, ended in enumerate(self.ended)
            if not ended and not self._is_idle(i)
        ]
        return min(due) if due else None

    async def on_timer(self, now: float) -> Sequence[Any]:
        if self.processing_time:
            return self._advance_to(now)
        return self._advance_to(self._lowest_mark())

    async def on_end(self, index: int) -> Sequence[Any]:
        self.ended[index] = True
        if all(self.ended):
            return ()  # on_finish fires everything
        return self._advance_to(self._lowest_mark())

    async def on_idle(self) -> Sequence[Any]:
        return ()

    async def on_finish(self) -> Sequence[Any]:
        return self._fired(self.windows.flush())

    def _fired(self, fired: list[FiredWindow]) -> list[WindowData]:
        return [WindowData(window, self.names) for window in fired]

    def stalled(self) -> str:  # pragma: no cover - wants() is always true
        return "never stalls"

    def details(self) -> dict[str, float]:
        return {
            "open_windows": float(self.windows.open_windows()),
            "fired_windows": float(self.windows.fired_count()),
            "late_items": float(self.late_items),
            "watermark": self.watermark,
            "watermark_lag": self.latest - self.watermark if self.latest > -math.inf else 0.0,
        }


def _key(key_of: Callable[[Any], Any], item: Any) -> Hashable:
    try:
        key = key_of(item)
        hash(key)
    except Exception as exc:
        raise ItemError(item, exc) from exc
    return key  # type: ignore[no-any-return]


def _non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def window_node(
    env: LocalEnvironment,
    inputs: Sequence[DataStream[Any]],
    state: StreamState,
    window_type: str,
    size: float | None = None,
    slide: float | None = None,
    *,
    timeout: float | None = None,
    time: str = "event",
    timestamp: TimestampSpec = "timestamp",
    key_func: UserFunction | None = None,
    out_of_orderness: float = 0.0,
    allowed_lateness: float = 0.0,
    idle_timeout: float | None = None,
    name: str | None = None,
) -> WindowedStream:
    """Add a window operator over ``inputs``; the arguments are those of ``window`` (CONTRACT 3)."""
    check_choice(time, ("event", "processing"), "time")
    if idle_timeout is not None:
        _non_negative("idle_timeout", idle_timeout)
        if idle_timeout == 0:
            raise ValueError("idle_timeout must be more than 0 seconds, or None for no timeout")
    config = window_config(window_type, size, slide, timeout=timeout)
    delay = _non_negative("out_of_orderness", out_of_orderness)
    lateness = _non_negative("allowed_lateness", allowed_lateness)
    key_of = resolve_function(key_func, "window key function") if key_func is not None else None
    timestamp_reader(timestamp)  # refuses a bad spec now, not at run time
    names = [stream.name for stream in inputs]
    count = len(names)

    clock = env.clock

    def factory() -> _WindowOperator:
        windows = WindowState(config, inputs=count, allowed_lateness=lateness)
        return _WindowOperator(
            names,
            windows,
            key_func=key_of,
            timestamp=timestamp,
            out_of_orderness=delay,
            clock=clock,
            processing_time=time == "processing",
            idle_timeout=idle_timeout,
        )

    node = env.add_node("operator", name or f"window({window_type})", tuple(s._node for s in inputs))
    node.operator = factory
    windowed = WindowedStream._of(env, node)
    windowed._state = state
    return windowed


class WindowedStream(DataStream[WindowData]):
    """The fired windows of a window operator, as :class:`WindowData`; see :meth:`process`."""

    _state: StreamState

    def process(self, fn: UserFunction, *, name: str | None = None, **kwargs: Any) -> DataStream[Any]:
        """A stream of what ``fn(window_data, state, **kwargs)`` returns for each window.

        One result per window, a tuple included; a list or generator gives several, ``None``
        none. ``fn`` may be ``async``.
        """
        function = resolve_function(fn, "window function")
        state = self._state
        label = name or f"process({getattr(function, '__name__', 'fn')})"
        if is_async_callable(function):

            async def apply_async(window: WindowData) -> Sequence[Any]:
                return window_results(await function(window, state, **kwargs))

            return self.flat_map(apply_async, name=label)

        def apply(window: WindowData) -> Sequence[Any]:
            return window_results(function(window, state, **kwargs))

        return self.flat_map(apply, name=label)

    def late(self) -> DataStream[Any]:
        """Items that came after all of their windows had closed (``end + allowed_lateness``)."""
        return self._side_output("late")
