"""Windows over event time: the configs (tumbling, sliding, session) and their pure, keyed logic.

This is the synchronous state behind ``DataStream.window`` and ``ConnectedStreams.window``. A
config (:class:`TumblingWindows`, :class:`SlidingWindows`, :class:`SessionWindows`, or
:func:`window_config` from the contract's spelling) is a frozen record, validated when it is
made. A :class:`WindowState` is the logic: the runtime feeds it one timestamped item at a time
with :meth:`~WindowState.add`, moves event time on with :meth:`~WindowState.advance` and ends the
input with :meth:`~WindowState.flush`. Nothing here waits, reads a clock or knows about channels:
time is only what the caller says the watermark is.

Windows are half-open, ``[start, end)``, and kept per key. A window fires when the watermark
reaches its end; it is kept ``allowed_lateness`` seconds of watermark longer, so that a late item
for it makes it fire again, with every item it holds. An item all of whose windows are past that
point is late: ``add`` refuses it and returns ``False``, and the caller routes it elsewhere.
Fired windows come out ordered by ``(end, start)``, then by key in first-seen order.

Example::

    state = WindowState(TumblingWindows(10.0))
    state.add("a", 3.0, 0, "x", watermark=-math.inf)  # True
    state.add("a", 12.0, 0, "y", watermark=3.0)  # True
    state.advance(12.0)  # [FiredWindow(key="a", start=0.0, end=10.0, items=(("x",),))]
    state.add("a", 4.0, 0, "z", watermark=12.0)  # False: [0, 10) fired and is gone
    state.flush()  # [FiredWindow(key="a", start=10.0, end=20.0, items=(("y",),))]
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

from sage_streams._typing import check_choice

__all__ = [
    "FiredWindow",
    "SessionWindows",
    "SlidingWindows",
    "TumblingWindows",
    "WindowConfig",
    "WindowState",
    "WindowType",
    "window_config",
]

WindowType: TypeAlias = Literal["tumbling", "sliding", "session"]
"""The kinds of windows, as spelled by ``window(window_type, ...)``."""

WINDOW_TYPES: Final[tuple[str, ...]] = get_args(WindowType)


# -- configs ---------------------------------------------------------------------------------------


def _positive_seconds(name: str, value: object, why: str) -> float:
    """``value`` as a float, or a ``TypeError``/``ValueError`` saying what is wrong and ``why``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}: {why}")
    return float(value)


@dataclass(frozen=True)
class TumblingWindows:
    """Back-to-back windows of ``size`` seconds: ``[k * size, (k + 1) * size)`` for every integer k.

    Windows are aligned to multiples of ``size`` from 0 (negative timestamps included), so every
    timestamp belongs to exactly one window; one exactly at a window's end belongs to the next.

    Example::

        TumblingWindows(60.0)  # [0, 60), [60, 120), ...; 59.9 -> [0, 60), 60.0 -> [60, 120)
    """

    size: float

    def __post_init__(self) -> None:
        size = _positive_seconds("size", self.size, "a window needs a positive, finite length")
        object.__setattr__(self, "size", size)


@dataclass(frozen=True)
class SlidingWindows:
    """Overlapping windows of ``size`` seconds, one starting every ``slide`` seconds.

    An item at ``t`` belongs to every window ``[s, s + size)`` whose start ``s`` is a multiple of
    ``slide`` with ``s <= t < s + size``: ``size / slide`` windows when that divides evenly.
    ``slide`` may not exceed ``size``; ``slide == size`` is the same as tumbling windows.

    Example::

        SlidingWindows(10.0, 5.0)  # 7.0 belongs to [0, 10) and [5, 15)
    """

    size: float
    slide: float

    def __post_init__(self) -> None:
        size = _positive_seconds("size", self.size, "a window needs a positive, finite length")
        slide = _positive_seconds("slide", self.slide, "windows must start a positive, finite step apart")
        if slide > size:
            raise ValueError(
                f"slide must not exceed size, or items between windows would belong to none "
                f"(got size={size!r}, slide={slide!r})"
            )
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "slide", slide)


