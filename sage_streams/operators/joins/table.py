"""Table joins: each event joined once with the current row of a changing table (pure, synchronous).

A :class:`TableJoinState` is the state behind ``DataStream.join_table``. Side 0 is the event
stream, side 1 the table: a stream of rows, of which only the latest per key is kept. A row's
value is ``value(row)`` (the row itself by default); a value of ``None`` is a tombstone and
deletes the key. Unlike the symmetric join (:mod:`sage_streams.operators.joins.state`), the event
side is never kept for later rows, and an update never re-emits a past event.

**Processing time** (no ``timestamp``). Each event is joined, when it arrives, with the row its
key has then: what the state has read of the table so far, in arrival order. ``"inner"`` drops
an event without a row (a miss); ``"left"`` emits ``(event, None)``. Events leave in arrival
order, at once.

**Event time** (``timestamp`` given: Flink's event-time temporal join). Every key keeps versions
``(ts, value)``, a tombstone version meaning no row from ``ts`` on; two versions of one key at one
``ts`` keep the later arrival. An event is joined with the version of largest ``ts`` at or before
its *join time* ``j``. ``j`` is the event's timestamp, unless the event is late: below ``W``, the
largest event timestamp arrived before it, in which case ``j = W`` (the event sees the table as
of ``W``; that is its own version when none of its key's versions lies between its timestamp and
``W``). The table's time ``T`` is the largest table timestamp read (``+inf`` once the table has
ended); an event waits, held, until ``T > j``, so that every version at or before ``j`` is in
(with the table in timestamp order, the output is then the same for every interleaving and
batching of the two inputs). Join times never fall in arrival order, so events leave in arrival
order, each when its ``j`` is passed: an event behind a held one is held too. So a table that
stays open and silent holds the events back, counted as ``held_events``.

Versions stay bounded: the *horizon* ``H`` is the smallest join time still to come (the first
held event's, else ``W``); of each key's versions at or before ``H`` only the newest is kept,
and a tombstone is dropped once no version is older (before a key's first version there is no
row either). A key is pruned when a row of it arrives, and every key once the versions have
doubled since the last sweep. A table item behind ``T`` still becomes a version for the events
not joined yet.

An item whose key function raises or gives ``None`` or an unhashable key, whose ``value``
raises, or whose timestamp is bad is an error of that item (:class:`JoinItemError`): it leaves
no trace, and the items before it are done.

Example::

    state = table_join_config("left", key_func=lambda item: item["user"]).build()
    state.push(TABLE, [{"user": 1, "name": "ann"}])                          # []
    state.push(EVENTS, [{"user": 1, "page": "/"}, {"user": 2, "page": "/a"}])
    # [({"user": 1, "page": "/"}, {"user": 1, "name": "ann"}), ({"user": 2, "page": "/a"}, None)]
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from sage_streams._codegen import Probe, compile_probe, lookup_error, none_key
from sage_streams.errors import StreamError
from sage_streams.operators.base import ItemError
from sage_streams.operators.joins.state import JoinItemError, read_key
from sage_streams.operators.timestamps import TimestampSpec, timestamp_reader

__all__ = ["EVENTS", "TABLE", "TableJoinState", "TableJoinStats"]

EVENTS: Final = 0
"""The side of the events."""
TABLE: Final = 1
"""The side of the table's rows."""

Pair: TypeAlias = tuple[Any, Any]
Held: TypeAlias = tuple[float, Any, Hashable]
"""An event waiting for the table's time: its join time, the event, its key."""

_MIN_SWEEP: Final = 1024
"""The fewest versions at which a sweep of every key is worth its pass."""


@dataclass(frozen=True, slots=True)
class TableJoinStats:
    """A snapshot of a table join, as read by the metrics.

    Attributes:
        probes: events joined (an event held in event time is a probe once joined).
        hits: probes that found a row (the misses are ``probes - hits``).
        table_rows: keys held: with a row (processing time), with a version (event time).
        versions: versions held (event time; the same as ``table_rows`` in processing time).
        held_events: events waiting for the table's time (event time; else 0).
        late_events: events joined as of ``W`` because they were late (event time).
    """

    probes: int
    hits: int
    table_rows: int
    versions: int
    held_events: int
    late_events: int


