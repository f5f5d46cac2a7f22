"""The Snapshotting protocol: every stateful operator has it, and one without it is refused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from sage_streams.operators.base import OperatorBase, Snapshotting, snapshot_of
from sage_streams.operators.joins.config import join_config, table_join_config
from sage_streams.operators.joins.operator import JoinOperator, TableJoinOperator
from sage_streams.operators.process import BatchProcessOperator, ProcessOperator
from sage_streams.operators.sync.config import sync_config
from sage_streams.operators.sync.operator import SyncOperator
from sage_streams.operators.windows.config import TumblingWindows
from sage_streams.operators.windows.operator import WindowOperator
from sage_streams.state import StreamState
from tests.operators.snapshot_support import StepClock, key_of, ts_of


def passing(batch: list[Any], state: StreamState) -> list[Any]:
    return batch


class Stateless(OperatorBase):
    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        return batch


def test_every_stateful_operator_is_snapshotting() -> None:
    operators = [
        JoinOperator(join_config("inner", key_func=key_of).build()),
        TableJoinOperator(table_join_config("inner", key_of).build(), event_time=False),
        WindowOperator(
            ["input0"],
            TumblingWindows(1.0).build(),
            key_func=None,
            timestamp=ts_of,
            out_of_orderness=0.0,
            clock=StepClock(),
        ),
        SyncOperator(sync_config(2).build()),
        ProcessOperator(passing, ["a"], StreamState(), {}, limit=10),
        BatchProcessOperator(passing, StreamState(), {}),
    ]
    for operator in operators:
        assert isinstance(operator, Snapshotting)
        assert isinstance(snapshot_of(operator), dict)


def test_an_operator_without_snapshots_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"operator Stateless cannot be snapshotted: it has no snapshot\(\)"):
        snapshot_of(Stateless())
