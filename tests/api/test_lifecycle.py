"""``env.lifecycle``: BUILDING, then RUNNING, then how the run ended (FINISHED, FAILED,
CANCELLED), and again for every later run; what a running graph refuses."""

from __future__ import annotations

import asyncio

import pytest

from sage_streams import Lifecycle, LocalEnvironment, PipelineError, StreamError
from sage_streams.testing import leftover_tasks


def observed(env: LocalEnvironment, seen: list[Lifecycle]) -> None:
    """A graph whose map records the lifecycle each item sees, and fails on a ``0``."""

    def check(x: int) -> int:
        seen.append(env.lifecycle)
        return 10 // x

    env.from_collection([1, 2], name="numbers").map(check, name="check")


async def test_a_run_goes_from_building_through_running_to_finished() -> None:
    env = LocalEnvironment()
    seen: list[Lifecycle] = []
    observed(env, seen)
    assert env.lifecycle is Lifecycle.BUILDING
    assert not env.is_running
    await env.execute()
    assert seen == [Lifecycle.RUNNING, Lifecycle.RUNNING]
    assert env.lifecycle is Lifecycle.FINISHED
    assert not env.is_running


async def test_a_failed_run_is_failed_and_the_graph_may_run_again() -> None:
    env = LocalEnvironment()
    items = [1, 0]
    source = env.from_collection(items, name="numbers")
    source.map(lambda x: 10 // x, name="divide")
    with pytest.raises(PipelineError):
        await env.execute()
    assert env.lifecycle is Lifecycle.FAILED
    items[1] = 5  # the collection is read afresh on the next run
    await env.execute()
    assert env.lifecycle is Lifecycle.FINISHED
    assert env.metrics().operators["divide"].items_out == 2


async def test_leaving_an_async_for_cancels_the_run() -> None:
    env = LocalEnvironment(batch_size=1)
    iterator = aiter(env.from_collection(range(1000), name="numbers"))
    assert env.lifecycle is Lifecycle.BUILDING  # an iterator not yet read has started nothing
    assert [await anext(iterator) for _ in range(3)] == [0, 1, 2]
    assert env.lifecycle is Lifecycle.RUNNING
    await iterator.aclose()  # type: ignore[attr-defined]
    assert env.lifecycle is Lifecycle.CANCELLED
    assert not leftover_tasks()


async def test_a_run_cancelled_before_its_first_step_is_cancelled() -> None:
    env = LocalEnvironment()
    numbers = env.from_collection(range(10), name="numbers")
    run = env.spawn_with({}, "a test")  # what async for starts; cancelled before it ever runs
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert env.lifecycle is Lifecycle.CANCELLED
    assert await numbers.collect() == list(range(10))
    assert env.lifecycle is Lifecycle.FINISHED


async def test_running_blocks_end_finished_failed_or_cancelled() -> None:
    env = LocalEnvironment()
    pushed = env.create_stream("pushed")
    seen: list[int] = []
    pushed.map(lambda x: 10 // x, name="divide").sink(seen.append, name="keep")
    async with env.running():
        assert env.lifecycle is Lifecycle.RUNNING
        await pushed.emit(5)
    assert env.lifecycle is Lifecycle.FINISHED
    assert seen == [2]

    env = LocalEnvironment()
    env.create_stream("idle").sink(seen.append)
    with pytest.raises(KeyError):
        async with env.running():
            raise KeyError("the service's own bug")
    assert env.lifecycle is Lifecycle.CANCELLED

    env = LocalEnvironment()
    failing = env.create_stream("failing")
    failing.map(lambda x: 10 // x, name="divide")
    with pytest.raises(PipelineError):
        async with env.running():
            await failing.emit(0)
    assert env.lifecycle is Lifecycle.FAILED
    assert not leftover_tasks()


async def test_a_running_graph_refuses_to_grow_or_start_again() -> None:
    env = LocalEnvironment()
    pushed = env.create_stream("pushed")
    pushed.sink(print)
    async with env.running():
        with pytest.raises(StreamError, match="the graph of environment 'default' is already running"):
            await env.execute()
        with pytest.raises(StreamError, match="cannot add 'late' to environment 'default' while its graph"):
            env.create_stream("late")
        with pytest.raises(StreamError, match="cannot add 'map"):
            pushed.map(str)
        assert env.lifecycle is Lifecycle.RUNNING
    assert env.lifecycle is Lifecycle.FINISHED
    assert env.create_stream("late").name == "late"  # an ended graph may grow again


def test_lifecycle_states_in_order() -> None:
    assert [state.value for state in Lifecycle] == ["building", "running", "finished", "failed", "cancelled"]
