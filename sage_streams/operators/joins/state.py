"""Streaming joins of two inputs: the pure, synchronous state behind ``ConnectedStreams.join``.

A :class:`JoinState` is a symmetric hash join. The runtime feeds it the batches of the left
(side 0) and right (side 1) inputs with :meth:`~JoinState.push`, tells it when an input ends with
:meth:`~JoinState.end` and when both have ended with :meth:`~JoinState.finish`. Every call
returns the ``(left, right)`` pairs it produced; a missing side is ``None``.

Each arriving item meets everything already buffered on the other side, then is buffered on its
own side. With keys it meets only the items of equal key; with a condition,
``condition(left, right)`` must also be true (always called in that order, whichever side
arrived); with ``within``, the two timestamps may differ by at most ``within`` seconds. Pairs
come in the order the buffered partners arrived. So for finite inputs the inner pairs are those
of a nested-loop join, however the two inputs interleave and however they are batched.

A buffered item leaves when it can match nothing new: when the other input ends, or, with
``within``, once the other side's watermark (the largest timestamp seen there) has passed it by
more than ``within``. That is exact when each input is in timestamp order; a later item that is
more than ``within`` behind the other side's watermark is too late and matches only what is
still buffered. An item leaving unmatched is emitted with ``None`` for a ``"left"``,
``"right"`` or ``"outer"`` join of its side, at that moment.

Example::

    join = join_config("left", key_func=lambda item: item["user"]).build()
    join.push(1, [{"user": 1, "name": "ann"}])                # []: nothing on the left yet
    join.push(0, [{"user": 1, "page": "/"}, {"user": 2, "page": "/a"}])
    # [({"user": 1, "page": "/"}, {"user": 1, "name": "ann"})]
    join.finish()                                             # [({"user": 2, "page": "/a"}, None)]
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import astuple, dataclass
from typing import Any, Final, TypeAlias

from sage_streams._codegen import Lookup, Probe, compile_probe, lookup_error, none_key
from sage_streams._codegen.lookups import Bucket
from sage_streams.errors import StreamError
from sage_streams.operators.base import ItemError
from sage_streams.operators.timestamps import TimestampReader, TimestampSpec, timestamp_reader
from sage_streams.time import EventTime

__all__ = ["JoinItemError", "JoinState", "JoinStats", "read_key"]

Pair: TypeAlias = tuple[Any, Any]
KeyFunc: TypeAlias = Callable[[Any], Any]

_ALL: Final = object()
"""The one bucket of a join without keys: every buffered item is a candidate."""


class JoinItemError(ItemError):
    """A bad item in a pushed batch; ``pairs`` is what the items before it produced.

    The items before ``index`` have been fully processed, and the failing item has left no trace
    (not buffered, no partner marked as matched), so the caller takes ``pairs`` and may go on with
    ``items[index + 1:]``: nothing is lost or produced twice.
    """

    def __init__(self, item: object, error: BaseException, index: int, pairs: list[Pair]) -> None:
        super().__init__(item, error, index, pairs)
        self.pairs = pairs


def read_key(key_func: Callable[[Any], Hashable], item: Any) -> Hashable:
    """The key of ``item``; a key function that raises, a ``None`` key or an unhashable one is
    an :class:`~sage_streams.operators.base.ItemError` of the item (``None`` keys never join)."""
    try:
        key = key_func(item)
    except Exception as exc:
        raise ItemError(item, exc) from exc
    if key is None:
        raise ItemError(item, none_key(item))
    try:
        hash(key)
    except Exception as exc:
        raise ItemError(item, lookup_error(key, exc)) from exc
    return key


@dataclass(frozen=True, slots=True)
class JoinStats:
    """A snapshot of a join, as read by the metrics.

    Every item joined looks up the other side's buffer, but it is a probe only if there was
    something to look at: once the other side has had an item, or has ended (its buffer is then
    all there will be, so finding nothing is a real miss). An item that arrives before anything
    of the other side only fills the buffer: 100 profiles, then one event with a profile, make 1
    probe and 1 hit, not 101 and 1. Both sides count alike; an item whose key, timestamp or
    condition failed counts nowhere.

    Attributes:
        probes: items joined once the other side had an item or had ended.
        hits: probes that found at least one partner (the misses are ``probes - hits``).
        matches: pairs emitted with both sides.
        unmatched_emitted: pairs emitted with ``None`` on one side.
        buffered_left: left items buffered now.
        buffered_right: right items buffered now.
    """

    probes: int
    hits: int
    matches: int
    unmatched_emitted: int
    buffered_left: int
    buffered_right: int

    @property
    def hit_rate(self) -> float:
        """``hits / probes``: the share of lookups that found a partner; ``0.0`` before the
        first probe."""
        return self.hits / self.probes if self.probes else 0.0


class _Entry:
    """A buffered item of the general path, with what eviction and outer joins need."""

    __slots__ = ("item", "key", "matched", "seq", "ts")

    def __init__(self, item: Any, key: Hashable, ts: float, seq: int, matched: bool) -> None:
        self.item = item
        self.key = key
        self.ts = ts
        self.seq = seq
        self.matched = matched


class JoinState:
    """A streaming symmetric hash join of two inputs (side 0 = left, side 1 = right).

    One instance per run, driven from one task. ``push`` processes the items in order and returns
    their pairs, interleaved with the unmatched items that leave meanwhile: for each item, its
    pairs, then the other side's items its watermark expired (earliest timestamp first), then the
    item itself if it arrived too late to be kept. ``end(side)`` evicts the other side's buffer
    (arrival order), since nothing new can match it; the ended side's buffer stays, for the items
    still to come on the other side, which from then on are not buffered. ``finish()`` ends both
    and emits what remains unmatched: left first, then right, each in arrival order.

    A keyed inner join without condition or ``within`` runs a generated loop per side
    (:mod:`sage_streams._codegen.join_probe`), with the key function inlined when ``inline`` is true.
    Once its other input has ended with one item per key, it is a plain lookup, which the
    runtime may run itself (:meth:`lookup`).

    Example::

        join = join_config("inner", key_func=len).build()
        join.push(0, ["ab", "c"])            # []
        join.push(1, ["xy", "zz", "q"])      # [("ab", "xy"), ("ab", "zz"), ("c", "q")]
    """

    def __init__(
        self,
        *,
        join_type: str,
        keys: tuple[Callable[[Any], Hashable] | None, Callable[[Any], Hashable] | None],
        condition: Callable[[Any, Any], bool] | None,
        within: float | None,
        timestamp: TimestampSpec,
        inline: bool = False,
        codegen: bool = True,
    ) -> None:
        self._inline = inline
        self._codegen = codegen
        self._keys = keys
        self._condition = condition
        self._within = within
        self._keep_unmatched = (join_type in ("left", "outer"), join_type in ("right", "outer"))
        self._fast = join_type == "inner" and condition is None and within is None
        # The fast path buffers items per key (an item, or a Bucket of them; see _join_probe),
        # with a generated loop per side and mode; the general path entries per key, by arrival.
        self._items: tuple[dict[Hashable, Any], dict[Hashable, Any]] = ({}, {})
        self._probes_by_mode: dict[tuple[int, bool], Probe] = {}
        self._entries: tuple[dict[Hashable, dict[int, _Entry]], dict[Hashable, dict[int, _Entry]]] = ({}, {})
        self._heaps: tuple[list[tuple[float, int, _Entry]], list[tuple[float, int, _Entry]]] = ([], [])
        self._readers: tuple[TimestampReader, TimestampReader] | None = None
        if within is not None:
            self._readers = (timestamp_reader(timestamp), timestamp_reader(timestamp))
        self._times = [EventTime(-math.inf), EventTime(-math.inf)]  # per side, for ``within``
        self._ended = [False, False]
        self._buffered = [0, 0]
        self._arrived = [False, False]
        """Whether an item of each side has been joined: from then on the other side probes."""
        self._seq = 0
        self._probes = self._hits = self._matches = self._unmatched = 0

    # -- the three calls of the runtime ---------------------------------------------------------

    def push(self, side: int, items: Sequence[Any]) -> list[Pair]:
        """Join ``items``, arrived in this order on ``side``, and return what they produced.

        Raises:
            JoinItemError: an item whose key, timestamp or condition failed; see its docstring.
            StreamError: ``side`` has ended.
            IndexError: ``side`` is not 0 or 1.
        """
        self._check_open(side)
        if self._fast:
            return self._push_keyed_inner(side, items)
        out: list[Pair] = []
        for index, item in enumerate(items):
            try:
                self._arrive(side, item, out)
            except ItemError as exc:
                raise JoinItemError(exc.item, exc.error, index, out) from exc.error
        return out

    def end(self, side: int) -> list[Pair]:
        """Input ``side`` has ended: evict the other side's buffer; calling it again does nothing.

        Returns the other side's unmatched items for an outer join of that side, else ``[]``.
        """
        self._check_side(side)
        if self._ended[side]:
            return []
        self._ended[side] = True
        self._times[side].watermark = math.inf
        out: list[Pair] = []
        self._evict_all(1 - side, out)
        return out

    def finish(self) -> list[Pair]:
        """Both inputs have ended: emit every unmatched item left, left side first, and clear."""
        out: list[Pair] = []
        for side in (0, 1):
            self._ended[side] = True
            self._times[side].watermark = math.inf
        self._evict_all(0, out)
        self._evict_all(1, out)
        return out

    def stats(self) -> JoinStats:
        """A snapshot of the counters and of the buffer sizes."""
        return JoinStats(
            probes=self._probes,
            hits=self._hits,
            matches=self._matches,
            unmatched_emitted=self._unmatched,
            buffered_left=self._buffered[0],
            buffered_right=self._buffered[1],
        )

    # -- checkpoints ----------------------------------------------------------------------------

    def snapshot(self) -> dict[Hashable, Any]:
        """The join's state as entries (see :class:`~sage_streams.operators.base.Snapshotting`).

        ``("key", side, key)`` holds a key's buffered items of one side, in arrival order (a join
        without keys: ``("all", side)``): the items themselves on the fast path, else
        ``(seq, ts, matched, item)`` tuples. ``"meta"`` holds the watermarks, ended flags,
        counters and the sequence number.
        """
        entries: dict[Hashable, Any] = {
            "meta": (
                [astuple(time) for time in self._times],
                list(self._ended),
                list(self._buffered),
                list(self._arrived),
                self._seq,
                (self._probes, self._hits, self._matches, self._unmatched),
            )
        }
        for side in (0, 1):
            if self._fast:
                for key, held in self._items[side].items():
                    entries["key", side, key] = list(held) if type(held) is Bucket else [held]
            else:
                for key, bucket in self._entries[side].items():
                    name = ("all", side) if key is _ALL else ("key", side, key)
                    entries[name] = [(e.seq, e.ts, e.matched, e.item) for e in bucket.values()]
        return entries

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        """Bring this fresh join to the state of ``entries``, made by :meth:`snapshot`."""
        times, ended, buffered, arrived, self._seq, counters = entries["meta"]
        self._times = [EventTime(*time) for time in times]
        self._ended, self._buffered, self._arrived = list(ended), list(buffered), list(arrived)
        self._probes, self._hits, self._matches, self._unmatched = counters
        for name, held in entries.items():
            if not isinstance(name, tuple):
                continue
            side, key = name[1], (_ALL if name[0] == "all" else name[2])
            if self._fast:
                # In place: a probe loop holds the other side's dict.
                self._items[side][key] = held[0] if len(held) == 1 else Bucket(held)
                continue
            bucket = self._entries[side][key] = {}
            for seq, ts, matched, item in held:
                bucket[seq] = entry = _Entry(item, key, ts, seq, matched)
                if self._within is not None:
                    self._heaps[side].append((ts, seq, entry))
        for heap in self._heaps:
            heapq.heapify(heap)

    # -- the fast path: keyed inner join, no condition, no within -------------------------------

    def _push_keyed_inner(self, side: int, items: Sequence[Any]) -> list[Pair]:
        # Once the other input has ended nothing new can match an item of this side: keep none.
        buffering = not self._ended[1 - side]
        probe = self._probes_by_mode.get((side, buffering))
        if probe is None:
            key_of = self._keys[side]
            assert key_of is not None
            theirs = self._items[1 - side]
            # The other side ended: its buckets no longer change.
            unique = not buffering and self._one_per_key(1 - side)
            probe = compile_probe(
                side,
                key_of,
                theirs,
                buffering=buffering,
                unique=unique,
                inline=self._inline,
                codegen=self._codegen,
            )
            self._probes_by_mode[side, buffering] = probe
        out: list[Pair] = []
        rest = iter(items)
        hits, item, error, cause = probe(rest, out, self._items[side] if buffering else None)
        done = len(items) - rest.__length_hint__() - (error is not None)  # type: ignore[attr-defined]
        self._count_arrivals(side, done)
        self._hits += hits
        self._matches += len(out)
        if buffering:
            self._buffered[side] += done
        if error is not None:
            raise JoinItemError(item, error, done, out) from cause
        return out

    def lookup(self, side: int) -> tuple[KeyFunc, Lookup] | None:
        """The key function and table that join the items of ``side`` from now on, when that
        is all the join still does: a keyed inner join, the other input ended, holding one item
        per key (a dimension table). Items of ``side`` are then neither buffered nor able to
        change anything, so the runtime may run the lookup fused into the steps after the join
        (:class:`~sage_streams._codegen.steps.Step` of kind ``"lookup"``) instead of calling
        :meth:`push`; it reports the work with :meth:`record_lookups`.
        """
        self._check_side(side)
        other = 1 - side
        key_of = self._keys[side]
        if not self._fast or self._ended[side] or not self._ended[other] or key_of is None:
            return None
        if not self._one_per_key(other):
            return None
        return key_of, Lookup(self._items[other], item_first=side == 0)

    def _one_per_key(self, side: int) -> bool:
        """Whether the fast path's buffer of ``side`` holds one item per key: as many keys as
        items, so no bucket holds two."""
        return len(self._items[side]) == self._buffered[side]

    def _count_arrivals(self, side: int, count: int) -> None:
        """``count`` items of ``side`` have been joined: probes if the other side has had an
        item or has ended (see :class:`JoinStats`)."""
        if count and (self._arrived[1 - side] or self._ended[1 - side]):
            self._probes += count
        self._arrived[side] = self._arrived[side] or count > 0

    def record_lookups(self, probes: int, pairs: int) -> None:
        """Count work done through :meth:`lookup`: items looked up, every one a probe (the other
        side has ended), and the pairs they made (as every key has one partner, also the probes
        that found one)."""
        self._probes += probes
        self._hits += pairs
        self._matches += pairs

    # -- the general path -----------------------------------------------------------------------

    def _arrive(self, side: int, item: Any, out: list[Pair]) -> None:
        """Join one item; raise :class:`ItemError` before changing anything if it is bad."""
        other = 1 - side
        key = self._key(side, item)
        ts = self._readers[side](item) if self._readers is not None else 0.0
        partners = self._partners(side, item, key, ts)
        # Commit: the item can no longer fail.
        self._count_arrivals(side, 1)
        if partners:
            self._hits += 1
            self._matches += len(partners)
            for entry in partners:
                entry.matched = True
                out.append((item, entry.item) if side == 0 else (entry.item, item))
        within = self._within
        if within is not None and self._times[side].pass_item(ts):
            self._evict_expired(other, out)
        if self._ended[other] or (within is not None and self._times[other].watermark - ts > within):
            if not partners:
                self._emit_unmatched(side, item, out)
            return
        self._buffer(side, item, key, ts, bool(partners))

    def _key(self, side: int, item: Any) -> Hashable:
        key_of = self._keys[side]
        return _ALL if key_of is None else read_key(key_of, item)

    def _partners(self, side: int, item: Any, key: Hashable, ts: float) -> list[_Entry]:
        """The buffered entries of the other side that ``item`` matches, in arrival order."""
        bucket = self._entries[1 - side].get(key)
        if not bucket:
            return []
        within = self._within
        condition = self._condition
        found = []
        for entry in bucket.values():
            if within is not None and abs(entry.ts - ts) > within:
                continue
            if condition is not None:
                left, right = (item, entry.item) if side == 0 else (entry.item, item)
                try:
                    ok = bool(condition(left, right))
                except Exception as exc:
                    raise ItemError(item, exc) from exc
                if not ok:
                    continue
            found.append(entry)
        return found

    def _buffer(self, side: int, item: Any, key: Hashable, ts: float, matched: bool) -> None:
        self._seq += 1
        entry = _Entry(item, key, ts, self._seq, matched)
        buckets = self._entries[side]
        bucket = buckets.get(key)
        if bucket is None:
            buckets[key] = bucket = {}
        bucket[entry.seq] = entry
        if self._within is not None:
            heapq.heappush(self._heaps[side], (ts, entry.seq, entry))
        self._buffered[side] += 1

    def _evict_expired(self, side: int, out: list[Pair]) -> None:
        """Evict the entries of ``side`` the other side's watermark has passed by > ``within``."""
        heap = self._heaps[side]
        mark = self._times[1 - side].watermark
        within = self._within
        assert within is not None
        # ``mark - ts > within`` is the exact negation of the match test and falls as ``ts``
        # grows, so the heap's smallest timestamp is the only one to look at.
        while heap and mark - heap[0][0] > within:
            entry = heapq.heappop(heap)[2]
            buckets = self._entries[side]
            bucket = buckets[entry.key]
            del bucket[entry.seq]
            if not bucket:
                del buckets[entry.key]
            self._buffered[side] -= 1
            if not entry.matched:
                self._emit_unmatched(side, entry.item, out)

    def _evict_all(self, side: int, out: list[Pair]) -> None:
        """Empty the buffer of ``side``, emitting its unmatched items in arrival order."""
        self._items[side].clear()
        self._heaps[side].clear()
        self._buffered[side] = 0
        buckets = self._entries[side]
        if self._keep_unmatched[side]:
            entries = [entry for bucket in buckets.values() for entry in bucket.values()]
            entries.sort(key=lambda entry: entry.seq)
            for entry in entries:
                if not entry.matched:
                    self._emit_unmatched(side, entry.item, out)
        buckets.clear()

    def _emit_unmatched(self, side: int, item: Any, out: list[Pair]) -> None:
        if self._keep_unmatched[side]:
            out.append((item, None) if side == 0 else (None, item))
            self._unmatched += 1

    # -- misuse ---------------------------------------------------------------------------------

    def _check_side(self, side: int) -> None:
        if side not in (0, 1):
            raise IndexError(f"join side must be 0 (left) or 1 (right), got {side!r}")

    def _check_open(self, side: int) -> None:
        self._check_side(side)
        if self._ended[side]:
            name = ("left", "right")[side]
            raise StreamError(f"the {name} input of this join has ended; nothing can be pushed to it")