@dataclass(frozen=True)
class SessionWindows:
    """Per-key bursts of activity, separated by at least ``gap`` seconds without items.

    A session runs from its first item's timestamp to its last item's plus the gap,
    ``[first, last + gap)``. An item at most ``gap`` away from a session joins it (an item exactly
    ``gap`` after the last one joins), and an item that comes within reach of two sessions merges
    them into one.

    Example::

        SessionWindows(30.0)  # items at 0, 30, 70 -> sessions [0, 60) and [70, 100)
    """

    gap: float

    def __post_init__(self) -> None:
        gap = _positive_seconds("gap", self.gap, "a session needs a positive, finite gap to end")
        object.__setattr__(self, "gap", gap)


WindowConfig: TypeAlias = TumblingWindows | SlidingWindows | SessionWindows
"""Any window config; :class:`WindowState` takes one."""

_PARAMETERS: Final[dict[str, tuple[str, ...]]] = {
    "tumbling": ("size",),
    "sliding": ("size", "slide"),
    "session": ("timeout",),
}

_MISSING: Final[dict[str, str]] = {
    "size": "size, the length of a window in seconds",
    "slide": "slide, the seconds between window starts (for windows that do not overlap, use 'tumbling')",
    "timeout": "timeout, the gap in seconds without items that ends a session",
}


def window_config(
    window_type: str,
    size: float | None = None,
    slide: float | None = None,
    *,
    timeout: float | None = None,
) -> WindowConfig:
    """A window config from the arguments of ``window(window_type, size, slide, timeout=...)``.

    ``"tumbling"`` takes ``size``; ``"sliding"`` takes ``size`` and ``slide``, both required;
    ``"session"`` takes ``timeout``, the gap. A parameter given to a type that does not use it is
    refused rather than ignored: it is almost always a mistake about which windows were meant.

    Raises:
        ValueError: an unknown ``window_type``, a missing or foreign parameter, a bad value.
        TypeError: a parameter that is not a number.

    Example::

        window_config("sliding", 60.0, 10.0)  # SlidingWindows(size=60.0, slide=10.0)
        window_config("session", timeout=300.0)  # SessionWindows(gap=300.0)
    """
    check_choice(window_type, WINDOW_TYPES, "window_type")
    given = {"size": size, "slide": slide, "timeout": timeout}
    wanted = _PARAMETERS[window_type]
    foreign = [name for name, value in given.items() if value is not None and name not in wanted]
    if foreign:
        raise ValueError(
            f"{window_type} windows take no {' or '.join(foreign)}; they use {' and '.join(wanted)}"
        )
    missing = [_MISSING[name] for name in wanted if given[name] is None]
    if missing:
        raise ValueError(f"{window_type} windows need {'; and '.join(missing)}")
    if window_type == "tumbling":
        return TumblingWindows(size)  # type: ignore[arg-type]
    if window_type == "sliding":
        return SlidingWindows(size, slide)  # type: ignore[arg-type]
    return SessionWindows(timeout)  # type: ignore[arg-type]


# -- logic -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FiredWindow:
    """One window of one key, fired.

    Attributes:
        key: the key the window belongs to.
        start: the window's start, included.
        end: the window's end, excluded; the watermark reached it (or the input ended).
        items: per input index, that input's items in the window, in arrival order.
        refire: ``True`` when the window fired before and fires again because of late items;
            ``items`` then holds all of its items, old and new.
    """

    key: Hashable
    start: float
    end: float
    items: tuple[tuple[Any, ...], ...]
    refire: bool = False


class _Window:
    """One window of one key: its bounds, its items per input, and where it is in its life.

    ``token`` names the window's live entry in the heap of windows due to fire (-1: not due);
    entries with another token are stale and skipped. Session items are ``(seq, item)`` pairs, so
    that merged sessions keep the overall arrival order.
    """

    __slots__ = ("alive", "end", "fired", "in_purge", "index", "items", "key", "rank", "start", "token")

    def __init__(self, key: Hashable, rank: int, start: float, end: float, index: int, inputs: int) -> None:
        self.key = key
        self.rank = rank
        self.start = start
        self.end = end
        self.index = index  # the window's number k, for tumbling and sliding windows
        self.items: list[list[Any]] = [[] for _ in range(inputs)]
        self.fired = False  # fired at least once: the next firing is a refire
        self.token = -1
        self.in_purge = False  # has an entry in the heap of windows kept for late items
        self.alive = True


class _Key:
    """The windows of one key: by number (tumbling, sliding) or sorted by start (sessions)."""

    __slots__ = ("numbered", "rank", "sessions")

    def __init__(self, rank: int) -> None:
        self.rank = rank  # orders keys by first sight, among windows of equal bounds
        self.numbered: dict[int, _Window] = {}
        self.sessions: list[_Window] = []

    def windows(self) -> list[_Window]:
        return [*self.numbered.values(), *self.sessions]


