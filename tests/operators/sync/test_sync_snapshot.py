"""Synchronization resumes from a snapshot exactly, by timestamp and by marker events: queues,
markers, held inputs and the unmatched side output come back as they were."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.operators.sync.config import sync_config
from sage_streams.operators.sync.operator import SyncOperator
from tests.operators.snapshot_support import Ev, Resumable, check_resumes, events, now, plan_steps, ts_of


def is_marker(item: Ev) -> bool:
    return item.v == 0


def observed(op: SyncOperator, out: Any) -> tuple[Any, ...]:
    unmatched = list(op.side["unmatched"])
    op.side["unmatched"].clear()
    wanted = [op.wants(index) for index in range(op.sync.n_inputs)]  # type: ignore[attr-defined]
    return list(out), unmatched, op.details(), wanted


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    sync_type=st.sampled_from(["timestamp", "event"]),
    inputs=st.integers(2, 3),
    ordered=st.booleans(),
    data=st.data(),
)
def test_a_synchronizer_resumes_from_its_snapshot(
    sync_type: str, inputs: int, ordered: bool, data: st.DataObject
) -> None:
    marker = is_marker if sync_type == "event" else None
    config = sync_config(inputs, sync_type, 0.5, timestamp=ts_of, sync_event=marker, max_buffered=4)

    def build(previous: SyncOperator | None) -> SyncOperator:
        return SyncOperator(config.build())

    items = st.lists(events, max_size=6).map(lambda batch: sorted(batch, key=ts_of) if ordered else batch)
    actions = st.one_of(
        st.tuples(st.just("batch"), st.integers(0, inputs - 1), items),
        st.tuples(st.just("end"), st.integers(0, inputs - 1)),
    )
    steps = plan_steps(data.draw(st.lists(actions, max_size=12), label="plan"), observed)
    cut = data.draw(st.integers(0, len(steps)), label="cut")
    check_resumes(Resumable(build, SyncOperator.snapshot, SyncOperator.restore), steps, cut)


def test_an_event_sync_snapshot_holds_each_input_and_the_markers() -> None:
    op = SyncOperator(sync_config(2, "event", sync_event=is_marker).build())
    a, marker, b = Ev(1, 0.0, 1), Ev(1, 0.0, 0), Ev(1, 0.0, 2)
    now(op.on_batch(0, [a, marker, b]))
    assert op.snapshot() == {
        "meta": ([False, False], [True, False]),
        ("collected", 0): [a],
        ("waiting", 0): [(False, b)],
        ("collected", 1): [],
        ("waiting", 1): [],
        "operator": 0,
    }
