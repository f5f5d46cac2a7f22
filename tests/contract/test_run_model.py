"""The run model of CONTRACT section 2: building is lazy, running is async, every row of the table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import pytest
from aiostream import stream as aiostream_stream

from sage_streams import DataStream, LocalEnvironment, StreamError


async def test_building_is_lazy_nothing_runs_until_asked() -> None:
    calls: list[int] = []
    env = LocalEnvironment()
    env.from_collection([1, 2]).map(calls.append)
    assert calls == []
    await env.execute()
    assert calls == [1, 2]


async def test_push_stream_emit_close_and_collect() -> None:
    env = LocalEnvironment()
    numbers = env.create_stream("numbers")
    squares = numbers.map(lambda x: x * x)

    async def feed() -> None:
        for n in range(5):
            await numbers.emit(n)
        await numbers.close()

    result, _ = await asyncio.gather(squares.collect(), feed())
    assert result == [0, 1, 4, 9, 16]


async def test_emits_before_the_run_starts_are_kept() -> None:
    env = LocalEnvironment()
    words = env.create_stream("words")
    for word in ("a", "b"):
        await words.emit(word)
    await words.close()
    assert await words.map(str.upper).collect() == ["A", "B"]


async def test_pull_stream_over_an_iterable() -> None:
    env = LocalEnvironment()
    assert await env.create_stream("s", source=iter("abc")).collect() == ["a", "b", "c"]


async def test_pull_stream_over_an_async_iterable() -> None:
    async def numbers() -> AsyncIterator[int]:
        for n in range(3):
            await asyncio.sleep(0)  # a yield, so the source really suspends; not a wait
            yield n

    env = LocalEnvironment()
    assert await env.create_stream("s", source=numbers()).collect() == [0, 1, 2]


async def test_pull_stream_over_an_async_generator_function_is_called_per_run() -> None:
    async def numbers() -> AsyncIterator[int]:
        for n in range(3):
            yield n

    env = LocalEnvironment()
    stream = env.create_stream("s", source=numbers).map(lambda n: n + 1)
    assert await stream.collect() == [1, 2, 3]
    assert await stream.collect() == [1, 2, 3]


async def test_aiostream_streams_are_valid_sources() -> None:
    env = LocalEnvironment()
    source = aiostream_stream.range(4)
    assert await env.create_stream("s", source=source).map(lambda n: n * 10).collect() == [0, 10, 20, 30]


async def test_our_streams_are_async_iterables_for_aiostream() -> None:
    env = LocalEnvironment()
    ours = env.from_collection(range(5)).filter(lambda n: n % 2 == 0)
    assert await aiostream_stream.list(ours) == [0, 2, 4]


async def test_from_collection_is_a_finite_pull_stream_named_after_its_argument() -> None:
    env = LocalEnvironment()
    stream = env.from_collection([3, 1, 2], name="scores")
    assert stream.name == "scores"
    assert await stream.collect() == [3, 1, 2]
    assert env.from_collection([]).name == "collection"


def test_bad_sources_are_refused_when_the_graph_is_built() -> None:
    env = LocalEnvironment()
    with pytest.raises(TypeError, match="source of stream 's' must be an iterable"):
        env.create_stream("s", source=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="from_collection takes an iterable"):
        env.from_collection(42)  # type: ignore[arg-type]


async def test_unbound_datastream_runs_in_a_default_environment() -> None:
    stream = DataStream("stream1")
    assert stream.env.name == "default"
    doubled = stream.map(lambda x: 2 * x)
    await stream.emit(21)
    await stream.close()
    assert await doubled.collect() == [42]


async def test_execute_runs_every_sink_until_drained() -> None:
    seen: list[int] = []
    env = LocalEnvironment()
    source = env.from_collection(range(2000))
    source.filter(lambda x: x % 2 == 0).sink(seen.append)
    await env.execute()
    assert seen == list(range(0, 2000, 2))


async def test_async_sinks_are_awaited_in_order() -> None:
    seen: list[int] = []

    async def slow_sink(item: int) -> None:
        await asyncio.sleep(0)  # a yield per item: a sink that suspends; not a wait
        seen.append(item)

    env = LocalEnvironment()
    env.from_collection(range(50)).sink(slow_sink)
    await env.execute()
    assert seen == list(range(50))


async def test_sink_stream_carries_no_items_and_ends_when_the_sink_is_done() -> None:
    seen: list[int] = []
    env = LocalEnvironment()
    done = env.from_collection([1, 2]).sink(seen.append)
    assert await done.collect() == []
    assert seen == [1, 2]


async def test_async_for_runs_the_graph_and_its_sinks() -> None:
    seen: list[int] = []
    env = LocalEnvironment()
    source = env.from_collection(range(3000))
    source.sink(seen.append)
    evens = source.filter(lambda x: x % 2 == 0)
    assert [item async for item in evens] == list(range(0, 3000, 2))
    assert seen == list(range(3000))


async def test_breaking_out_of_async_for_stops_the_graph() -> None:
    env = LocalEnvironment(buffer_size=10, batch_size=4)
    numbers = env.from_collection(range(10**9))
    iterator = numbers.map(lambda x: x + 1).__aiter__()
    assert [await iterator.__anext__() for _ in range(3)] == [1, 2, 3]
    await iterator.aclose()  # type: ignore[attr-defined]
    assert not env.is_running


async def test_outputs_nobody_consumes_never_block() -> None:
    seen: list[int] = []
    env = LocalEnvironment(buffer_size=8, batch_size=4)
    source = env.from_collection(range(1000))
    source.map(lambda x: x * 2)  # dangling
    source.map(lambda x: x + 1).map(lambda x: x)  # dangling chain
    source.sink(seen.append)
    await asyncio.wait_for(env.execute(), 10)
    assert len(seen) == 1000


async def test_fan_out_gives_every_consumer_every_item() -> None:
    env = LocalEnvironment(buffer_size=16, batch_size=8)
    source = env.from_collection(range(500))
    left: list[int] = []
    right: list[int] = []
    source.map(lambda x: -x).sink(left.append)
    source.filter(lambda x: x % 5 == 0).sink(right.append)
    await env.execute()
    assert left == [-x for x in range(500)]
    assert right == list(range(0, 500, 5))


async def test_fan_out_of_a_push_stream() -> None:
    env = LocalEnvironment()
    events = env.create_stream("events")
    upper = events.map(str.upper)
    lengths = events.map(len)

    async def feed() -> None:
        for word in ("ab", "c"):
            await events.emit(word)
        await events.close()

    async with env.running():
        readers = asyncio.gather(upper.collect(), lengths.collect())
        await feed()
        assert await readers == [["AB", "C"], [2, 1]]


async def test_running_block_feeds_a_live_pipeline_and_drains_on_exit() -> None:
    seen: list[str] = []
    env = LocalEnvironment()
    requests = env.create_stream("requests")
    requests.map(str.strip).sink(seen.append)
    async with env.running():
        assert env.is_running
        await requests.emit(" a ")
        await requests.emit("b ")
    assert not env.is_running
    assert seen == ["a", "b"]
    assert requests.closed


async def test_live_reader_inside_running_sees_items_from_when_it_starts() -> None:
    env = LocalEnvironment()
    ticks = env.create_stream("ticks")
    doubled = ticks.map(lambda x: 2 * x)
    async with env.running():
        reader = asyncio.create_task(doubled.collect())
        await anyio.wait_all_tasks_blocked()  # the reader is attached and waits
        for n in range(3):
            await ticks.emit(n)
        await ticks.close()
        assert await reader == [0, 2, 4]


async def test_live_reader_of_a_stream_in_the_middle_of_a_fused_chain() -> None:
    seen: list[int] = []
    env = LocalEnvironment()
    ticks = env.create_stream("ticks")
    middle = ticks.map(lambda x: x + 1)
    middle.map(lambda x: x * 10).sink(seen.append)
    async with env.running():
        reader = asyncio.create_task(middle.collect())
        await anyio.wait_all_tasks_blocked()  # the reader is attached and waits
        await ticks.emit(1)
        await ticks.emit(2)
        await ticks.close()
        assert await reader == [2, 3]
    assert seen == [20, 30]


def test_run_from_synchronous_code() -> None:
    seen: list[int] = []
    env = LocalEnvironment()
    env.from_collection([1, 2, 3]).map(lambda x: x * 3).sink(seen.append)
    env.run()
    assert seen == [3, 6, 9]


async def test_a_graph_cannot_run_twice_at_once_nor_grow_while_running() -> None:
    env = LocalEnvironment()
    stream = env.create_stream("s")
    async with env.running():
        with pytest.raises(StreamError, match="already running"):
            await env.execute()
        with pytest.raises(StreamError, match="while its graph is running"):
            stream.map(abs)


async def test_a_graph_runs_again_reading_its_collections_afresh() -> None:
    env = LocalEnvironment()
    stream = env.from_collection([1, 2]).map(lambda x: -x)
    assert await stream.collect() == [-1, -2]
    assert await stream.collect() == [-1, -2]


async def test_empty_environment_is_an_error() -> None:
    with pytest.raises(StreamError, match="has no streams to run"):
        await LocalEnvironment("empty").execute()


async def test_operator_names_are_unique_and_shown() -> None:
    env = LocalEnvironment()
    source = env.from_collection([1])
    first = source.map(abs)
    second = source.map(abs)
    named = source.map(abs, name="absolute")
    assert (first.name, second.name, named.name) == ("map(abs)", "map(abs)#2", "absolute")


async def test_a_live_collect_is_attached_when_called_not_when_first_scheduled() -> None:
    env = LocalEnvironment()
    ticks = env.create_stream("ticks")
    async with env.running():
        reader = asyncio.ensure_future(ticks.collect())
        await ticks.emit(-1)  # emitted before the reader task ever ran
        await ticks.close()
        assert await reader == [-1]