def _start_of(window: _Window) -> float:
    return window.start


def _window_number(timestamp: float, length: float) -> int:
    """The ``k`` with ``k * length <= timestamp < (k + 1) * length``, exact in float arithmetic."""
    try:
        k = math.floor(timestamp / length)
    except OverflowError:
        raise ValueError(f"timestamp {timestamp!r} is out of range for windows of {length!r} s") from None
    # The division may round across a boundary; the products are what membership is judged by.
    while k * length > timestamp:
        k -= 1
    while (k + 1) * length <= timestamp:
        k += 1
    return k


class WindowState:
    """The windows of every key for one window operator: assign, merge, fire, refire, purge.

    ``add`` puts an item in its window(s) for its key, or refuses it as late (returns ``False``):
    a tumbling or sliding item is late when every window it belongs to has
    ``end + allowed_lateness <= watermark``, and it skips those of its windows that are (an item
    of several sliding windows may land in the later ones only); a session item is late when the
    session it would form alone, ``[t, t + gap)``, is. An item for a window that has fired but is
    still kept marks it to fire again, with all of its items.

    ``advance(watermark)`` fires every window with ``end <= watermark`` that has not fired, or has
    taken late items since it fired, and drops windows once ``end + allowed_lateness <=
    watermark``. ``flush()`` is the end of input: it fires what is due or would ever be and drops
    all state. Both return windows ordered by ``(end, start)``, then by key in the order keys were
    first seen (a key whose windows have all been dropped counts as new when it comes back).

    Costs: ``add`` is O(1) amortized for tumbling windows, O(size / slide) for sliding ones, and
    a binary search among the key's held sessions for sessions; ``advance`` is proportional to
    the windows it fires or drops (times a log for the heaps). One instance per operator, driven
    from one task.

    Example::

        state = WindowState(SessionWindows(5.0), inputs=2)
        state.add("k", 0.0, 0, "a", watermark=-math.inf)
        state.add("k", 5.0, 1, "b", watermark=0.0)  # exactly the gap away: joins
        state.advance(10.0)  # [FiredWindow("k", 0.0, 10.0, items=(("a",), ("b",)))]
    """

    def __init__(self, config: WindowConfig, *, inputs: int = 1, allowed_lateness: float = 0.0) -> None:
        if not isinstance(config, TumblingWindows | SlidingWindows | SessionWindows):
            raise TypeError(
                f"config must be TumblingWindows, SlidingWindows or SessionWindows, got {config!r}"
            )
        if isinstance(inputs, bool) or not isinstance(inputs, int):
            raise TypeError(f"inputs must be an integer, got {inputs!r}")
        if inputs < 1:
            raise ValueError(f"a window operator needs at least 1 input, got {inputs}")
        if isinstance(allowed_lateness, bool) or not isinstance(allowed_lateness, int | float):
            raise TypeError(f"allowed_lateness must be a number of seconds, got {allowed_lateness!r}")
        if not math.isfinite(allowed_lateness) or allowed_lateness < 0:
            raise ValueError(f"allowed_lateness must be finite and >= 0, got {allowed_lateness!r}")
        self.config = config
        self.inputs = inputs
        self.allowed_lateness = float(allowed_lateness)
        self._sessions = isinstance(config, SessionWindows)
        self._gap = config.gap if isinstance(config, SessionWindows) else 0.0
        self._size = config.size if not isinstance(config, SessionWindows) else 0.0
        self._slide = config.slide if isinstance(config, SlidingWindows) else self._size
        # slide == size is tumbling: computing ends as (k + 1) * size leaves no rounding seams.
        self._tumbling = self._slide == self._size
        self._keys: dict[Hashable, _Key] = {}
        self._due: list[tuple[float, float, int, int, _Window]] = []  # (end, start, rank, token, w)
        self._kept: list[tuple[float, int, _Window]] = []  # (end + allowed_lateness, token, w)
        self._next_rank = 0
        self._next_token = 0
        self._seq = 0  # arrival order of session items, across merges
        self._open = 0
        self._fired = 0

    # -- the calls of the runtime ---------------------------------------------------------------

    def add(self, key: Hashable, timestamp: float, index: int, item: Any, watermark: float) -> bool:
        """Assign ``item``, from input ``index``, at ``timestamp``, to its window(s) for ``key``.

        ``watermark`` is the operator's current watermark; it decides lateness only (windows
        fire in :meth:`advance`). Nothing is changed when the item is refused or the call raises.

        Returns:
            ``True`` when the item was added, ``False`` when it is late and was not.

        Raises:
            IndexError: ``index`` is not an input of this operator.
            ValueError: a timestamp that is not finite, or a watermark that is NaN.
            TypeError: an unhashable key.
        """
        if not 0 <= index < self.inputs:
            raise IndexError(f"input index {index} out of range for {self.inputs} input(s)")
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be finite, got {timestamp!r}")
        if math.isnan(watermark):
            raise ValueError("watermark must be a number or -inf, got nan")
        if self._sessions:
            return self._add_to_session(key, timestamp, index, item, watermark)
        return self._add_to_numbered(key, timestamp, index, item, watermark)

    def advance(self, watermark: float) -> list[FiredWindow]:
        """Fire the windows the watermark has reached, then drop those past allowed lateness.

        A watermark lower than an earlier one fires and drops nothing new.
        """
        if math.isnan(watermark):
            raise ValueError("watermark must be a number or -inf, got nan")
        fired: list[FiredWindow] = []
        due = self._due
        while due and due[0][0] <= watermark:
            end, start, _, token, window = heapq.heappop(due)
            if token != window.token:
                continue  # fired, dropped or merged away since it was queued
            if end != window.end or start != window.start:
                self._queue(window)  # a session grew since it was queued: requeue at its real end
                continue
            fired.append(self._fire(window))
            if window.end + self.allowed_lateness <= watermark:
                self._drop(window)
            elif not window.in_purge:
                self._keep(window)
        self._purge(watermark)
        return fired

    def flush(self) -> list[FiredWindow]:
        """The input has ended: fire every window not fired yet or with new late items; drop all."""
        pending = [window for key in self._keys.values() for window in key.windows() if window.token >= 0]
        pending.sort(key=lambda window: (window.end, window.start, window.rank))
        fired = [self._fire(window) for window in pending]
        self._keys.clear()
        self._due.clear()
        self._kept.clear()
        self._open = 0
        return fired

    def next_deadline(self) -> float:
        """The lowest watermark at which :meth:`advance` could fire or drop anything.

        Below it ``advance`` does nothing, so a caller may skip the call (heap entries made stale
        by merges or refires only make this earlier, never later).
        """
        due = self._due[0][0] if self._due else math.inf
        kept = self._kept[0][0] if self._kept else math.inf
        return min(due, kept)

    def open_windows(self) -> int:
        """How many windows are held: waiting to fire, or fired and kept for late items."""
        return self._open

    def fired_count(self) -> int:
        """How many windows have fired so far, refires included."""
        return self._fired

    # -- tumbling and sliding -------------------------------------------------------------------

    def _spans(self, timestamp: float) -> list[tuple[int, float, float]]:
        """``(k, start, end)`` of every window holding ``timestamp``, the latest first."""
        if self._tumbling:
            size = self._size
            k = _window_number(timestamp, size)
            return [(k, k * size, (k + 1) * size)]
        size, slide = self._size, self._slide
        k = _window_number(timestamp, slide)
        start = k * slide
        spans = []
        # The latest window always holds the timestamp (slide <= size); earlier ones while they reach it.
        while True:
            spans.append((k, start, start + size))
            k -= 1
            start = k * slide
            if start + size <= timestamp:
                return spans

    def _add_to_numbered(
        self, key: Hashable, timestamp: float, index: int, item: Any, watermark: float
    ) -> bool:
        lateness = self.allowed_lateness
        if self._tumbling:  # one window: no list of spans (the hot path of keyed aggregations)
            size = self._size
            k = _window_number(timestamp, size)
            end = (k + 1) * size
            if end + lateness <= watermark:
                return False
            state = self._keys.get(key) or self._key(key)
            window = state.numbered.get(k)
            if window is None:
                window = state.numbered[k] = self._new_window(key, state.rank, k * size, end, k)
            window.items[index].append(item)
            if window.token < 0:
                self._queue(window)
            return True
        spans = self._spans(timestamp)
        if spans[0][2] + lateness <= watermark:
            return False
        state = self._key(key)
        for k, start, end in spans:
            if end + lateness <= watermark:
                break  # this window and the earlier ones are past allowed lateness
            window = state.numbered.get(k)
            if window is None:
                window = state.numbered[k] = self._new_window(key, state.rank, start, end, k)
            window.items[index].append(item)
            if window.token < 0:
                self._queue(window)  # new, or fired before: due (again)
        return True

    # -- sessions -------------------------------------------------------------------------------

    def _add_to_session(
        self, key: Hashable, timestamp: float, index: int, item: Any, watermark: float
    ) -> bool:
        gap = self._gap
        if timestamp + gap + self.allowed_lateness <= watermark:
            return False
        timestamp = float(timestamp)  # a session starts at an item's timestamp: keep bounds floats
        state = self._key(key)
        sessions = state.sessions
        seq = self._seq
        self._seq += 1
        # Held sessions are disjoint and more than a gap apart, so both starts and ends ascend; the
        # item reaches those starting at most a gap after it and ending no earlier than it: two at most.
        high = bisect_right(sessions, timestamp + gap, key=_start_of)
        low = high
        while low > 0 and sessions[low - 1].end >= timestamp:
            low -= 1
        if low == high:
            window = self._new_window(key, state.rank, timestamp, timestamp + gap, 0)
            window.items[index].append((seq, item))
            sessions.insert(high, window)
            self._queue(window)
            return True
        window = sessions[low]
        if high - low > 1:
            self._merge(window, sessions[low + 1 : high])
            del sessions[low + 1 : high]
        window.items[index].append((seq, item))
        window.end = max(window.end, timestamp + gap)
        if timestamp < window.start:
            window.start = timestamp
            self._queue(window)  # an earlier start sorts earlier: the old entry would be too late
        elif window.token < 0:
            self._queue(window)  # fired before: due again
        # Otherwise a later end only: the queued entry is requeued lazily when it comes up.
        return True

    def _merge(self, window: _Window, others: list[_Window]) -> None:
        """Merge ``others``, later sessions of the same key, into ``window``."""
        for other in others:
            window.fired = window.fired or other.fired
            other.alive = False
            other.token = -1
            self._open -= 1
        window.end = max(window.end, others[-1].end)
        for i, items in enumerate(window.items):
            window.items[i] = list(heapq.merge(items, *(other.items[i] for other in others)))

    # -- bookkeeping ----------------------------------------------------------------------------

    def _key(self, key: Hashable) -> _Key:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Key(self._next_rank)
            self._next_rank += 1
        return state

    def _new_window(self, key: Hashable, rank: int, start: float, end: float, number: int) -> _Window:
        self._open += 1
        return _Window(key, rank, start, end, number, self.inputs)

    def _token(self) -> int:
        self._next_token += 1
        return self._next_token

    def _queue(self, window: _Window) -> None:
        """Make ``window`` due to fire when the watermark reaches its end (superseding any entry)."""
        window.token = token = self._token()
        heapq.heappush(self._due, (window.end, window.start, window.rank, token, window))

    def _keep(self, window: _Window) -> None:
        """Keep a fired window until the watermark passes its end plus the allowed lateness."""
        window.in_purge = True
        heapq.heappush(self._kept, (window.end + self.allowed_lateness, self._token(), window))

    def _fire(self, window: _Window) -> FiredWindow:
        window.token = -1
        refire = window.fired
        window.fired = True
        self._fired += 1
        if self._sessions:
            items = tuple(tuple(item for _, item in stream) for stream in window.items)
        else:
            items = tuple(tuple(stream) for stream in window.items)
        return FiredWindow(window.key, window.start, window.end, items, refire)

    def _purge(self, watermark: float) -> None:
        kept = self._kept
        lateness = self.allowed_lateness
        still_kept = []
        while kept and kept[0][0] <= watermark:
            _, _, window = heapq.heappop(kept)
            window.in_purge = False
            if not window.alive:
                continue
            if window.token < 0 and window.end + lateness <= watermark:
                self._drop(window)
            else:
                still_kept.append(window)  # a session that grew, or one due to fire again
        for window in still_kept:
            self._keep(window)

    def _drop(self, window: _Window) -> None:
        window.alive = False
        window.token = -1
        self._open -= 1
        state = self._keys[window.key]
        if self._sessions:
            sessions = state.sessions
            del sessions[bisect_left(sessions, window.start, key=_start_of)]
        else:
            del state.numbered[window.index]
        if not state.numbered and not state.sessions:
            del self._keys[window.key]
