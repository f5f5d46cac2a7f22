"""The join operators fed by the runtime: :class:`JoinOperator` runs a
:class:`~sage_streams.operators.joins.state.JoinState`, :class:`TableJoinOperator` a
:class:`~sage_streams.operators.joins.table.TableJoinState`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from sage_streams._codegen import Lookup, Step
from sage_streams.operators.base import OperatorBase
from sage_streams.operators.joins.state import JoinState
from sage_streams.operators.joins.table import TableJoinState

__all__ = ["JoinOperator", "TableJoinOperator"]


class JoinOperator(OperatorBase):
    """Feeds a :class:`~sage_streams.operators.joins.state.JoinState` from the two inputs."""

    def __init__(self, join: JoinState) -> None:
        super().__init__()
        self.join = join
        self._mode = "hash"

    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        return self.join.push(index, batch)

    async def on_end(self, index: int) -> Sequence[Any]:
        return self.join.end(index)

    async def on_finish(self) -> Sequence[Any]:
        return self.join.finish()

    @property
    def mode(self) -> str:
        """``"hash"`` while the join probes and buffers; ``"lookup"`` once it is a lookup step."""
        return self._mode

    def as_step(self, index: int) -> Step | None:
        """A lookup step for input ``index`` once the join is nothing more (see
        :meth:`~sage_streams.operators.joins.state.JoinState.lookup`): the runtime fuses it into
        the loop of the steps after the join."""
        found = self.join.lookup(index)
        if found is None:
            return None
        key, table = found
        self._mode = "lookup"
        return Step("lookup", key, "join", table)

    def record_step(self, entered: int, emitted: int) -> None:
        self.join.record_lookups(entered, emitted)

    def snapshot(self) -> dict[Hashable, Any]:
        """The join's entries, and under ``"operator"`` the mode, for the metrics."""
        entries = self.join.snapshot()
        entries["operator"] = self._mode
        return entries

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        self.join.restore(entries)
        self._mode = entries["operator"]

    def details(self) -> dict[str, float]:
        stats = self.join.stats()
        return {
            "probes": float(stats.probes),
            "matches": float(stats.matches),
            "misses": float(stats.probes - stats.hits),
            "hit_rate": stats.hit_rate,
            "buffered_left": float(stats.buffered_left),
            "buffered_right": float(stats.buffered_right),
            "buffered": float(stats.buffered_left + stats.buffered_right),
        }


class TableJoinOperator(OperatorBase):
    """Feeds a :class:`~sage_streams.operators.joins.table.TableJoinState`: input 0 the events,
    input 1 the table.

    Its metrics: ``table_rows`` (keys held), ``probes``, ``hits``, ``misses``, and ``buffered``,
    the events it keeps: 0 in processing time (an event is joined on arrival), the held events in
    event time, also given as ``held_events`` with ``versions`` and ``late_events``.
    """

    def __init__(self, table: TableJoinState, *, event_time: bool) -> None:
        super().__init__()
        self.table = table
        self._event_time = event_time
        self._mode = "table"

    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        return self.table.push(index, batch)

    async def on_end(self, index: int) -> Sequence[Any]:
        return self.table.end(index)

    async def on_finish(self) -> Sequence[Any]:
        return self.table.finish()

    @property
    def mode(self) -> str:
        """``"table"`` while it joins each batch itself; ``"lookup"`` once it is a lookup step."""
        return self._mode

    def as_step(self, index: int) -> Step | None:
        """A lookup step for the events once the table has ended, when the join is no more than
        that (see :meth:`~sage_streams.operators.joins.table.TableJoinState.lookup`)."""
        found = self.table.lookup(index)
        if found is None:
            return None
        key, rows = found
        self._mode = "lookup"
        return Step("lookup", key, "join_table", Lookup(rows, item_first=True))

    def record_step(self, entered: int, emitted: int) -> None:
        self.table.record_lookups(entered, emitted)

    def snapshot(self) -> dict[Hashable, Any]:
        """The table join's entries, and under ``"operator"`` the mode, for the metrics."""
        entries = self.table.snapshot()
        entries["operator"] = self._mode
        return entries

    def snapshot_changes(self) -> tuple[dict[Hashable, Any], list[Hashable]]:
        """The table join's changed entries (see ``TableJoinState.snapshot_changes``) and the mode."""
        entries, gone = self.table.snapshot_changes()
        entries["operator"] = self._mode
        return entries, gone

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        self.table.restore(entries)
        self._mode = entries["operator"]

    def details(self) -> dict[str, float]:
        stats = self.table.stats()
        details = {
            "table_rows": float(stats.table_rows),
            "probes": float(stats.probes),
            "hits": float(stats.hits),
            "misses": float(stats.probes - stats.hits),
            "buffered": float(stats.held_events),
        }
        if self._event_time:
            details["versions"] = float(stats.versions)
            details["held_events"] = float(stats.held_events)
            details["late_events"] = float(stats.late_events)
        return details
