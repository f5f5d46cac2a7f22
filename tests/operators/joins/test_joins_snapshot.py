"""Joins resume from a snapshot exactly: keyed, keyless, interval and outer joins, and table
joins in processing and event time; a snapshot is plain data that stays as taken."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.operators.base import OperatorBase
from sage_streams.operators.joins.config import join_config, table_join_config
from sage_streams.operators.joins.operator import JoinOperator, TableJoinOperator
from tests.operators import snapshot_support as support
from tests.operators.snapshot_support import Ev, key_of, now, ts_of


def observed(op: OperatorBase, out: Any) -> tuple[Any, ...]:
    return list(out), op.details()


actions = st.one_of(
    st.tuples(st.just("batch"), st.integers(0, 1), st.lists(support.events, max_size=6)),
    st.tuples(st.just("end"), st.integers(0, 1)),
)


def odd_sum(left: Ev, right: Ev) -> bool:
    return (left.v + right.v) % 2 == 1


JOINS = {
    "keyed": {"key_func": key_of},
    "keyless": {"condition": odd_sum},
    "keyed_condition": {"key_func": key_of, "condition": odd_sum},
    "interval": {"key_func": key_of, "within": 2.0, "timestamp": ts_of},
    "keyless_interval": {"condition": odd_sum, "within": 1.5, "timestamp": ts_of},
}


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(sorted(JOINS)),
    join_type=st.sampled_from(["inner", "left", "right", "outer"]),
    codegen=st.booleans(),
    data=st.data(),
)
def test_a_join_resumes_from_its_snapshot(
    kind: str, join_type: str, codegen: bool, data: st.DataObject
) -> None:
    config = join_config(join_type, **JOINS[kind])  # type: ignore[arg-type]

    def build(previous: JoinOperator | None) -> JoinOperator:
        return JoinOperator(config.build(inline=codegen, codegen=codegen))

    steps = support.plan_steps(data.draw(st.lists(actions, max_size=12), label="plan"), observed)
    cut = data.draw(st.integers(0, len(steps)), label="cut")
    support.check_resumes(support.Resumable(build, JoinOperator.snapshot, JoinOperator.restore), steps, cut)


def row_value(row: Ev) -> Ev | None:
    """A row of value 0 is a tombstone: it deletes its key."""
    return None if row.v == 0 else row


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    join_type=st.sampled_from(["inner", "left"]),
    event_time=st.booleans(),
    codegen=st.booleans(),
    data=st.data(),
)
def test_a_table_join_resumes_from_its_snapshot(
    join_type: str, event_time: bool, codegen: bool, data: st.DataObject
) -> None:
    config = table_join_config(
        join_type,  # type: ignore[arg-type]
        key_of,
        value_func=row_value,
        timestamp=ts_of if event_time else None,
    )

    def build(previous: TableJoinOperator | None) -> TableJoinOperator:
        return TableJoinOperator(config.build(inline=codegen, codegen=codegen), event_time=event_time)

    steps = support.plan_steps(data.draw(st.lists(actions, max_size=12), label="plan"), observed)
    cut = data.draw(st.integers(0, len(steps)), label="cut")
    resumable = support.Resumable(build, TableJoinOperator.snapshot, TableJoinOperator.restore)
    support.check_resumes(resumable, steps, cut)
    taken = data.draw(st.sets(st.integers(0, len(steps))), label="changes taken after")
    restart = data.draw(st.none() | st.integers(0, len(steps)), label="restart after")
    support.check_changes(resumable, TableJoinOperator.snapshot_changes, steps, taken, restart)


def test_a_keyed_join_snapshot_holds_each_key_and_side_as_an_entry() -> None:
    join = JoinOperator(join_config("inner", key_func=key_of).build())
    a, b, c = Ev(1, 0.0, 1), Ev(1, 1.0, 2), Ev(2, 0.0, 3)
    now(join.on_batch(0, [a, b, c]))
    assert join.snapshot() == {
        "meta": (
            [(-float("inf"), -float("inf"), float("inf"), 0.0, -float("inf"))] * 2,
            [False, False],
            [3, 0],
            [True, False],
            0,
            (0, 0, 0, 0),
        ),
        ("key", 0, 1): [a, b],
        ("key", 0, 2): [c],
        "operator": "hash",
    }


def test_a_restored_join_probes_its_restored_buffer() -> None:
    config = join_config("inner", key_func=key_of)
    first = JoinOperator(config.build())
    now(first.on_batch(0, [Ev(1, 0.0, 1)]))
    second = JoinOperator(config.build())
    second.restore(first.snapshot())
    right = Ev(1, 0.0, 9)
    assert now(second.on_batch(1, [right])) == [(Ev(1, 0.0, 1), right)]
    assert second.details()["probes"] == 1.0
