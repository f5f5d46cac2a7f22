"""Counters belong to a run: a second run of the same graph counts from zero."""

from __future__ import annotations

import pytest

from sage_streams import LocalEnvironment


async def test_a_second_identical_run_reports_its_own_counts_and_rate() -> None:
    env = LocalEnvironment(batch_size=7)
    got: list[int] = []
    env.from_collection(range(100), name="numbers").filter(lambda x: x % 3 == 0, name="thirds").sink(
        got.append, name="keep"
    )
    runs = []
    for _ in range(2):
        await env.execute()
        runs.append(env.metrics())
    assert got == [x for x in range(100) if x % 3 == 0] * 2
    for snapshot in runs:
        ops = snapshot.operators
        assert (ops["numbers"].items_in, ops["thirds"].items_in, ops["thirds"].items_out) == (100, 100, 34)
        assert ops["keep"].items_in == 34
        assert snapshot.elapsed > 0
        # The rate is this run's count over this run's time, not the counts of both runs.
        assert ops["thirds"].rate == pytest.approx(100 / snapshot.elapsed)


async def test_errors_and_dead_letters_are_counted_per_run() -> None:
    env = LocalEnvironment()
    stream = env.from_collection([1, 0, 2, 0], name="numbers")
    stream.on_error(lambda stream_id, error, context: "continue")
    stream.map(lambda x: 10 // x, name="divide").sink(lambda x: None, name="drop")
    for _ in range(2):
        await env.execute()
        divide = env.metrics().operators["divide"]
        assert (divide.items_in, divide.items_out, divide.errors, divide.dead_letters) == (4, 2, 2, 2)


def test_before_any_run_every_count_is_zero() -> None:
    env = LocalEnvironment()
    env.from_collection([1, 2], name="numbers").sink(lambda x: None, name="drop")
    ops = env.metrics().operators
    assert [(m.items_in, m.items_out, m.errors, m.rate) for m in ops.values()] == [(0, 0, 0, 0.0)] * 2


async def test_the_graph_holds_no_runtime_object_after_a_run() -> None:
    from sage_streams._graph.node import Node
    from sage_streams.channel import Receiver, Sender

    env = LocalEnvironment()
    clicks = env.create_stream("clicks")
    clicks.on_error(lambda stream_id, error, context: "continue")
    clicks.map(lambda x: 1 // x, name="invert").sink(lambda x: None, name="drop")
    clicks.errors().sink(lambda letter: None, name="letters")
    async with env.running():
        await clicks.emit(0)
        await clicks.emit(1)
    nodes = env._nodes
    assert {node.name for node in nodes} >= {"clicks", "invert", "drop", "letters"}
    for node in nodes:
        values = [getattr(node, slot) for slot in Node.__slots__]
        assert not any(isinstance(value, Sender | Receiver) for value in values), node
        assert all(isinstance(other, Node) for other in node.inputs), node
        assert not any(isinstance(value, int) and not isinstance(value, bool) for value in values), node
    assert env.metrics().operators["invert"].errors == 1  # the last run's, from its own counters
