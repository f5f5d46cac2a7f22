"""Windows over event time: the pure, keyed logic behind the window configs.

This is the synchronous state behind ``DataStream.window`` and ``ConnectedStreams.window``: each
config of :mod:`sage_streams.operators.windows.config` builds a :class:`WindowState`, which the
runtime feeds with :meth:`~WindowState.add` (or, for tumbling windows, a run of items at a time
with :meth:`~WindowState.add_run`), moves on with :meth:`~WindowState.advance` and ends with
:meth:`~WindowState.flush`. Nothing here waits, reads a clock or knows about channels: time is
only what the caller says the watermark is. Windows are half-open, ``[start, end)``, kept per
key; a timestamp 2**50 window lengths or more from 0 (:data:`MAX_WINDOW_NUMBER`) is out of range.

Example::

    state = TumblingWindows(10.0).build()
    state.add("a", 3.0, 0, "x", watermark=-math.inf)  # True
    state.add("a", 12.0, 0, "y", watermark=3.0)  # True
    state.advance(12.0)  # [FiredWindow(key="a", start=0.0, end=10.0, items=(("x",),))]
    state.add("a", 4.0, 0, "z", watermark=12.0)  # False: [0, 10) fired and is gone
    state.flush()  # [FiredWindow(key="a", start=10.0, end=20.0, items=(("y",),))]
    sessions = SessionWindows(5.0).build(inputs=2)
    sessions.add("k", 0.0, 0, "a", watermark=-math.inf)
    sessions.add("k", 5.0, 1, "b", watermark=0.0)  # exactly the gap away: joins
    sessions.advance(10.0)  # [FiredWindow("k", 0.0, 10.0, items=(("a",), ("b",)))]
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Mapping, Sequence
from operator import length_hint
from typing import Any

from sage_streams._typing import check_positive_int, check_seconds
from sage_streams.operators.windows import panes
from sage_streams.operators.windows.contents import Accumulators, ItemLists, WindowContents
from sage_streams.operators.windows.panes import (
    FiredWindow,
    KeyWindows,
    Window,
    in_range,
    start_of,
    window_number,
)

__all__ = ["WindowState"]


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

    With ``accumulators``, a window keeps per input an accumulator instead of its items:
    ``add`` folds the item into each of its windows, and a fired window's ``items`` are the
    accumulators. An ``add`` (or, bridging sessions, a ``merge``) that raises is an error of the
    item, which leaves no trace: every fold is computed before anything is stored. Sessions
    merge, so they need ``accumulators.merge``.

    Costs: ``add`` is O(1) amortized for tumbling windows, O(size / slide) for sliding ones, a
    binary search among the key's sessions for sessions; ``add_run`` a look-up and a fold per
    item; ``advance`` follows the windows it fires or drops; a snapshot of changes, the keys that
    changed. One instance per operator, driven from one task, made by a window config's ``build()``
    with the numbers it validated (``size``, ``slide`` or ``gap``; ``shape``, its repr, for errors).
    """

    def __init__(
        self,
        *,
        size: float | None = None,
        slide: float | None = None,
        gap: float | None = None,
        shape: str,
        inputs: int = 1,
        allowed_lateness: float = 0.0,
        accumulators: Accumulators | None = None,
        codegen: bool = True,
    ) -> None:
        if (size is None) == (gap is None) or (gap is not None and slide is not None):
            raise TypeError(
                f"windows have a size (and a slide, when sliding) or a gap (sessions), got"
                f" size={size!r}, slide={slide!r}, gap={gap!r}"
            )
        check_positive_int("inputs", inputs, why="a window operator needs at least 1 input")
        check_seconds("allowed_lateness", allowed_lateness)
        if accumulators is not None and not isinstance(accumulators, Accumulators):
            raise TypeError(f"accumulators must be Accumulators or None, got {accumulators!r}")
        sessions = gap is not None
        if sessions and accumulators is not None and accumulators.merge is None:
            raise ValueError(
                "aggregating session windows needs merge: an item that bridges two sessions"
                " merges them, and their accumulators with them"
            )
        self.shape, self.inputs = shape, inputs
        self.allowed_lateness = float(allowed_lateness)
        self._sessions = sessions
        self._contents: WindowContents = accumulators or ItemLists(sequenced=sessions, codegen=codegen)
        self._gap = gap if gap is not None else 0.0
        self._size = size if size is not None else 0.0
        self._slide = slide if slide is not None else self._size
        # slide == size is tumbling: computing ends as (k + 1) * size leaves no rounding seams.
        self._tumbling = not self._sessions and self._slide == self._size
        # Per input, window number and key: the cells (see ItemLists.cell) of windows due to fire,
        # for add_run. A window stops being due only in advance and flush, which clear them.
        self._due_cells: list[dict[int, dict[Hashable, Any]]] = [{} for _ in range(inputs)]
        self._keys: dict[Hashable, KeyWindows] = {}
        self._due: list[tuple[float, float, int, int, Window]] = []  # (end, start, rank, token, w)
        self._kept: list[tuple[float, int, Window]] = []  # (end + allowed_lateness, token, w)
        self._next_rank = self._next_token = 0
        self._seq = 0  # arrival order of session items, across merges (item lists)
        self._open = self._fired = 0
        self._dirty: set[Hashable] = set()  # keys whose windows changed since the last snapshot

    # -- the calls of the runtime ---------------------------------------------------------------

    def add(self, key: Hashable, timestamp: float, index: int, item: Any, watermark: float) -> bool:
        """Assign ``item``, from input ``index``, at ``timestamp``, to its window(s) for ``key``.

        ``watermark`` is the operator's current watermark; it decides lateness only (windows
        fire in :meth:`advance`). Nothing is changed when the item is refused or the call raises.
        The key must be hashable even when the item is late: whether an item is late depends on
        timing, whether its key is wrong must not.

        Returns:
            ``True`` when the item was added, ``False`` when it is late and was not.

        Raises:
            IndexError: ``index`` is not an input of this operator.
            ValueError: a timestamp that is not finite or out of range (2**50 window lengths
                from 0, see :data:`MAX_WINDOW_NUMBER`), or a watermark that is NaN.
            TypeError: an unhashable key.
        """
        if not 0 <= index < self.inputs:
            raise IndexError(f"input index {index} out of range for {self.inputs} input(s)")
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be finite, got {timestamp!r}")
        if math.isnan(watermark):
            raise ValueError("watermark must be a number or -inf, got nan")
        hash(key)
        if self._sessions:
            return self._add_to_session(key, timestamp, index, item, watermark)
        return self._add_to_numbered(key, timestamp, index, item, watermark)

    def add_run(
        self,
        index: int,
        items: Sequence[Any],
        stamps: Sequence[float],
        keys: Sequence[Hashable],
        watermark_at: Callable[[int], float],
        late: list[Any],
    ) -> tuple[int, Exception | None]:
        """Add a run of items of input ``index`` to their tumbling windows; the fast form of ``add``.

        ``stamps`` are the items' finite timestamps, ``keys`` their keys (an unhashable one is
        an error, as in ``add``), ``watermark_at(i)`` is the watermark just before ``items[i]``,
        and late items are appended to ``late``. The caller keeps to the protocol of
        :mod:`sage_streams.operators.windows.batches`: it fires what is due whenever the watermark reaches
        :meth:`next_deadline`, so no window fires inside a run. Then an item for a window that
        is due, or kept for late items, is never late, and the watermark is asked for only when
        an item needs a window its key lacks.

        The run stops right after an item whose window makes :meth:`next_deadline` earlier (a
        new window, or a fired one due again), so that the caller can see whether the watermark
        reaches that deadline with that item. Items whose keys' windows this run has already
        looked up take a generated loop (:mod:`sage_streams._codegen.window_loops`), with a one-expression
        ``add`` pasted in when the accumulators say so.

        Returns:
            How many items, from the first, were added or refused as late; and ``None``, or the
            error of the next item, which could not be added (an unhashable key, a timestamp out
            of range for the window size, an ``add`` that raised) and left no trace.

        Raises:
            TypeError: these windows are not tumbling (see :attr:`tumbling`).
            IndexError, ValueError: a bad ``index``, or sequences of different lengths.
        """
        if not self._tumbling:
            raise TypeError(f"add_run needs tumbling windows, not {self.shape}")
        if not 0 <= index < self.inputs:
            raise IndexError(f"input index {index} out of range for {self.inputs} input(s)")
        if not len(items) == len(stamps) == len(keys):
            raise ValueError("add_run needs as many timestamps and keys as items")
        due, size, lateness = self._due_cells[index], self._size, self.allowed_lateness
        loop, cell_of = self._contents.run, self._contents.cell
        deadline = self.next_deadline()
        rest = iter(items)
        triples = zip(rest, stamps, keys, strict=False)
        number, start, end = 0, math.inf, -math.inf  # a range that holds no timestamp
        cells: dict[Hashable, Any] = {}
        while True:
            # The generated loop takes the items whose keys have a cell in their window; here the
            # others: a window this run has not looked up yet, a new one, or a late item.
            try:
                missed = loop.function(triples, index, size, window_number, due, number, start, end, cells)
            except Exception as exc:
                loop.annotate(exc)
                return len(items) - length_hint(rest) - 1, exc
            if missed is None:
                return len(items), None
            item, key, number, start, end, cells = missed
            position = len(items) - length_hint(rest) - 1
            window = self._numbered_window(key, number)
            if window is None and end + lateness <= watermark_at(position):
                late.append(item)
                continue
            try:
                contents, value = self._folded(window, index, item, 0)
            except Exception as exc:
                return position, exc
            contents[index] = value
            window = self._store_numbered(key, number, start, end, window, contents)
            cells[key] = cell_of(window.contents, index)
            if self.next_deadline() < deadline:
                return position + 1, None

    def advance(self, watermark: float) -> list[FiredWindow]:
        """Fire the windows the watermark has reached, then drop those past allowed lateness.

        A watermark lower than an earlier one fires and drops nothing new.
        """
        if math.isnan(watermark):
            raise ValueError("watermark must be a number or -inf, got nan")
        self._forget_due_cells()
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
        self._forget_due_cells()
        self._dirty.update(self._keys)
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

    @property
    def tumbling(self) -> bool:
        """Whether each item belongs to exactly one window (tumbling, or sliding by the size)."""
        return self._tumbling

    def open_windows(self) -> int:
        """How many windows are held: waiting to fire, or fired and kept for late items."""
        return self._open

    def fired_count(self) -> int:
        """How many windows have fired so far, refires included."""
        return self._fired

    def snapshot(self) -> dict[Hashable, Any]:
        """The windows as entries in one pass: ``("key", key)`` a key's rank and windows (see
        ``panes.freeze``); ``"meta"`` the next rank, session sequence, fired count, ``panes.stale``."""
        copied, freeze = self._contents.copied, panes.freeze
        entries: dict[Hashable, Any] = {("key", k): freeze(state, copied) for k, state in self._keys.items()}
        entries["meta"] = self._meta()
        return entries

    def snapshot_changes(self) -> tuple[dict[Hashable, Any], list[Hashable]]:
        """The entries of the keys whose windows changed (were made, folded into, fired, kept,
        dropped) since the last call, and those of the keys gone since. ``add_run``'s loop folds
        into the cells it looked up with no mark, so they are forgotten: the next fold marks."""
        dirty, self._dirty = self._dirty, set()
        self._forget_due_cells()
        keys, copied, freeze = self._keys, self._contents.copied, panes.freeze
        entries: dict[Hashable, Any] = {("key", k): freeze(keys[k], copied) for k in dirty if k in keys}
        entries["meta"] = self._meta()
        return entries, [("key", k) for k in dirty if k not in keys]

    def _meta(self) -> tuple[int, int, int, panes.Stale]:
        """Numbered windows are queued only when not due and leave the due heap as they fire, so
        none of its entries is stale: only sessions need it scanned for ``panes.stale``."""
        due = self._due if self._sessions else ()
        return self._next_rank, self._seq, self._fired, panes.stale(due, self._kept, self.allowed_lateness)

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        """Bring this fresh state to that of ``entries``, made by :meth:`snapshot`."""
        self._next_rank, self._seq, self._fired, stale = entries["meta"]
        for name, frozen in entries.items():
            if isinstance(name, tuple):
                self._keys[name[1]] = panes.thaw(name[1], frozen, self._contents.copied, self._sessions)
                self._open += len(frozen[1])
        heaps = panes.requeued(self._keys.values(), self.allowed_lateness, stale)
        self._due, self._kept, self._next_token = heaps
        self._dirty = set()

    # -- tumbling and sliding -------------------------------------------------------------------

    def _add_to_numbered(
        self, key: Hashable, timestamp: float, index: int, item: Any, watermark: float
    ) -> bool:
        lateness = self.allowed_lateness
        # Latest first: those within allowed lateness are a prefix (an item of several sliding
        # windows may land in the later ones only).
        found = panes.spans(timestamp, self._size, self._slide, self.shape)
        spans = [span for span in found if span[2] + lateness > watermark]
        if not spans:
            return False
        # Every fold first, then every store: an add that raises for one window leaves no trace.
        folds = []
        for k, start, end in spans:
            window = self._numbered_window(key, k)
            folds.append((k, start, end, window, *self._folded(window, index, item, 0)))
        for k, start, end, window, contents, value in folds:
            contents[index] = value
            self._store_numbered(key, k, start, end, window, contents)
        return True

    def _numbered_window(self, key: Hashable, k: int) -> Window | None:
        """Window number ``k`` of ``key``, if held."""
        state = self._keys.get(key)
        return state.numbered.get(k) if state is not None else None

    def _folded(self, window: Window | None, index: int, item: Any, seq: int) -> tuple[list[Any], Any]:
        """The contents of ``window`` (new ones for ``None``) and ``item`` folded into input
        ``index``'s entry, to be stored there; raises what ``add`` raises."""
        contents = window.contents if window is not None else self._contents.empty(self.inputs)
        return contents, self._contents.folded(contents[index], item, seq)

    def _store_numbered(
        self, key: Hashable, k: int, start: float, end: float, window: Window | None, contents: list[Any]
    ) -> Window:
        """Hold ``window`` (made with ``contents`` if ``None``) as number ``k`` of ``key``, due to fire."""
        self._dirty.add(key)
        if window is None:
            state = self._key(key)
            window = state.numbered[k] = self._new_window(key, state.rank, start, end, k, contents)
        if window.token < 0:
            self._queue(window)  # new, or fired before: due (again)
        return window

    # -- sessions -------------------------------------------------------------------------------

    def _add_to_session(
        self, key: Hashable, timestamp: float, index: int, item: Any, watermark: float
    ) -> bool:
        gap = self._gap
        in_range(timestamp, gap, gap)  # beyond it, [t, t + gap) might not even hold t
        if timestamp + gap + self.allowed_lateness <= watermark:
            return False
        timestamp = float(timestamp)  # a session starts at an item's timestamp: keep bounds floats
        state = self._keys.get(key)
        sessions = state.sessions if state is not None else []
        # Held sessions are disjoint and more than a gap apart, so both starts and ends ascend; the
        # item reaches those starting at most a gap after it and ending no earlier than it: two at most.
        high = bisect_right(sessions, timestamp + gap, key=start_of)
        low = high
        while low > 0 and sessions[low - 1].end >= timestamp:
            low -= 1
        reached = sessions[low:high]
        # Merge and fold first, store after: a merge or add that raises leaves no trace.
        if len(reached) > 1:
            contents = self._contents.merged([window.contents for window in reached])
        else:
            contents = reached[0].contents if reached else self._contents.empty(self.inputs)
        contents[index] = self._contents.folded(contents[index], item, self._seq)
        self._seq += 1
        self._dirty.add(key)
        if not reached:
            state = self._key(key)
            window = self._new_window(key, state.rank, timestamp, timestamp + gap, 0, contents)
            state.sessions.insert(high, window)
            self._queue(window)
            return True
        window = reached[0]
        if len(reached) > 1:
            self._merge(window, reached[1:], contents)
            del sessions[low + 1 : high]
        window.end = max(window.end, timestamp + gap)
        if timestamp < window.start:
            window.start = timestamp
            self._queue(window)  # an earlier start sorts earlier: the old entry would be too late
        elif window.token < 0:
            self._queue(window)  # fired before: due again
        # Otherwise a later end only: the queued entry is requeued lazily when it comes up.
        return True

    def _merge(self, window: Window, others: list[Window], contents: list[Any]) -> None:
        """Merge ``others``, later sessions of the same key, into ``window``, whose contents
        become ``contents``: theirs merged."""
        for other in others:
            window.fired = window.fired or other.fired
            other.alive = False
            other.token = -1
            self._open -= 1
        window.end = max(window.end, others[-1].end)
        window.contents = contents

    # -- bookkeeping ----------------------------------------------------------------------------

    def _forget_due_cells(self) -> None:
        """Windows are about to fire or go: add_run must look them up again."""
        for due in self._due_cells:
            due.clear()

    def _key(self, key: Hashable) -> KeyWindows:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = KeyWindows(self._next_rank)
            self._next_rank += 1
        return state

    def _new_window(
        self, key: Hashable, rank: int, start: float, end: float, number: int, contents: list[Any]
    ) -> Window:
        self._open += 1
        return Window(key, rank, start, end, number, contents)

    def _token(self) -> int:
        self._next_token += 1
        return self._next_token

    def _queue(self, window: Window) -> None:
        """Make ``window`` due to fire when the watermark reaches its end (superseding any entry)."""
        window.token = token = self._token()
        heapq.heappush(self._due, (window.end, window.start, window.rank, token, window))

    def _keep(self, window: Window) -> None:
        """Keep a fired window until the watermark passes its end plus the allowed lateness."""
        self._dirty.add(window.key)
        window.in_purge = True
        heapq.heappush(self._kept, (window.end + self.allowed_lateness, self._token(), window))

    def _fire(self, window: Window) -> FiredWindow:
        self._dirty.add(window.key)
        window.token = -1
        refire = window.fired
        window.fired = True
        self._fired += 1
        return FiredWindow(
            window.key, window.start, window.end, self._contents.fired(window.contents), refire
        )

    def _purge(self, watermark: float) -> None:
        kept = self._kept
        lateness = self.allowed_lateness
        still_kept = []
        while kept and kept[0][0] <= watermark:
            _, _, window = heapq.heappop(kept)
            window.in_purge = False
            self._dirty.add(window.key)
            if not window.alive:
                continue
            if window.token < 0 and window.end + lateness <= watermark:
                self._drop(window)
            else:
                still_kept.append(window)  # a session that grew, or one due to fire again
        for window in still_kept:
            self._keep(window)

    def _drop(self, window: Window) -> None:
        self._dirty.add(window.key)
        window.alive = False
        window.token = -1
        self._open -= 1
        state = self._keys[window.key]
        if self._sessions:
            del state.sessions[bisect_left(state.sessions, window.start, key=start_of)]
        else:
            del state.numbered[window.index]
        if not state.numbered and not state.sessions:
            del self._keys[window.key]
