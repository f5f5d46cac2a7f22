"""Window operators resume from a snapshot exactly: event and processing time, item lists and
accumulators, allowed lateness, idle inputs; and a snapshot is plain data that stays as taken."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.errors import CheckpointError
from sage_streams.operators.windows.config import (
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    WindowConfig,
)
from sage_streams.operators.windows.contents import Accumulators
from sage_streams.operators.windows.operator import WindowAggregate, WindowOperator
from tests.operators.snapshot_support import (
    Ev,
    Resumable,
    StepClock,
    check_resumes,
    events,
    key_of,
    now,
    plan_steps,
    ts_of,
)

Step = Callable[[WindowOperator], Any]


def add_value(total: int, item: Ev) -> int:
    return total + item.v


def collect(values: list[int], item: Ev) -> list[int]:
    values.append(item.v)  # in place: the snapshot must copy it
    return values


def concat(earlier: list[int], later: list[int]) -> list[int]:
    return earlier + later


def plus(earlier: int, later: int) -> int:
    return earlier + later


ACCUMULATORS = {
    "items": None,
    "sum": Accumulators(add_value, 0, plus),
    "list": Accumulators(collect, list, concat),
}
CONFIGS: dict[str, WindowConfig] = {
    "tumbling": TumblingWindows(4.0),
    "sliding": SlidingWindows(6.0, 2.0),
    "session": SessionWindows(3.0),
}


def seen(windows: Any) -> list[Any]:
    """Fired windows as values, copied as they are now (an accumulator may change later)."""
    rows = []
    for window in windows:
        if isinstance(window, WindowAggregate):
            contents: Any = copy.deepcopy(window.value)
        else:
            contents = [list(items) for items in window]
        rows.append((window.key, window.start_time, window.end_time, window.refire, contents))
    return rows


def observed(op: WindowOperator, out: Any) -> tuple[Any, ...]:
    late = list(op.side["late"])
    op.side["late"].clear()
    timer = op.next_timer()
    wall_timer = None if timer is None else timer + op.clock.time() - op.clock.now()
    return seen(out), late, op.details(), wall_timer


def tick(index: None, seconds: float) -> Step:
    def step(op: WindowOperator) -> tuple[Any, ...]:
        clock = op.clock
        assert isinstance(clock, StepClock)
        clock.reading += seconds
        timer = op.next_timer()
        out = now(op.on_timer(clock.now())) if timer is not None and timer <= clock.now() else []
        return observed(op, out)

    return step


def actions(inputs: int) -> st.SearchStrategy[tuple[Any, ...]]:
    index = st.integers(0, inputs - 1)
    return st.one_of(
        st.tuples(st.just("batch"), index, st.lists(events, max_size=6)),
        st.tuples(st.just("watermark"), index, st.integers(0, 40).map(lambda t: t / 2)),
        st.tuples(st.just("end"), index),
        st.tuples(st.just("tick"), st.none(), st.sampled_from([0.5, 1.0, 3.0])),
    )


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(
    shape=st.sampled_from(sorted(CONFIGS)),
    contents=st.sampled_from(sorted(ACCUMULATORS)),
    inputs=st.integers(1, 2),
    lateness=st.sampled_from([0.0, 3.0, 8.0]),
    delay=st.sampled_from([0.0, 1.0]),
    time=st.sampled_from(["event", "processing", "idle"]),
    keyed=st.booleans(),
    codegen=st.booleans(),
    data=st.data(),
)
def test_a_window_operator_resumes_from_its_snapshot(
    shape: str,
    contents: str,
    inputs: int,
    lateness: float,
    delay: float,
    time: str,
    keyed: bool,
    codegen: bool,
    data: st.DataObject,
) -> None:
    accumulators = ACCUMULATORS[contents]

    def build(previous: WindowOperator | None) -> WindowOperator:
        clock = StepClock()
        if previous is not None:
            assert isinstance(previous.clock, StepClock)
            clock = previous.clock.restarted()
        compiled = accumulators.compiled(True, codegen) if accumulators is not None else None
        return WindowOperator(
            [f"input{i}" for i in range(inputs)],
            CONFIGS[shape].build(
                inputs=inputs, allowed_lateness=lateness, accumulators=compiled, codegen=codegen
            ),
            key_func=key_of if keyed else None,
            timestamp=ts_of,
            out_of_orderness=delay,
            clock=clock,
            processing_time=time == "processing",
            idle_timeout=5.0 if time == "idle" else None,
            aggregated=compiled is not None,
            inline=codegen,
        )

    if shape == "session" and time == "processing":
        # Refused, not restored wrong: a restored session could end earlier than the one it
        # stands for (found here; see WindowOperator.snapshot).
        with pytest.raises(CheckpointError, match="session windows in processing time"):
            WindowOperator.snapshot(build(None))
        return
    plan = data.draw(st.lists(actions(inputs), max_size=14), label="plan")
    steps = plan_steps(plan, observed, {"tick": tick})
    cut = data.draw(st.integers(0, len(steps)), label="cut")
    resumable = Resumable(build, WindowOperator.snapshot, WindowOperator.restore)
    check_resumes(resumable, steps, cut)


def kept_tumbling() -> WindowOperator:
    """Keyed tumbling windows of 4 s, kept 2 s for late items."""
    return WindowOperator(
        ["input0"],
        TumblingWindows(4.0).build(allowed_lateness=2.0),
        key_func=key_of,
        timestamp=ts_of,
        out_of_orderness=0.0,
        clock=StepClock(),
    )


def test_a_snapshot_holds_windows_as_lists_and_keys_as_entries() -> None:
    op = kept_tumbling()
    a, b, c = Ev(1, 1.0, 5), Ev(2, 2.0, 6), Ev(1, 5.0, 7)
    now(op.on_batch(0, [a, b, c]))  # [0, 4) fires at 5 and is kept until 6
    assert op.snapshot() == {
        "meta": (2, 0, 2, ([], [])),
        ("key", 1): [0, [[0.0, 4.0, 0, [[a]], True, False, True], [4.0, 8.0, 1, [[c]], False, True, False]]],
        ("key", 2): [1, [[0.0, 4.0, 0, [[b]], True, False, True]]],
        "operator": ([5.0], 5.0, [False], 5.0, 0, []),
    }


def test_a_restored_operator_refires_a_kept_window_and_drops_it_on_time() -> None:
    first = kept_tumbling()
    now(first.on_batch(0, [Ev(1, 1.0, 5), Ev(1, 5.0, 7)]))
    second = kept_tumbling()
    second.restore(first.snapshot())
    refired = now(second.on_batch(0, [Ev(1, 3.0, 8)]))
    assert seen(refired) == [(1, 0.0, 4.0, True, [[Ev(1, 1.0, 5), Ev(1, 3.0, 8)]])]
    assert seen(now(second.on_watermark(0, 6.0))) == []
    assert second.details()["open_windows"] == 1.0
    assert seen(now(second.on_finish())) == [(1, 4.0, 8.0, False, [[Ev(1, 5.0, 7)]])]


def test_session_windows_in_processing_time_are_refused_by_a_checkpoint() -> None:
    """Not restored wrong: a restored session could end earlier than the one it stands for
    (the property above found: items at 0, 0.5 and, after the restore, 1.0 s ended the
    session at 1003.5 instead of 1004.0 with a gap of 3)."""
    operator = WindowOperator(
        ["input0"],
        SessionWindows(3.0).build(),
        key_func=None,
        timestamp=ts_of,
        out_of_orderness=0.0,
        clock=StepClock(),
        processing_time=True,
    )
    now(operator.on_batch(0, [Ev(0, 0.0, 1)]))
    with pytest.raises(
        CheckpointError, match="session windows in processing time cannot be checkpointed yet"
    ):
        operator.snapshot()
