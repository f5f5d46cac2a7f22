"""Process operators resume from a snapshot exactly: a process function's unread items and a
batch process's slices still to go come back, with the StreamState they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.operators.process import BatchProcessOperator, ProcessOperator, StreamReader
from sage_streams.state import StreamState
from tests.operators.snapshot_support import Ev, Resumable, check_resumes, events, now


def read_some(readers: list[StreamReader], state: StreamState, *, most: int) -> list[Any]:
    """Reads at most ``most`` items of each reader, leaving the rest unread, and keeps a log."""
    out = []
    for reader in readers:
        for _ in range(min(most, len(reader))):
            item = reader.read()
            state.append("log", item.v)
            out.append((reader.name, item, state.increment("count")))
    return out


def totals(batch: list[Any], state: StreamState) -> list[Any]:
    state.append("sizes", len(batch))
    return [(item, state.increment(("total", item.k), item.v)) for item in batch]


@dataclass
class Process:
    """An operator and the StreamState it holds, snapshotted together as the runtime would."""

    op: Any

    def snapshot(self) -> dict[str, Any]:
        return {"op": self.op.snapshot(), "state": self.op.state.snapshot_entries()}

    def restore(self, entries: dict[str, Any]) -> None:
        self.op.restore(entries["op"])
        self.op.state.restore_entries(entries["state"])


def observed(process: Process, out: Any) -> tuple[Any, ...]:
    # state_bytes is an estimate that counts a list's spare capacity, which a copy trims.
    details = {name: value for name, value in process.op.details().items() if name != "state_bytes"}
    return list(out), details, process.op.state.snapshot()


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(inputs=st.integers(1, 2), most=st.integers(1, 3), data=st.data())
def test_a_process_operator_resumes_with_its_unread_items(
    inputs: int, most: int, data: st.DataObject
) -> None:
    def build(previous: Process | None) -> Process:
        names = [f"input{i}" for i in range(inputs)]
        return Process(ProcessOperator(read_some, names, StreamState(), {"most": most}, limit=1000))

    def batch(index: int, items: list[Ev]) -> Callable[[Process], Any]:
        return lambda p: observed(p, now(p.op.on_batch(index, items)))

    def idle(process: Process) -> Any:
        return observed(process, now(process.op.on_idle()))

    def finish(process: Process) -> Any:
        try:
            return observed(process, now(process.op.on_finish()))
        except Exception as exc:  # items left unread at the end: an error of those items
            return type(exc).__name__, repr(getattr(exc, "error", exc)), observed(process, [])

    actions = st.one_of(
        st.tuples(st.integers(0, inputs - 1), st.lists(events, max_size=5)).map(lambda a: batch(*a)),
        st.just(idle),
    )
    steps = [*data.draw(st.lists(actions, max_size=12), label="plan"), finish]
    cut = data.draw(st.integers(0, len(steps)), label="cut")
    check_resumes(Resumable(build, Process.snapshot, Process.restore), steps, cut)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 3), data=st.data())
def test_a_batch_process_operator_resumes_with_its_slices_to_go(size: int, data: st.DataObject) -> None:
    def build(previous: Process | None) -> Process:
        op = BatchProcessOperator(totals, StreamState(), {})
        op.slice_size = size
        return Process(op)

    def batch(index: int, items: list[Ev]) -> Callable[[Process], Any]:
        return lambda p: observed(p, now(p.op.on_batch(index, items)))

    def more(process: Process) -> Any:
        unfinished = process.op.unfinished()
        assert unfinished is not None
        return observed(process, now(process.op.on_batch(*unfinished)))

    batches = data.draw(st.lists(st.tuples(st.integers(0, 1), st.lists(events, max_size=8)), max_size=6))
    steps: list[Callable[[Process], Any]] = []
    for index, items in batches:
        steps.append(batch(index, items))
        steps += [more] * max(0, -(-len(items) // size) - 1)  # what the head hands back
    cut = data.draw(st.integers(0, len(steps)), label="cut")
    check_resumes(Resumable(build, Process.snapshot, Process.restore), steps, cut)


def test_a_process_snapshot_holds_each_readers_unread_items() -> None:
    op = ProcessOperator(read_some, ["a", "b"], StreamState(), {"most": 1}, limit=1000)
    items = [Ev(0, 0.0, 1), Ev(0, 1.0, 2), Ev(0, 2.0, 3)]
    now(op.on_batch(0, items[:2]))
    now(op.on_batch(0, items[2:]))
    now(op.on_idle())
    assert op.snapshot() == {"meta": False, ("unread", 0): items[1:], ("unread", 1): []}
