"""A graph inside a service: one error from running(), readers that leave, push streams nobody
feeds, emits before a run and from other threads, and refusing what cannot run (trio, run() in a
running loop)."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest

from sage_streams import DataStream, LocalEnvironment, PipelineError, StreamError

# -- running() raises one PipelineError -------------------------------------------------------


def failing_at(bad: int) -> Callable[[int], int]:
    def check(x: int) -> int:
        if x == bad:
            raise ValueError(f"bad {x}")
        return x

    return check


async def test_a_live_reader_raising_the_graphs_error_is_not_a_second_error() -> None:
    env = LocalEnvironment(buffer_size=4, batch_size=1)
    numbers = env.create_stream("numbers")
    checked = numbers.map(failing_at(3), name="check")
    with pytest.raises(PipelineError) as info:
        async with env.running():
            reader = asyncio.ensure_future(checked.collect())
            for n in range(5):
                await numbers.emit(n)
            await reader
    assert type(info.value) is PipelineError
    assert info.value.operator == "check"
    assert info.value.item == 3
    assert isinstance(info.value.__cause__, ValueError)


def blocking_graph(env: LocalEnvironment) -> tuple[DataStream[Any], DataStream[Any]]:
    """Push stream ``bad`` fails on 0; ``held`` is read by a sink that never returns, so an emit
    into ``held`` waits until the graph stops."""
    bad = env.create_stream("bad")
    bad.map(failing_at(0), name="check")
    held = env.create_stream("held")

    async def stuck(_: int) -> None:
        await asyncio.Event().wait()

    held.sink(stuck, name="stuck")
    return bad, held


async def test_an_emit_that_sees_the_stop_first_is_part_of_the_one_pipeline_error() -> None:
    env = LocalEnvironment(buffer_size=2, batch_size=1)
    bad, held = blocking_graph(env)
    seen: list[BaseException] = []
    with pytest.raises(PipelineError) as info:
        async with env.running():
            for n in range(3):  # one in the sink, two fill the inbox
                await held.emit(n)
            await bad.emit(0)
            try:
                await held.emit(3)  # waits for room until the graph stops
            except StreamError as error:
                seen.append(error)
                raise
    assert type(info.value) is PipelineError
    assert info.value.operator == "check"
    (error,) = seen
    assert "its graph has stopped reading it" in str(error)
    assert error.__cause__ is info.value.__cause__
    assert isinstance(error.__cause__, ValueError)


async def test_an_error_of_the_block_itself_is_kept_beside_the_graphs() -> None:
    env = LocalEnvironment(buffer_size=2, batch_size=1)
    bad, held = blocking_graph(env)
    with pytest.raises(BaseExceptionGroup) as info:
        async with env.running():
            for n in range(3):
                await held.emit(n)
            await bad.emit(0)
            try:
                await held.emit(3)
            except StreamError:
                raise KeyError("the service's own bug") from None
    first, second = info.value.exceptions
    assert type(first) is PipelineError
    assert isinstance(first.__cause__, ValueError)
    assert type(second) is KeyError


# -- readers that never start detach ----------------------------------------------------------


def graph_with_a_sink(env: LocalEnvironment) -> tuple[DataStream[Any], DataStream[Any], list[int]]:
    source = env.create_stream("source")
    doubled = source.map(lambda x: x * 2, name="doubled")
    seen: list[int] = []
    source.sink(seen.append, name="tally")
    return source, doubled, seen


async def emit_many_and_leave(env: LocalEnvironment, source: DataStream[Any], count: int) -> None:
    """Emit ``count`` items and leave the block, failing rather than hanging if anything stalls."""
    async with asyncio.timeout(10):
        for n in range(count):
            await source.emit(n)


def cancel_before_it_runs(stream: DataStream[Any]) -> None:
    reader = asyncio.ensure_future(stream.collect())
    reader.cancel()


def close_before_it_runs(stream: DataStream[Any]) -> None:
    collecting = stream.collect()
    assert isinstance(collecting, Coroutine)
    collecting.close()


def drop_unawaited(stream: DataStream[Any]) -> None:
    with pytest.warns(RuntimeWarning, match=f"collect\\(\\) of stream {stream.name!r} was never awaited"):
        stream.collect()  # dropped at once: CPython frees it here


def drop_an_iterator_unread(stream: DataStream[Any]) -> None:
    aiter(stream)
    gc.collect()


@pytest.mark.parametrize(
    "abandon", [cancel_before_it_runs, close_before_it_runs, drop_unawaited, drop_an_iterator_unread]
)
async def test_a_reader_abandoned_before_it_ran_detaches(abandon: Callable[[DataStream[Any]], None]) -> None:
    env = LocalEnvironment(buffer_size=5, batch_size=2)
    source, doubled, seen = graph_with_a_sink(env)
    async with env.running():
        abandon(doubled)
        await emit_many_and_leave(env, source, 100)
    assert seen == list(range(100))
    assert env.metrics().operators["doubled"].items_out == 100


async def test_a_collect_awaited_later_reads_from_when_it_was_called() -> None:
    env = LocalEnvironment(buffer_size=50, batch_size=2)
    source, doubled, _ = graph_with_a_sink(env)
    async with env.running():
        collecting = doubled.collect()
        for n in range(10):
            await source.emit(n)
        await source.close()
        assert await collecting == [n * 2 for n in range(10)]


async def test_a_collect_cancelled_while_it_reads_detaches_and_the_others_go_on() -> None:
    env = LocalEnvironment(buffer_size=5, batch_size=2)
    source, doubled, seen = graph_with_a_sink(env)
    async with env.running():
        reader = asyncio.ensure_future(doubled.collect())
        await source.emit(0)
        await anyio.wait_all_tasks_blocked()  # the reader has taken 0 and waits for more
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        await emit_many_and_leave(env, source, 100)
    assert seen == [0, *range(100)]


# -- collect() and async for end with their own stream ----------------------------------------


async def test_collect_returns_when_its_stream_ends_though_another_push_stream_is_never_fed() -> None:
    env = LocalEnvironment(buffer_size=10, batch_size=4)
    fed = env.create_stream("fed")
    idle = env.create_stream("idle")
    idle_seen: list[int] = []
    idle.sink(idle_seen.append)
    finite_seen: list[int] = []
    env.from_collection(range(1000)).map(lambda x: x + 1).sink(finite_seen.append)

    async def feed() -> None:
        for n in range(30):
            await fed.emit(n)
        await fed.close()

    async with asyncio.timeout(10):
        result, _ = await asyncio.gather(fed.map(lambda x: -x).collect(), feed())
    assert result == [-n for n in range(30)]
    assert finite_seen == list(range(1, 1001))  # the rest of the graph drained
    assert idle_seen == []
    assert idle.closed
    with pytest.raises(StreamError, match="it is closed"):
        await idle.emit(1)


async def test_async_for_ends_with_its_stream_though_another_push_stream_is_never_fed() -> None:
    env = LocalEnvironment(buffer_size=10, batch_size=4)
    env.create_stream("idle").sink(lambda _: None)
    words = env.from_collection(["a", "b", "c"]).map(str.upper)
    async with asyncio.timeout(10):
        assert [word async for word in words] == ["A", "B", "C"]
    assert not env.is_running


async def test_async_for_over_a_windowed_stream_yields_every_window_past_the_watermarks() -> None:
    env = LocalEnvironment(batch_size=2)
    events = env.from_collection([{"timestamp": t} for t in range(10)])
    starts = events.window("tumbling", size=2).process(lambda window, state: window.start_time)
    assert [start async for start in starts] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert await starts.collect() == [0.0, 2.0, 4.0, 6.0, 8.0]


# -- emit before a run ----------------------------------------------------------------------


async def test_emitting_past_the_buffer_of_a_graph_that_is_not_running_is_refused() -> None:
    env = LocalEnvironment(buffer_size=10)
    numbers = env.create_stream("numbers")
    for n in range(10):
        await numbers.emit(n)
    with pytest.raises(StreamError, match=r"start the graph first \(async with env.running\(\)"):
        await numbers.emit(10)
    await numbers.close()
    assert await numbers.map(lambda x: x * 10).collect() == [n * 10 for n in range(10)]


async def test_an_emit_waits_for_a_run_that_is_starting() -> None:
    env = LocalEnvironment(buffer_size=10, batch_size=4)
    numbers = env.create_stream("numbers")
    squares = numbers.map(lambda x: x * x)

    async def feed() -> None:
        for n in range(35):
            await numbers.emit(n)
        await numbers.close()

    async with asyncio.timeout(10):
        _, result = await asyncio.gather(feed(), squares.collect())
    assert result == [n * n for n in range(35)]


# -- only on asyncio --------------------------------------------------------------------------


def test_every_entry_point_refuses_trio_at_once() -> None:
    async def main() -> list[str]:
        messages: list[str] = []
        env = LocalEnvironment()
        pushed = env.create_stream("pushed")
        doubled = env.from_collection([1, 2]).map(lambda x: x * 2)

        async def run_block() -> None:
            async with env.running():
                pass

        async def iterate() -> None:
            async for _ in doubled:
                pass

        for attempt in (env.execute, run_block, doubled.collect, iterate, lambda: pushed.emit(1)):
            with pytest.raises(StreamError) as info:
                await attempt()
            messages.append(str(info.value))
        with pytest.raises(RuntimeError, match="running in this thread \\(trio\\)"):
            env.run()
        assert not env.is_running
        return messages

    messages = anyio.run(main, backend="trio")
    assert [message.split(" was called")[0] for message in messages] == [
        "execute()",
        "env.running()",
        "collect()",
        "async for",
        "emit()",
    ]
    assert all("under trio, but sage_streams runs on asyncio" in message for message in messages)


async def test_run_inside_a_running_loop_is_one_clear_error_without_warnings() -> None:
    env = LocalEnvironment()
    env.from_collection([1]).sink(lambda _: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match=r"use await env.execute\(\) instead") as info:
            env.run()
        gc.collect()
    assert caught == []
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert not env.is_running
    await env.execute()  # the graph was left as it was


def test_run_from_synchronous_code_still_runs() -> None:
    env = LocalEnvironment()
    seen: list[int] = []
    env.from_collection([1, 2]).sink(seen.append)
    env.run()
    assert seen == [1, 2]


# -- other threads ----------------------------------------------------------------------------


async def test_emit_close_and_collect_from_another_thread_are_refused_clearly() -> None:
    env = LocalEnvironment()
    numbers = env.create_stream("numbers")
    doubled = numbers.map(lambda x: x * 2)

    def in_a_thread(call: Callable[[], Coroutine[Any, Any, Any]]) -> str:
        try:
            asyncio.run(call())
        except StreamError as error:
            return str(error)
        return "no error"

    async def collect_there() -> list[int]:
        return await doubled.collect()

    async with env.running():
        reader = asyncio.ensure_future(doubled.collect())
        for call in (lambda: numbers.emit(1), numbers.close, collect_there):
            message = await asyncio.to_thread(in_a_thread, call)
            assert "from another thread or event loop than the one running the graph" in message
            assert "emit_threadsafe(item)" in message
        await numbers.emit(2)
    assert await reader == [4]


async def test_emit_threadsafe_hands_items_over_in_order_with_backpressure() -> None:
    env = LocalEnvironment(buffer_size=8, batch_size=3)
    numbers = env.create_stream("numbers")
    doubled = numbers.map(lambda x: x * 2)

    def produce() -> None:
        futures = [numbers.emit_threadsafe(n) for n in range(2000)]  # waits on none of them
        for future in futures:
            assert future.result(timeout=10) is None
        numbers.close_threadsafe().result(timeout=10)

    async with env.running():
        reader = asyncio.ensure_future(doubled.collect())
        producer = threading.Thread(target=produce)
        producer.start()
        async with asyncio.timeout(20):
            result = await reader
        await asyncio.to_thread(producer.join)
    assert result == [n * 2 for n in range(2000)]
    assert env.metrics().channels["numbers.inbox"].peak <= 8


async def test_emit_threadsafe_reports_what_emit_raised_through_its_future() -> None:
    env = LocalEnvironment()
    numbers = env.create_stream("numbers")
    numbers.sink(lambda _: None)
    with pytest.raises(StreamError, match="its graph is not running"):
        numbers.emit_threadsafe(1)
    async with env.running():
        await numbers.close()
        future = await asyncio.to_thread(numbers.emit_threadsafe, 1)
        with pytest.raises(StreamError, match="it is closed"):
            await asyncio.wrap_future(future)


@pytest.mark.parametrize("buffer_size", [1, 3, 64])
async def test_emit_threadsafe_from_several_threads_keeps_each_threads_order(buffer_size: int) -> None:
    env = LocalEnvironment(buffer_size=buffer_size, batch_size=4)
    pairs = env.create_stream("pairs")
    tally = pairs.map(lambda pair: pair)

    def produce(thread: int) -> None:
        futures = [pairs.emit_threadsafe((thread, n)) for n in range(300)]
        for future in futures:
            future.result(timeout=20)

    async with env.running():
        reader = asyncio.ensure_future(tally.collect())
        threads = [threading.Thread(target=produce, args=(t,)) for t in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            await asyncio.to_thread(thread.join)
    result = await reader
    assert sorted(result) == [(t, n) for t in range(3) for n in range(300)]
    for t in range(3):
        assert [n for thread, n in result if thread == t] == list(range(300))


# -- an emit that waited while its stream was closed -------------------------------------------


async def test_an_emit_waiting_for_room_when_its_stream_closes_is_refused_not_lost() -> None:
    env = LocalEnvironment(buffer_size=1, batch_size=1)
    numbers = env.create_stream("numbers")
    gate = asyncio.Event()
    seen: list[int] = []

    async def slow(n: int) -> None:
        await gate.wait()
        # A yield, not a wait: the woken emitter gets its turn before the chain reads on.
        await asyncio.sleep(0)
        seen.append(n)

    numbers.sink(slow)
    async with env.running():
        await numbers.emit(0)
        await anyio.wait_all_tasks_blocked()  # the sink has taken 0 and waits at the gate
        await numbers.emit(1)  # fills the inbox
        late = asyncio.ensure_future(numbers.emit(2))
        await anyio.wait_all_tasks_blocked()  # the third emit waits for room
        await numbers.close()  # the end goes in behind 1
        gate.set()
    with pytest.raises(StreamError, match="it is closed"):
        await late
    assert seen == [0, 1]


@pytest.mark.parametrize("seed", range(6))
async def test_every_accepted_emit_reaches_the_sink_when_the_block_ends_under_a_producer(seed: int) -> None:
    rng = random.Random(seed)
    env = LocalEnvironment(buffer_size=rng.randint(1, 4), batch_size=rng.randint(1, 3))
    numbers = env.create_stream("numbers")
    seen: list[int] = []
    pauses = [rng.randint(0, 2) for _ in range(1000)]

    async def sink(n: int) -> None:
        for _ in range(pauses[n]):
            await asyncio.sleep(0)  # a yield per pause: a consumer of random speed; not a wait
        seen.append(n)

    numbers.sink(sink)
    accepted: list[int] = []
    refused: list[StreamError] = []

    async def produce() -> None:
        for n in range(1000):
            try:
                await numbers.emit(n)
            except StreamError as error:
                refused.append(error)
                return
            accepted.append(n)

    async with env.running():
        producer = asyncio.ensure_future(produce())
        # Yields, not a wait: the block ends after a random number of the producer's turns.
        for _ in range(rng.randint(1, 60)):
            await asyncio.sleep(0)
    await producer
    assert seen == accepted
    assert len(refused) == (1 if len(accepted) < 1000 else 0)
