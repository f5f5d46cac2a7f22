"""ConnectedStreams through the runtime: process, readers, return conventions, environments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from sage_streams import (
    ConnectedStreams,
    DataStream,
    LocalEnvironment,
    NoDataError,
    PipelineError,
    StreamError,
    StreamReader,
    StreamState,
)


def test_reader_protocol() -> None:
    reader = StreamReader("clicks")
    assert not reader.has_data()
    with pytest.raises(NoDataError, match="stream 'clicks' has no data to read") as caught:
        reader.read()
    assert isinstance(caught.value, IndexError)
    reader._extend([1, 2, 3, 4])
    assert reader.has_data()
    assert reader.read() == 1
    assert next(iter(reader)) == 2
    assert reader.read_all() == [3, 4]
    assert reader.read_all() == []


def test_reader_keeps_order_across_batches_reads_and_put_backs() -> None:
    reader = StreamReader("clicks")
    first, second = [1, 2, 3], [4, 5]
    reader._extend(first)
    reader._extend([])
    reader._extend(second)
    assert len(reader) == 5
    assert [reader.read(), reader.read()] == [1, 2]
    assert reader.read_all() == [3, 4, 5]
    assert (first, second) == ([1, 2, 3], [4, 5])  # the batches are shared: never changed
    reader._put_back()  # a retry sees everything the call read, in order
    assert len(reader) == 5
    reader._taken.clear()
    reader._extend([6])
    assert reader.read() == 1
    assert list(reader) == [2, 3, 4, 5, 6]
    assert (len(reader), reader.has_data()) == (0, False)
    all_read = reader.read_all()
    assert all_read == []
    reader._extend(first)
    all_read = reader.read_all()
    all_read.append(99)  # the caller's own list, not the shared batch
    assert first == [1, 2, 3]


async def test_process_sees_one_reader_per_input_in_order_with_names() -> None:
    env = LocalEnvironment()
    left = env.from_collection([1, 2], name="left")
    right = env.from_collection(["a"], name="right")
    seen: list[list[str]] = []

    def merge(streams: list[StreamReader], state: StreamState) -> list[Any]:
        seen.append([reader.name for reader in streams])
        return [item for reader in streams for item in reader]

    result = await ConnectedStreams([left, right]).process(merge).collect()
    assert sorted(map(str, result)) == ["1", "2", "a"]
    assert all(names == ["left", "right"] for names in seen)


async def test_unread_items_stay_for_the_next_call() -> None:
    env = LocalEnvironment()
    numbers = env.create_stream("numbers")
    letters = env.create_stream("letters")

    def pairs(streams: list[StreamReader], state: StreamState) -> list[tuple[Any, Any]]:
        out = []
        while streams[0].has_data() and streams[1].has_data():
            out.append((streams[0].read(), streams[1].read()))
        return out

    zipped = ConnectedStreams([numbers, letters]).process(pairs)
    async with env.running():
        reader = asyncio.ensure_future(zipped.collect())
        for n in (1, 2, 3):
            await numbers.emit(n)
        await anyio.wait_all_tasks_blocked()  # the zip has been called with numbers alone
        for letter in "abc":
            await letters.emit(letter)
    assert await reader == [(1, "a"), (2, "b"), (3, "c")]


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (None, []),
        ([1, 2], [1, 2]),
        ((1, 2), [1, 2]),
        ("text", ["text"]),
        ({"a": 1}, [{"a": 1}]),
        ({1, 2}, [{1, 2}]),
        (7, [7]),
    ],
)
async def test_return_conventions(returned: Any, expected: list[Any]) -> None:
    env = LocalEnvironment()
    a = env.from_collection([0], name="a")
    b = env.from_collection([], name="b")

    def fn(streams: list[StreamReader], state: StreamState) -> Any:
        for reader in streams:
            reader.read_all()
        return returned

    assert await ConnectedStreams([a, b]).process(fn).collect() == expected


async def test_generators_async_functions_and_kwargs() -> None:
    env = LocalEnvironment()
    a = env.from_collection([1, 2], name="a")
    b = env.from_collection([3], name="b")

    def gen(streams: list[StreamReader], state: StreamState, *, factor: int) -> Iterator[int]:
        for reader in streams:
            for item in reader:
                yield item * factor

    async def coro(streams: list[StreamReader], state: StreamState, *, factor: int) -> list[int]:
        await asyncio.sleep(0)  # a yield, so the coroutine really suspends; not a wait
        return [item * factor for reader in streams for item in reader]

    async def agen(streams: list[StreamReader], state: StreamState, *, factor: int) -> AsyncIterator[int]:
        for reader in streams:
            for item in reader:
                yield item * factor

    connected = ConnectedStreams([a, b])
    outputs = [connected.process(fn, factor=10) for fn in (gen, coro, agen)]
    results = [sorted(await out.collect()) for out in outputs]
    assert results == [[10, 20, 30]] * 3


async def test_items_left_unread_at_the_end_are_an_error_not_a_silent_drop() -> None:
    env = LocalEnvironment()
    a = env.from_collection([1, 2, 3], name="a")
    b = env.from_collection(["x"], name="b")

    def only_b(streams: list[StreamReader], state: StreamState) -> list[Any]:
        return streams[1].read_all()

    stream = ConnectedStreams([a, b]).process(only_b, name="only_b")
    with pytest.raises(
        PipelineError, match=r"operator 'only_b' failed on item \[1, 2, 3\]: StreamError: .*unread.*3 of 'a'"
    ):
        await stream.collect()


async def test_a_process_function_that_never_reads_fails_instead_of_hanging() -> None:
    env = LocalEnvironment(buffer_size=4, batch_size=2)
    a = env.from_collection(range(100), name="a")
    b = env.from_collection([], name="b")  # ends at once: only "a" is left, and it is never read
    stream = ConnectedStreams([a, b]).process(lambda streams, state: None, name="lazy")
    with pytest.raises(
        PipelineError, match="operator 'lazy' failed: StreamError: the process function leaves"
    ):
        await asyncio.wait_for(stream.collect(), 5)


async def test_an_operator_waiting_on_an_open_input_can_be_cancelled() -> None:
    env = LocalEnvironment(buffer_size=4, batch_size=2)
    a = env.from_collection(range(100), name="a")
    b = env.create_stream("b")  # open: the operator rightly waits for it, and must stay cancellable
    stream = ConnectedStreams([a, b]).process(lambda streams, state: None)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stream.collect(), 0.05)


async def test_user_error_in_process_names_the_operator() -> None:
    env = LocalEnvironment()
    a = env.from_collection([1], name="a")
    b = env.from_collection([2], name="b")

    def broken(streams: list[StreamReader], state: StreamState) -> None:
        raise KeyError("missing")

    with pytest.raises(PipelineError, match=r"operator 'process\(broken\)' failed: KeyError") as caught:
        await ConnectedStreams([a, b]).process(broken).collect()
    assert isinstance(caught.value.__cause__, KeyError)


async def test_state_is_shared_by_every_operator_it_is_handed_to() -> None:
    env = LocalEnvironment()
    a = env.from_collection([1, 2], name="a")
    b = env.from_collection([3], name="b")
    c = env.from_collection([4, 5, 6], name="c")
    state = StreamState("totals")

    def count(streams: list[StreamReader], state: StreamState) -> None:
        for reader in streams:
            for _ in reader:
                state.increment("seen")

    ConnectedStreams([a, b], state=state).process(count)
    ConnectedStreams([b, c], state=state).process(count)
    await env.execute()
    assert state.get("seen") == 3 + 4


async def test_metrics_report_the_size_of_every_shared_state() -> None:
    env = LocalEnvironment()
    a, b = env.from_collection(["x" * 1000], name="a"), env.from_collection([], name="b")
    kept = StreamState("kept")

    def keep(streams: list[StreamReader], state: StreamState) -> None:
        for reader in streams:
            for item in reader:
                state.append("items", item)

    ConnectedStreams([a, b], state=kept).process(keep)
    ConnectedStreams([a, b], state=kept).process(keep)  # the same state: reported once
    ConnectedStreams([a, b]).process(keep)  # its own state, also named "state"
    await env.execute()
    states = env.metrics().states
    assert set(states) == {"kept", "state"}
    assert states["kept"] == kept.size_bytes()
    assert states["kept"] > 1000  # the same 1,000-character string twice, counted once


async def test_each_connected_streams_has_its_own_state_by_default() -> None:
    env = LocalEnvironment()
    a, b = env.from_collection([1]), env.from_collection([2])
    first, second = ConnectedStreams([a, b]), ConnectedStreams([a, b])
    assert isinstance(first.state, StreamState)
    assert first.state is not second.state


async def test_connect_method_and_metrics_details() -> None:
    env = LocalEnvironment()
    a = env.from_collection([1, 2, 3], name="a")
    b = env.from_collection([4], name="b")
    merged = a.connect(b).process(lambda streams, state: [x for r in streams for x in r], name="merge")
    assert sorted(await merged.collect()) == [1, 2, 3, 4]
    metrics = env.metrics().operators["merge"]
    assert (metrics.items_in, metrics.items_out) == (4, 4)
    assert metrics.details["unread[a]"] == 0
    assert metrics.details["state_bytes"] > 0


async def test_unbound_datastreams_join_the_environment_they_are_connected_to() -> None:
    env = LocalEnvironment("service")
    bound = env.from_collection([1], name="bound")
    free = DataStream("free")
    connected = ConnectedStreams([bound, free])
    assert free.env is env
    merged = connected.process(lambda streams, state: [x for r in streams for x in r])

    async def feed() -> None:
        await free.emit(2)
        await free.close()

    result, _ = await asyncio.gather(merged.collect(), feed())
    assert sorted(result) == [1, 2]


async def test_two_unbound_datastreams_share_one_default_environment() -> None:
    first, second = DataStream("same"), DataStream("same")
    connected = ConnectedStreams([first, second])
    assert first.env is second.env
    assert (first.name, second.name) == ("same", "same#2")
    assert connected.env.name == "default"


def test_streams_of_two_environments_cannot_be_connected() -> None:
    one = LocalEnvironment("one").from_collection([1])
    two = LocalEnvironment("two").from_collection([2])
    with pytest.raises(StreamError, match=r"different environments \('one', 'two'\)"):
        ConnectedStreams([one, two])


@pytest.mark.parametrize("bad", [[], "ab", [1, 2]])
def test_connected_streams_needs_two_or_more_streams(bad: Any) -> None:
    streams = bad if bad != [] else [LocalEnvironment().from_collection([1])]
    with pytest.raises(TypeError, match="two or more DataStreams"):
        ConnectedStreams(streams)


async def test_configure_backpressure_bounds_every_input_channel() -> None:
    env = LocalEnvironment()
    a = env.from_collection(range(50), name="a")
    b = env.from_collection(range(50), name="b")
    connected = ConnectedStreams([a, b])
    merged = connected.process(lambda streams, state: [x for r in streams for x in r], name="m")
    assert connected.configure_backpressure(strategy="drop", buffer_size=5, timeout=None) is connected
    result = await merged.collect()
    channels = env.metrics().channels
    stats = [channels["a->m[0]"], channels["b->m[1]"]]
    assert [s.capacity for s in stats] == [5, 5]
    assert len(result) + sum(s.dropped for s in stats) == 100
    with pytest.raises(ValueError, match="unknown backpressure strategy 'fast'"):
        connected.configure_backpressure(strategy="fast")
    with pytest.raises(ValueError, match="buffer_size must be a positive int"):
        connected.configure_backpressure(buffer_size=0)
