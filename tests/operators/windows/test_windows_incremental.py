"""Incremental snapshots of window operators: the changes since the last snapshot, applied to
what a store held, give exactly the whole snapshot, however the operator went on in between."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.operators.windows.operator import WindowOperator
from tests.operators.snapshot_support import (
    Ev,
    Resumable,
    check_changes,
    now,
    plan_steps,
)
from tests.operators.windows.test_windows_snapshot import (
    ACCUMULATORS,
    CONFIGS,
    actions,
    builder,
    kept_tumbling,
    observed,
    tick,
    timers,
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(
    shape=st.sampled_from(sorted(CONFIGS)),
    contents=st.sampled_from(sorted(ACCUMULATORS)),
    inputs=st.integers(1, 2),
    lateness=st.sampled_from([0.0, 3.0]),
    time=st.sampled_from(["event", "processing"]),
    codegen=st.booleans(),
    data=st.data(),
)
def test_changes_applied_in_turn_equal_the_whole_snapshot(
    shape: str, contents: str, inputs: int, lateness: float, time: str, codegen: bool, data: st.DataObject
) -> None:
    build = builder(shape, contents, inputs=inputs, lateness=lateness, time=time, codegen=codegen)
    plan = data.draw(st.lists(actions(inputs), max_size=16), label="plan")
    steps = plan_steps(plan, observed, {"tick": tick, "timers": timers})
    taken = data.draw(st.sets(st.integers(0, len(steps))), label="changes taken after")
    restart = data.draw(st.none() | st.integers(0, len(steps)), label="restart after")
    resumable = Resumable(build, WindowOperator.snapshot, WindowOperator.restore)
    check_changes(resumable, WindowOperator.snapshot_changes, steps, taken, restart)


def test_the_changes_of_a_batch_are_the_keys_it_reached() -> None:
    op = kept_tumbling()
    now(op.on_batch(0, [Ev(k, 1.0, k) for k in range(1000)]))
    first, gone = op.snapshot_changes()
    assert (len(first), gone) == (1002, [])  # every key, "meta" and "operator"
    now(op.on_batch(0, [Ev(3, 2.0, 1), Ev(998, 3.0, 1), Ev(3, 3.5, 1)]))
    changed, gone = op.snapshot_changes()
    assert sorted(name for name in changed if isinstance(name, tuple)) == [("key", 3), ("key", 998)]
    assert (changed[("key", 3)][1][0][3], gone) == ([[Ev(3, 1.0, 3), Ev(3, 2.0, 1), Ev(3, 3.5, 1)]], [])
    assert op.snapshot_changes()[0].keys() == {"meta", "operator"}  # nothing since
    now(op.on_batch(0, [Ev(5, 12.0, 1)]))  # the watermark passes 4 + 2: every window fires and goes
    changed, gone = op.snapshot_changes()
    assert sorted(name for name in changed if isinstance(name, tuple)) == [("key", 5)]
    assert sorted(gone) == sorted(("key", k) for k in range(1000) if k != 5)
