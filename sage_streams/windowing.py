"""Windowed streams: event-time windows over one or more inputs.

The window operator reads each item's timestamp, keeps a watermark per input (the largest
timestamp seen minus ``out_of_orderness``, never going back) and takes the smallest over the
inputs that have not ended as its own, as Flink does. It feeds the pure logic of
:mod:`sage_streams.windows`, which fires a window ``[start, end)`` once the watermark reaches
``end``. An item all of whose windows are past ``end + allowed_lateness`` is late: it goes to
``windowed.late()``, never silently away. At the end of input every open window fires.

A windowed stream is a stream of :class:`WindowData`; ``process(fn)`` turns each into results.
``aggregate(add, initial=...)`` makes the windows fold their items as they arrive instead of
keeping them, and gives a stream of :class:`WindowAggregate`: when a window needs only a fold
of its items (a sum, a count, a maximum), that saves storing them and walking them again.

Example::

    windowed = connected.window("tumbling", size=60)
    totals = windowed.process(lambda window, state: sum(i["value"] for s in window for i in s))
    # or, folding as items arrive (one accumulator per input: ``value`` is a tuple here):
    totals = windowed.aggregate(lambda total, item: total + item["value"], initial=0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sage_streams._conventions import window_results
from sage_streams._fusion import is_async_callable
from sage_streams._typing import UserFunction, check_choice, check_seconds
from sage_streams._window_batches import EventTime, feed_batch
from sage_streams._window_contents import Accumulators
from sage_streams._window_loops import KeyReader, each, key_reader
from sage_streams.errors import ItemError, StreamError
from sage_streams.functions import resolve_function
from sage_streams.state import StreamState
from sage_streams.stream import DataStream
from sage_streams.time import Clock, TimestampSpec, timestamp_reader
from sage_streams.window_configs import WindowConfig, window_config
from sage_streams.windows import FiredWindow, WindowState

if TYPE_CHECKING:
    from sage_streams.environment import LocalEnvironment

__all__ = ["WindowAggregate", "WindowData", "WindowedStream", "window_node"]


class WindowData:
    """One fired window: per input stream, in the order given, the list of its items.

    Iterating gives one list per input stream. ``start_time`` and ``end_time`` bound the window
    (``[start, end)``), ``key`` is its key (``None`` without ``key_func``), ``by_stream`` maps
    each input's name to its list, and ``refire`` says it fires again with late items.
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


class _WindowOperator:
    """Reads timestamps and keys, keeps the watermarks, feeds :class:`WindowState`.

    A bad item (a missing or bad timestamp, a key function that raises or returns an unhashable
    key, an aggregate's ``add`` that raises) raises :class:`ItemError` with its position in the
    batch and the windows fired by the items before it, which were fed in full; it leaves no
    trace, so that the runtime can go on with the items after it, or retry from it, and get what
    a run without it gets.

    Fired windows leave as :class:`WindowData`, or as :class:`WindowAggregate` when the state
    holds accumulators (``aggregated``). With ``inline``, a key function of one expression is
    pasted into the loop reading the keys (:mod:`sage_streams._window_loops`).
    """

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
        self.names = list(names)
        self.aggregated = aggregated
        self.clock = clock
        self.processing_time = processing_time
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
        self.side: dict[str, list[Any]] = {"late": []}

    def wants(self, index: int) -> bool:
        return True

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
        """Processing time: an item's time is its arrival on the clock; nothing is ever late."""
        now = self.clock.now()
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

    async def on_idle(self) -> Sequence[Any]:
        return ()

    async def on_finish(self) -> Sequence[Any]:
        return self._fired(self.windows.flush())

    def _fired(self, fired: list[FiredWindow]) -> list[Any]:
        if not self.aggregated:
            return [WindowData(window, self.names) for window in fired]
        if len(self.names) == 1:
            return [WindowAggregate(w.key, w.start, w.end, w.items[0], w.refire) for w in fired]
        return [WindowAggregate(w.key, w.start, w.end, w.items, w.refire) for w in fired]

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
        check_seconds("idle_timeout", idle_timeout)
        if idle_timeout == 0:
            raise ValueError("idle_timeout must be more than 0 seconds, or None for no timeout")
    config = window_config(window_type, size, slide, timeout=timeout)
    delay = check_seconds("out_of_orderness", out_of_orderness)
    lateness = check_seconds("allowed_lateness", allowed_lateness)
    key_of = resolve_function(key_func, "window key function") if key_func is not None else None
    timestamp_reader(timestamp)  # refuses a bad spec now, not at run time
    names = [stream.name for stream in inputs]
    spec = _WindowSpec(config, len(names), lateness)
    clock = env.clock

    def factory() -> _WindowOperator:
        # Made for each run, when its graph is planned: inlining is off under a tracer then.
        inline = env.inlining()
        accumulators = spec.accumulators.inlined(inline) if spec.accumulators is not None else None
        return _WindowOperator(
            names,
            spec.state(accumulators),
            key_func=key_of,
            timestamp=timestamp,
            out_of_orderness=delay,
            clock=clock,
            processing_time=time == "processing",
            idle_timeout=idle_timeout,
            aggregated=accumulators is not None,
            inline=inline,
        )

    node = env.add_node("operator", name or f"window({window_type})", tuple(s._node for s in inputs))
    node.operator = factory
    windowed = WindowedStream._of(env, node)
    windowed._state = state
    windowed._spec = spec
    return windowed


