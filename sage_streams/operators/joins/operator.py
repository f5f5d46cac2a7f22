"""The join operator: :class:`~sage_streams.operators.joins.state.JoinState` fed by the runtime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sage_streams._codegen import Step
from sage_streams.operators.base import OperatorBase
from sage_streams.operators.joins.state import JoinState

__all__ = ["JoinOperator"]


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

    def details(self) -> dict[str, float]:
        stats = self.join.stats()
        return {
            "probes": float(stats.probes),
            "matches": float(stats.matches),
            "misses": float(stats.probes - stats.hits),
            "hit_rate": stats.hit_rate,
            "buffered_left": float(stats.buffered_left),
            "buffered_right": float(stats.buffered_right),
        }
