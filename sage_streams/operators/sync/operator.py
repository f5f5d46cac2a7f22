"""The synchronize operator: a synchronizer fed by the runtime, its item errors made positional."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from sage_streams.operators.base import ItemError, OperatorBase
from sage_streams.operators.sync.state import Synchronizer, SyncItemError, SyncOutput

__all__ = ["SyncOperator"]


class SyncOperator(OperatorBase):
    """Feeds a synchronizer; items that can no longer match go to the ``unmatched`` side."""

    SIDE_PORTS = ("unmatched",)

    def __init__(self, synchronizer: Synchronizer) -> None:
        super().__init__()
        self.sync = synchronizer
        self.emitted_tuples = 0

    def wants(self, index: int) -> bool:
        return self.sync.wants(index)

    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        try:
            return self._take(self.sync.push(index, batch))
        except SyncItemError as exc:
            raise ItemError(exc.item, exc.error, exc.index, self._take(exc.partial)) from exc.error

    async def on_end(self, index: int) -> Sequence[Any]:
        return self._take(self.sync.end(index))

    async def on_finish(self) -> Sequence[Any]:
        return self._take(self.sync.finish())

    def _take(self, output: SyncOutput) -> Sequence[Any]:
        self.side["unmatched"].extend(output.unmatched)
        self.emitted_tuples += len(output.tuples)
        return list(output.tuples)

    def snapshot(self) -> dict[Hashable, Any]:
        """The synchronizer's entries, and under ``"operator"`` the count of tuples emitted."""
        entries = self.sync.snapshot()
        entries["operator"] = self.emitted_tuples
        return entries

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        self.sync.restore(entries)
        self.emitted_tuples = entries["operator"]

    def stalled(self) -> str:
        return "synchronization holds back every open input (each has a full buffer or waits at a marker)"

    def details(self) -> dict[str, float]:
        return {"tuples": float(self.emitted_tuples)}