@dataclass(slots=True)
class _WindowSpec:
    """What a window operator's state is made from at each run; ``aggregate`` sets accumulators."""

    config: WindowConfig
    inputs: int
    allowed_lateness: float
    accumulators: Accumulators | None = None

    def state(self, accumulators: Accumulators | None) -> WindowState:
        return WindowState(
            self.config, inputs=self.inputs, allowed_lateness=self.allowed_lateness, accumulators=accumulators
        )


def _same(window: WindowAggregate) -> WindowAggregate:
    """The step of ``aggregate``: the window operator makes the records; this step gives them a
    stream, a name and metrics of their own, as ``process``'s step does for its results."""
    return window


class WindowedStream(DataStream[WindowData]):
    """The fired windows of a window operator, as :class:`WindowData`; see :meth:`process` and
    :meth:`aggregate`."""

    _state: StreamState
    _spec: _WindowSpec

    def process(self, fn: UserFunction, *, name: str | None = None, **kwargs: Any) -> DataStream[Any]:
        """A stream of what ``fn(window_data, state, **kwargs)`` returns for each window.

        One result per window, a tuple included; a list or generator gives several, ``None``
        none. ``fn`` may be ``async``.
        """
        if self._spec.accumulators is not None:
            raise StreamError(
                f"{self.name!r} is aggregated: its windows hold accumulators, not items;"
                " process a window(...) of its own"
            )
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

    def aggregate(
        self,
        add: UserFunction,
        *,
        initial: Any,
        merge: UserFunction | None = None,
        name: str | None = None,
    ) -> DataStream[WindowAggregate]:
        """A stream of one :class:`WindowAggregate` per fired window, its items folded by ``add``.

        Each item is folded into its window's accumulator when it arrives,
        ``accumulator = add(accumulator, item)``, instead of being kept until the window fires
        (Flink's ``AggregateFunction``, Bytewax's ``fold_window``): nothing is stored and nothing
        is walked twice, so a sum, count or maximum per window costs much less than with
        :meth:`process`. A window starts at ``initial``, or, if it is callable, at what it returns:
        it is called for each new window and input (``initial=list`` for an accumulator that
        ``add`` changes in place). Over several inputs, ``value`` is a tuple of one accumulator
        per input, in input order. Windows fire, refire within ``allowed_lateness`` (the same
        accumulator, late items folded in: one changed in place changes what was emitted before
        too) and send late items to :meth:`late` as with :meth:`process`. Sessions merge when
        an item bridges two, so they need ``merge(earlier, later)`` (a ``ValueError`` here
        without it); the bridging item is folded into the merged accumulator.

        ``add`` and ``merge`` may be registered names and must be plain functions (a
        ``TypeError`` here for ``async def``): they run in the window operator as items arrive.
        An ``add`` that raises is an error of its item for the error policy, as a failing key
        function is; it leaves no trace if ``add`` returns a new accumulator rather than changing
        one in place. A window is aggregated or processed, not both; once aggregated, this
        windowed stream carries the ``WindowAggregate`` records too.

        Example::

            sums = events.window("tumbling", size=60, key_func=lambda e: e["user"]).aggregate(
                lambda total, event: total + event["amount"], initial=0
            )
            # WindowAggregate(key="ann", start_time=0.0, end_time=60.0, value=42, refire=False)
        """
        adder = resolve_function(add, "window aggregate function")
        merger = resolve_function(merge, "window merge function") if merge is not None else None
        spec = self._spec
        accumulators = Accumulators(adder, initial, merger)
        spec.state(accumulators)  # refuses sessions without merge now, not at run time
        if spec.accumulators is not None:
            raise StreamError(f"{self.name!r} is aggregated already; aggregate a window(...) of its own")
        readers = [
            node.name for node in self._env._nodes if self._node in node.inputs and node.kind != "side"
        ]
        if readers:
            raise StreamError(
                f"{self.name!r} already feeds {', '.join(map(repr, readers))} with its WindowData;"
                " aggregate a window(...) of its own"
            )
        label = name or f"aggregate({getattr(adder, '__name__', 'add')})"
        aggregated: DataStream[WindowAggregate] = self.map(_same, name=label)
        spec.accumulators = accumulators
        return aggregated

    def late(self) -> DataStream[Any]:
        """Items that came after all of their windows had closed (``end + allowed_lateness``)."""
        return self._side_output("late")
