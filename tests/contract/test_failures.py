"""CONTRACT section 7: a failure anywhere ends the graph with a PipelineError naming the operator,
and nothing is left running, whatever the way it ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from sage_streams import LocalEnvironment, PipelineError, StreamError
from sage_streams.testing import leftover_tasks


class Boom(Exception):
    pass


def explode_on(bad: int):  # type: ignore[no-untyped-def]
    def check(x: int) -> int:
        if x == bad:
            raise Boom(f"bad item {x}")
        return x

    check.__name__ = "check"
    return check


async def test_user_function_error_names_operator_and_item() -> None:
    env = LocalEnvironment("orders")
    env.from_collection(range(10)).map(lambda x: x + 1).map(explode_on(5)).sink(lambda x: None)
    with pytest.raises(PipelineError) as caught:
        await env.execute()
    error = caught.value
    assert str(error) == "pipeline 'orders' failed: operator 'map(check)' failed on item 5: Boom: bad item 5"
    assert isinstance(error.__cause__, Boom)
    assert error.errors == [error.__cause__]
    assert (error.operator, error.item) == ("map(check)", 5)
    assert "sage_streams: raised in operator 'map(check)' on item 5" in error.__cause__.__notes__


async def test_async_user_function_error_is_attributed_too() -> None:
    async def validate(x: int) -> int:
        await asyncio.sleep(0)  # a yield, so the function really suspends; not a wait
        if x == 3:
            raise ValueError("three")
        return x

    env = LocalEnvironment()
    stream = env.from_collection(range(5)).filter(lambda x: x > 0).map(validate)
    with pytest.raises(
        PipelineError, match=r"operator 'map\(validate\)' failed on item 3: ValueError: three"
    ):
        await stream.collect()


@pytest.mark.parametrize("kind", ["filter", "flat_map", "key_by"])
async def test_each_step_kind_attributes_its_errors(kind: str) -> None:
    def bad(x: int) -> object:
        if x == 2:
            raise Boom("no")
        return [x] if kind == "flat_map" else x

    env = LocalEnvironment()
    stream = getattr(env.from_collection([1, 2, 3]), kind)(bad, name="step")
    with pytest.raises(PipelineError) as caught:
        await stream.collect()
    assert (caught.value.operator, caught.value.item) == ("step", 2)


async def test_unhashable_key_is_an_error_of_its_item() -> None:
    env = LocalEnvironment()
    stream = env.from_collection([{"k": 1}, {"k": [1]}]).key_by(lambda d: d["k"], name="by_k")
    with pytest.raises(PipelineError, match=r"operator 'by_k' failed on item \{'k': \[1\]\}: TypeError"):
        await stream.collect()


async def test_a_sync_source_that_raises() -> None:
    def numbers() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    env = LocalEnvironment()
    env.create_stream("disk", source=numbers()).sink(lambda x: None)
    with pytest.raises(PipelineError, match="operator 'disk' failed: OSError: disk gone") as caught:
        await env.execute()
    assert isinstance(caught.value.__cause__, OSError)


async def test_an_async_source_that_raises() -> None:
    async def feed() -> AsyncIterator[int]:
        yield 1
        raise ConnectionError("socket closed")

    env = LocalEnvironment()
    stream = env.create_stream("socket", source=feed).map(lambda x: x)
    with pytest.raises(PipelineError, match="operator 'socket' failed: ConnectionError: socket closed"):
        await stream.collect()


async def test_a_sink_that_raises() -> None:
    def store(x: int) -> None:
        if x == 7:
            raise RuntimeError("db down")

    env = LocalEnvironment()
    env.from_collection(range(10)).sink(store)
    with pytest.raises(
        PipelineError, match=r"operator 'sink\(store\)' failed on item 7: RuntimeError: db down"
    ):
        await env.execute()


async def test_failure_in_one_branch_cancels_the_others() -> None:
    env = LocalEnvironment()
    endless = env.create_stream("endless")  # never closed: only cancellation ends it
    endless.sink(print)
    env.from_collection([1]).map(explode_on(1), name="bad")
    with pytest.raises(PipelineError, match="operator 'bad' failed"):
        await asyncio.wait_for(env.execute(), 5)
    assert not env.is_running
    with pytest.raises(StreamError, match="its graph has stopped reading it"):
        await endless.emit(1)


async def test_failure_during_async_for_raises_from_the_loop() -> None:
    env = LocalEnvironment()
    stream = env.from_collection(range(100)).map(explode_on(50))
    seen = []
    with pytest.raises(PipelineError, match="failed on item 50"):
        async for item in stream:
            seen.append(item)
    assert seen == list(range(len(seen)))


async def test_failure_elsewhere_while_reading_with_async_for() -> None:
    env = LocalEnvironment()
    quiet = env.create_stream("quiet")
    env.from_collection([0]).map(explode_on(0), name="bad")
    with pytest.raises(PipelineError, match="operator 'bad' failed"):
        async for _ in quiet:
            pass


async def test_cancelling_execute_from_outside_leaves_nothing_running() -> None:
    env = LocalEnvironment()
    forever = env.create_stream("forever")
    forever.map(str).sink(lambda x: None)
    task = asyncio.create_task(env.execute())
    await forever.emit(1)
    await anyio.wait_all_tasks_blocked()  # 1 has gone through; the graph waits for more
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftover_tasks() == set()
    assert not env.is_running


async def test_cancelling_a_collect_leaves_nothing_running() -> None:
    env = LocalEnvironment()
    stream = env.create_stream("forever").map(str)
    task = asyncio.create_task(stream.collect())
    await anyio.wait_all_tasks_blocked()  # the graph runs and waits for items
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftover_tasks() == set()


async def test_an_operator_task_cancelled_from_outside_fails_the_graph() -> None:
    env = LocalEnvironment()
    jobs = env.create_stream("jobs")
    jobs.map(str, name="render").sink(lambda x: None, name="store")
    run = asyncio.create_task(env.execute())
    await anyio.wait_all_tasks_blocked()  # the graph's tasks have started and wait for items
    (operator_task,) = [t for t in leftover_tasks() if t.get_name() == "jobs"]
    operator_task.cancel()
    with pytest.raises(
        PipelineError, match="operator 'jobs' failed: CancelledError: operator 'jobs' was cancelled"
    ):
        await run
    assert leftover_tasks() == set()


async def test_cancelling_the_running_block_cancels_the_graph() -> None:
    env = LocalEnvironment()
    env.create_stream("forever").sink(print)

    async def service() -> None:
        async with env.running():
            await asyncio.sleep(10)  # a long body, to be cancelled; if not, the test fails, not hangs

    task = asyncio.create_task(service())
    await anyio.wait_all_tasks_blocked()  # the block is in its body
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftover_tasks() == set()
    assert not env.is_running


async def test_graph_failure_interrupts_the_running_block() -> None:
    env = LocalEnvironment()
    numbers = env.create_stream("numbers")
    numbers.map(explode_on(2), name="check")
    reached_end = False
    with pytest.raises(PipelineError, match="operator 'check' failed on item 2"):
        async with env.running():
            await numbers.emit(1)
            await numbers.emit(2)
            await asyncio.sleep(10)  # a long body the failure must cut short; if not, the test fails
            reached_end = True
    assert not reached_end


async def test_error_in_the_running_block_cancels_the_graph_and_propagates() -> None:
    env = LocalEnvironment()
    env.create_stream("forever").sink(print)
    with pytest.raises(KeyError, match="mine"):
        async with env.running():
            raise KeyError("mine")
    assert not env.is_running


async def test_emitting_into_a_closed_push_stream_is_a_stream_error() -> None:
    env = LocalEnvironment()
    stream = env.create_stream("clicks")
    await stream.close()
    with pytest.raises(StreamError, match="cannot emit into stream 'clicks': it is closed"):
        await stream.emit(1)


async def test_emit_on_a_derived_stream_is_a_stream_error() -> None:
    env = LocalEnvironment()
    derived = env.from_collection([1]).map(abs)
    with pytest.raises(StreamError, match="not a push stream"):
        await derived.emit(1)


async def test_several_failures_are_all_reported_first_one_first() -> None:
    env = LocalEnvironment()
    gate = asyncio.Event()

    async def first(x: int) -> int:
        raise Boom("first")

    async def second(x: int) -> int:
        await gate.wait()
        return x

    env.from_collection([1]).map(first, name="a")
    env.from_collection([1]).map(second, name="b")
    with pytest.raises(PipelineError) as caught:
        await env.execute()
    assert caught.value.operator == "a"
    assert [type(e) for e in caught.value.errors] == [Boom]