class _Versions:
    """One key's versions, in timestamp order: parallel lists, so that a bisection reads floats."""

    __slots__ = ("times", "values")

    def __init__(self, ts: float, value: Any) -> None:
        self.times = [ts]
        self.values = [value]


class TableJoinState:
    """The latest row per key of a table, and the events joined against it; see the module.

    One instance per run, driven from one task. :meth:`push` takes a batch of one side and
    returns the pairs it produced (in event time, a table batch returns the events its rows
    released); :meth:`end` and :meth:`finish` release what the table's end lets go.
    """

    def __init__(
        self,
        *,
        join_type: str,
        keys: tuple[Callable[[Any], Hashable], Callable[[Any], Hashable]],
        value: Callable[[Any], Any] | None,
        timestamp: TimestampSpec | None,
        inline: bool = False,
        codegen: bool = True,
    ) -> None:
        self._event_key, self._row_key = keys
        self._value = value
        self._keep_unmatched = join_type == "left"
        self._read_time = None if timestamp is None else timestamp_reader(timestamp)
        self._rows: dict[Hashable, Any] = {}  # processing time: key -> value
        self._dirty: set[Hashable] = set()  # keys whose row or versions changed since a snapshot
        self._probe: Probe | None = None
        if not self._keep_unmatched and timestamp is None:
            # One value per key, never a Bucket: the join's probe for a unique table fits.
            self._probe = compile_probe(
                EVENTS,
                self._event_key,
                self._rows,
                buffering=False,
                unique=True,
                inline=inline,
                codegen=codegen,
            )
        self._versions: dict[Hashable, _Versions] = {}  # event time
        self._version_count = 0
        self._sweep_at = _MIN_SWEEP
        self._held: deque[Held] = deque()
        self._table_time = -math.inf  # T
        self._event_mark = -math.inf  # W
        self._ended = [False, False]
        self._probes = self._hits = self._late = 0

    # -- the calls of the runtime ---------------------------------------------------------------

    def push(self, side: int, items: Sequence[Any]) -> list[Pair]:
        """Take ``items``, arrived in this order on ``side``, and return the pairs produced.

        Raises:
            JoinItemError: an item whose key, value or timestamp failed; see the module.
            StreamError: ``side`` has ended.
            IndexError: ``side`` is not 0 (events) or 1 (table).
        """
        self._check_open(side)
        if self._read_time is None:
            if side == EVENTS:
                return self._join_left(items) if self._keep_unmatched else self._join_inner(items)
            self._update_rows(items)
            return []
        out: list[Pair] = []
        for index, item in enumerate(items):
            try:
                if side == EVENTS:
                    self._arrive(item, out)
                else:
                    self._add_version(item, out)
            except ItemError as exc:
                raise JoinItemError(exc.item, exc.error, index, out) from exc.error
        return out

    def end(self, side: int) -> list[Pair]:
        """Input ``side`` has ended; the table's end releases every held event (``T = +inf``).
        Calling it again does nothing."""
        self._check_side(side)
        if self._ended[side]:
            return []
        self._ended[side] = True
        out: list[Pair] = []
        if side == TABLE:
            self._table_time = math.inf
            self._release(out)
        return out

    def finish(self) -> list[Pair]:
        """Both inputs have ended: what the table's end releases, if it was not told yet."""
        self._ended[EVENTS] = True
        return self.end(TABLE)

    def stats(self) -> TableJoinStats:
        """A snapshot of the counters and of the state's size."""
        timed = self._read_time is not None
        rows = len(self._versions) if timed else len(self._rows)
        return TableJoinStats(
            probes=self._probes,
            hits=self._hits,
            table_rows=rows,
            versions=self._version_count if timed else rows,
            held_events=len(self._held),
            late_events=self._late,
        )

    def lookup(self, side: int) -> tuple[Callable[[Any], Hashable], dict[Hashable, Any]] | None:
        """The key function and rows that join the events from now on, when that is all the
        join still does: an inner join in processing time whose table has ended (its rows no
        longer change, one value per key). The runtime may then run the lookup fused into the
        steps after the join instead of calling :meth:`push`, and reports the work with
        :meth:`record_lookups`.
        """
        self._check_side(side)
        if side != EVENTS or self._ended[EVENTS] or not self._ended[TABLE]:
            return None
        if self._read_time is not None or self._keep_unmatched:
            return None
        return self._event_key, self._rows

    def record_lookups(self, probes: int, hits: int) -> None:
        """Count the events joined through :meth:`lookup` and those that found a row."""
        self._probes += probes
        self._hits += hits

    # -- checkpoints ----------------------------------------------------------------------------

    def snapshot(self) -> dict[Hashable, Any]:
        """The join's state as entries (see :class:`~sage_streams.operators.base.Snapshotting`).

        ``("row", key)`` holds a key's row (processing time), ``("versions", key)`` its
        ``(times, values)`` (event time); ``"held"`` the held events, ``(join time, event,
        key)`` in arrival order; ``"meta"`` the times, ended flags, counters and sweep point.
        """
        entries = self._scalars()
        for key, row in self._rows.items():
            entries["row", key] = row
        for key, versions in self._versions.items():
            entries["versions", key] = (list(versions.times), list(versions.values))
        return entries

    def snapshot_changes(self) -> tuple[dict[Hashable, Any], list[Hashable]]:
        """The entries of the keys whose row or versions changed since the last call, and those
        of the keys gone since (see ``IncrementalSnapshotting``), with ``"meta"`` and ``"held"``."""
        dirty, self._dirty = self._dirty, set()
        entries, gone = self._scalars(), list[Hashable]()
        rows, every = self._rows, self._versions
        for key in dirty:
            if key in rows:
                entries["row", key] = rows[key]
            else:
                gone.append(("row", key))
            versions = every.get(key)
            if versions is not None:
                entries["versions", key] = (list(versions.times), list(versions.values))
            else:
                gone.append(("versions", key))
        return entries, gone

    def _scalars(self) -> dict[Hashable, Any]:
        meta = (
            self._table_time,
            self._event_mark,
            list(self._ended),
            (self._probes, self._hits, self._late),
            self._version_count,
            self._sweep_at,
        )
        return {"meta": meta, "held": list(self._held)}

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        """Bring this fresh join to the state of ``entries``, made by :meth:`snapshot`."""
        meta = entries["meta"]
        self._table_time, self._event_mark, ended, counters, self._version_count, self._sweep_at = meta
        self._ended = list(ended)
        self._probes, self._hits, self._late = counters
        self._held = deque(tuple(held) for held in entries["held"])
        for name, value in entries.items():
            if not isinstance(name, tuple):
                continue
            if name[0] == "row":
                self._rows[name[1]] = value  # in place: the probe loop holds the dict
            elif name[0] == "versions":
                versions = self._versions[name[1]] = _Versions(0.0, None)
                versions.times, versions.values = list(value[0]), list(value[1])
        self._dirty = set()

    # -- processing time ------------------------------------------------------------------------

    def _join_inner(self, events: Sequence[Any]) -> list[Pair]:
        """Each event with the current row of its key, through the join's probe loop."""
        assert self._probe is not None
        out: list[Pair] = []
        rest = iter(events)
        hits, event, error, cause = self._probe(rest, out, None)
        done = len(events) - rest.__length_hint__() - (error is not None)  # type: ignore[attr-defined]
        self._probes += done
        self._hits += hits
        if error is not None:
            raise JoinItemError(event, error, done, out) from cause
        return out

    def _join_left(self, events: Sequence[Any]) -> list[Pair]:
        """Each event with the current row of its key, or with ``None``."""
        out: list[Pair] = []
        emit = out.append
        get = self._rows.get
        key_of = self._event_key
        misses = 0
        for index, event in enumerate(events):
            try:
                key = key_of(event)
            except Exception as exc:
                self._count_left(index, misses)
                raise JoinItemError(event, exc, index, out) from exc
            try:
                row = get(key)  # a row is never None: None deletes
            except Exception as exc:
                self._count_left(index, misses)
                raise JoinItemError(event, lookup_error(key, exc), index, out) from exc
            if row is None:
                if key is None:  # no row has a None key: this is the only test it costs
                    self._count_left(index, misses)
                    raise JoinItemError(event, none_key(event), index, out)
                misses += 1
            emit((event, row))
        self._count_left(len(events), misses)
        return out

    def _count_left(self, probes: int, misses: int) -> None:
        self._probes += probes
        self._hits += probes - misses

    def _update_rows(self, rows: Sequence[Any]) -> None:
        table, dirty = self._rows, self._dirty
        for index, item in enumerate(rows):
            try:
                key = read_key(self._row_key, item)
                value = self._value_of(item)
            except ItemError as exc:
                raise JoinItemError(exc.item, exc.error, index, []) from exc.error
            dirty.add(key)
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value

    # -- event time -----------------------------------------------------------------------------

    def _arrive(self, event: Any, out: list[Pair]) -> None:
        assert self._read_time is not None
        ts = self._read_time(event)
        key = read_key(self._event_key, event)
        if ts < self._event_mark:
            self._late += 1
            ts = self._event_mark
        self._event_mark = ts
        if not self._held and ts < self._table_time:
            self._join_at(event, key, ts, out)
        else:
            self._held.append((ts, event, key))

    def _add_version(self, item: Any, out: list[Pair]) -> None:
        assert self._read_time is not None
        ts = self._read_time(item)
        key = read_key(self._row_key, item)
        value = self._value_of(item)
        self._dirty.add(key)
        versions = self._versions.get(key)
        if versions is None:
            if value is not None:  # a tombstone of a key without versions changes nothing
                self._versions[key] = _Versions(ts, value)
                self._version_count += 1
        else:
            times = versions.times
            at = bisect_right(times, ts)
            if at and times[at - 1] == ts:
                versions.values[at - 1] = value  # the later arrival at one time wins
            else:
                times.insert(at, ts)
                versions.values.insert(at, value)
                self._version_count += 1
            self._prune(key, versions, self._horizon())
        if ts > self._table_time:
            self._table_time = ts
            self._release(out)
        if self._version_count >= self._sweep_at:
            self._sweep()

    def _release(self, out: list[Pair]) -> None:
        """Join the held events whose join time the table's time has passed, in arrival order."""
        held = self._held
        table_time = self._table_time
        while held and held[0][0] < table_time:
            ts, event, key = held.popleft()
            self._join_at(event, key, ts, out)

    def _join_at(self, event: Any, key: Hashable, ts: float, out: list[Pair]) -> None:
        """``event`` with the version of ``key`` at ``ts``: the one of largest time at or before."""
        self._probes += 1
        value = None
        versions = self._versions.get(key)
        if versions is not None:
            at = bisect_right(versions.times, ts)
            if at:
                value = versions.values[at - 1]
        if value is not None:
            self._hits += 1
            out.append((event, value))
        elif self._keep_unmatched:
            out.append((event, None))

    def _horizon(self) -> float:
        """``H``: the smallest join time still to come (held events leave in arrival order)."""
        return self._held[0][0] if self._held else self._event_mark

    def _prune(self, key: Hashable, versions: _Versions, horizon: float) -> None:
        """Drop the versions older than the newest at or before ``horizon``, then the tombstones
        left oldest: before a key's first version there is no row either."""
        times = versions.times
        values = versions.values
        drop = max(bisect_right(times, horizon) - 1, 0)
        while drop < len(values) and values[drop] is None:
            drop += 1
        if drop:
            self._dirty.add(key)
            del times[:drop]
            del values[:drop]
            self._version_count -= drop
            if not times:
                del self._versions[key]

    def _sweep(self) -> None:
        """Prune every key, then wait for the versions to double again (amortized O(1) a row)."""
        horizon = self._horizon()
        for key, versions in list(self._versions.items()):
            self._prune(key, versions, horizon)
        self._sweep_at = max(_MIN_SWEEP, 2 * self._version_count)

    # -- both -----------------------------------------------------------------------------------

    def _value_of(self, item: Any) -> Any:
        if self._value is None:
            return item
        try:
            return self._value(item)
        except Exception as exc:
            raise ItemError(item, exc) from exc

    def _check_side(self, side: int) -> None:
        if side not in (EVENTS, TABLE):
            raise IndexError(f"table join side must be 0 (events) or 1 (table), got {side!r}")

    def _check_open(self, side: int) -> None:
        self._check_side(side)
        if self._ended[side]:
            name = ("event", "table")[side]
            raise StreamError(f"the {name} input of this table join has ended; nothing can be pushed to it")
