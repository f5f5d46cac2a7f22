"""Bad input and faults: each reaches the handler as an error of its own item, the graph goes on
under ``"continue"``, and nothing is lost: delivered + dead letters = emitted."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from sage_streams import (
    ConnectedStreams,
    DataStream,
    DeadLetter,
    ErrorContext,
    LocalEnvironment,
    PipelineError,
    StreamError,
    StreamReader,
    StreamState,
    UnknownNameError,
    get_function,
    register_function,
)
from sage_streams.testing import leftover_tasks

Build = Callable[[LocalEnvironment, list[Any]], tuple[DataStream[Any], DataStream[DeadLetter]]]


@dataclass
class Case:
    """A graph, its input with some bad items, and what the handler must be told about them."""

    build: Build
    items: list[Any]
    bad: list[Any]
    message: str
    lists: bool = False
    """Whether a dead letter holds a list of items (what a failed process call read)."""


def single(make: Callable[[DataStream[Any]], DataStream[Any]]) -> Build:
    def build(env: LocalEnvironment, items: list[Any]) -> tuple[DataStream[Any], DataStream[DeadLetter]]:
        source = env.from_collection(items, name="in")
        source.on_error(continue_and_record)
        return make(source), source.errors()

    return build


def joined(env: LocalEnvironment, items: list[Any]) -> tuple[DataStream[Any], DataStream[DeadLetter]]:
    profiles = env.from_collection([{"user": u, "name": f"u{u}"} for u in range(3)], name="profiles")
    events = env.from_collection(items, name="in")
    connected = ConnectedStreams([profiles, events])
    connected.on_error(continue_and_record)
    pairs = connected.join("inner", key_func=lambda item: item["user"], name="join")
    return pairs.map(lambda pair: pair[1]), connected.errors()


def windowed(env: LocalEnvironment, items: list[Any]) -> tuple[DataStream[Any], DataStream[DeadLetter]]:
    source = env.from_collection(items, name="in")
    source.on_error(continue_and_record)
    windows = source.window("tumbling", 10, key_func=lambda item: item["user"], name="window")
    return windows.flat_map(lambda window: [item for stream in window for item in stream]), source.errors()


def synchronized(env: LocalEnvironment, items: list[Any]) -> tuple[DataStream[Any], DataStream[DeadLetter]]:
    clock = env.from_collection([{"timestamp": float(t)} for t in range(len(items))], name="ticks")
    connected = ConnectedStreams([env.from_collection(items, name="in"), clock])
    connected.on_error(continue_and_record)
    synced = connected.synchronize("timestamp", tolerance=0.5)
    # An item that found no partner is delivered too: it is not lost, it is unmatched.
    return synced.map(lambda pair: pair[0]), connected.errors()


def processed(fn: Callable[[Any], Any]) -> Build:
    def build(env: LocalEnvironment, items: list[Any]) -> tuple[DataStream[Any], DataStream[DeadLetter]]:
        connected = ConnectedStreams(
            [env.from_collection(items, name="in"), env.from_collection([], name="none")]
        )
        connected.on_error(continue_and_record)

        def each(streams: list[StreamReader], state: StreamState) -> list[Any]:
            out = []
            for item in streams[0]:
                out.append(fn(item))
            return out

        return connected.process(each, name="process"), connected.errors()

    return build


handled: list[tuple[str, str, Any]] = []


def continue_and_record(stream_id: str, error: BaseException, context: ErrorContext) -> str:
    handled.append((stream_id, f"{type(error).__name__}: {error}", context.item))
    return "continue"


async def async_double(item: dict[str, Any]) -> int:
    await asyncio.sleep(0)  # a yield, so the function really suspends; not a wait
    return int(item["value"]) * 2


def ok(user: Any, t: float = 1.0) -> dict[str, Any]:
    return {"user": user, "timestamp": t, "value": 1}


HUGE = {"user": 1, "timestamp": 1.0, "value": "x" * 5_000_000}

CASES = {
    "wrong type": Case(
        single(lambda s: s.map(lambda item: item["value"] + 1)),
        [ok(1), "oops", ok(2)],
        ["oops"],
        "TypeError: string indices must be integers",
    ),
    "missing key": Case(
        single(lambda s: s.map(lambda item: item["value"])),
        [ok(1), {"user": 2}, ok(3)],
        [{"user": 2}],
        "KeyError: 'value'",
    ),
    "join missing key": Case(joined, [ok(1), {"value": 3}, ok(2)], [{"value": 3}], "KeyError: 'user'"),
    "join None key": Case(
        joined, [ok(1), ok(None), ok(2)], [ok(None)], "ValueError: key function returned None"
    ),
    "join unhashable key": Case(
        joined, [ok(1), ok([1]), ok(2)], [ok([1])], "TypeError: key function returned an unhashable value [1]"
    ),
    "key_by unhashable key": Case(
        single(lambda s: s.key_by(lambda item: item["user"])),
        [ok(1), ok({}), ok(2)],
        [ok({})],
        "TypeError: unhashable type: 'dict'",
    ),
    "window unhashable key": Case(
        windowed, [ok(1), ok([2]), ok(2)], [ok([2])], "TypeError: unhashable type: 'list'"
    ),
    "window missing timestamp": Case(
        windowed,
        [ok(1), {"user": 1}, ok(2)],
        [{"user": 1}],
        "KeyError: \"item has no timestamp field 'timestamp'\"",
    ),
    "window NaN timestamp": Case(
        windowed,
        [ok(1), ok(1, math.nan), ok(2, 2.0)],
        [ok(1, math.nan)],
        "ValueError: timestamp must be finite, got nan",
    ),
    "window inf timestamp": Case(
        windowed,
        [ok(1), ok(1, math.inf), ok(2, 2.0)],
        [ok(1, math.inf)],
        "ValueError: timestamp must be finite, got inf",
    ),
    "window string timestamp": Case(
        windowed,
        [ok(1), ok(1, "noon"), ok(2, 2.0)],
        [ok(1, "noon")],
        "TypeError: timestamp must be a number or datetime, got 'noon'",
    ),
    "window mixed datetimes": Case(
        windowed,
        [
            ok(1, datetime(2026, 1, 1, tzinfo=UTC)),
            ok(1, datetime(2026, 1, 1)),
            ok(2, datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)),
        ],
        [ok(1, datetime(2026, 1, 1))],
        "ValueError: timestamps mix timezone-aware and naive datetimes",
    ),
    "sync NaN timestamp": Case(
        synchronized,
        [{"timestamp": 0.0}, {"timestamp": math.nan}, {"timestamp": 2.0}],
        [{"timestamp": math.nan}],
        "ValueError: timestamp must be finite, got nan",
    ),
    "sync function error": Case(
        processed(lambda item: 1 / item["value"]),
        [ok(1), {**ok(2), "value": 0}, ok(3)],
        [[ok(1), {**ok(2), "value": 0}]],  # what the failed call had read
        "ZeroDivisionError: division by zero",
        lists=True,
    ),
    "async function error": Case(
        single(lambda s: s.map(async_double)),
        [ok(1), {**ok(2), "value": "two"}, ok(3)],
        [{**ok(2), "value": "two"}],
        "ValueError: invalid literal for int() with base 10: 'two'",
    ),
    "huge item": Case(
        single(lambda s: s.map(lambda item: item["value"] / 2)),
        [ok(1), HUGE, ok(2)],
        [HUGE],
        "TypeError: unsupported operand type(s) for /: 'str' and 'int'",
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_bad_input_is_an_error_of_its_item_and_nothing_is_lost(case: Case) -> None:
    handled.clear()
    env = LocalEnvironment()
    main, errors = case.build(env, case.items)
    delivered: list[Any] = []
    letters: list[DeadLetter] = []
    main.sink(delivered.append)
    errors.sink(letters.append)
    await env.execute()
    assert [letter.item for letter in letters] == case.bad
    assert [item for _, _, item in handled] == case.bad
    assert all(message.startswith(case.message) for _, message, _ in handled), handled
    lost = sum(len(d.item) for d in letters) if case.lists else len(letters)
    assert len(delivered) + lost == len(case.items)


def test_messages_about_huge_items_stay_short() -> None:
    from sage_streams.errors import _short_repr

    assert len(_short_repr(HUGE)) == 200


async def test_a_sink_that_raises_loses_nothing() -> None:
    env = LocalEnvironment(batch_size=7)
    source = env.from_collection(range(100), name="n")
    source.on_error(lambda stream_id, error, context: "continue")
    stored: list[int] = []

    def store(x: int) -> None:
        if x % 9 == 0:
            raise ConnectionError(f"store down for {x}")
        stored.append(x)

    source.map(lambda x: x, name="id").sink(store, name="store")
    letters: list[DeadLetter] = []
    source.errors().sink(letters.append)
    await env.execute()
    assert stored == [x for x in range(100) if x % 9]
    assert [d.item for d in letters] == list(range(0, 100, 9))
    assert all(str(d.error) == f"store down for {d.item}" and d.operator == "store" for d in letters)


async def test_a_handler_that_raises_is_a_clear_error_and_nothing_keeps_running() -> None:
    env = LocalEnvironment()
    source = env.from_collection([1, 0, 2], name="n")

    def handler(stream_id: str, error: BaseException, context: ErrorContext) -> str:
        raise LookupError("handler lost its config")

    source.on_error(handler)
    with pytest.raises(
        PipelineError, match=r"operator 'inv' failed on item 0: LookupError: handler lost its config"
    ):
        await source.map(lambda x: 1 / x, name="inv").collect()
    assert not leftover_tasks()


async def test_a_consumer_100x_slower_keeps_memory_bounded() -> None:
    env = LocalEnvironment(buffer_size=50, batch_size=10)
    produced = 5_000
    source = env.from_collection(({"i": i} for i in range(produced)), name="fast")
    seen = 0

    async def slow(item: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen % 1000 == 1:
            # The consumer stalls until everything else is blocked: the producer has filled every
            # channel up to its bound and waits for room.
            await anyio.wait_all_tasks_blocked()

    connected = ConnectedStreams([source, env.from_collection([], name="idle")])
    connected.configure_backpressure("block", buffer_size=50)
    merged = connected.process(lambda streams, state: streams[0].read_all(), name="merge")
    merged.sink(slow, name="slow")
    await env.execute()
    assert seen == produced
    channels = env.metrics().channels
    assert 50 <= channels["fast->merge[0]"].peak <= 50 + 10  # filled to the bound, to within one batch
    assert all(stats.peak <= stats.capacity + 10 for stats in channels.values())


async def test_cancellation_in_the_middle_of_a_batch_is_never_swallowed() -> None:
    env = LocalEnvironment(batch_size=100)
    started = asyncio.Event()

    async def slow(x: int) -> int:
        if x == 50:
            started.set()
            await asyncio.sleep(3600)  # parks until the test cancels the run
        return x

    async def handler(stream_id: str, error: BaseException, context: ErrorContext) -> str:
        return "continue"  # must never see the cancellation

    source = env.from_collection(range(100), name="n")
    source.on_error(handler)
    task = asyncio.create_task(source.map(slow, name="slow").collect())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert env.metrics().operators["slow"].errors == 0
    assert not leftover_tasks()


async def test_cancellation_while_the_handler_decides_is_never_swallowed() -> None:
    env = LocalEnvironment()
    deciding = asyncio.Event()

    async def handler(stream_id: str, error: BaseException, context: ErrorContext) -> str:
        deciding.set()
        await asyncio.sleep(3600)  # parks until the test cancels the run
        return "continue"

    source = env.from_collection([0], name="n")
    source.on_error(handler)
    task = asyncio.create_task(source.map(lambda x: 1 / x, name="inv").collect())
    await deciding.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not leftover_tasks()


# -- misuse when the graph is built: one family of errors --------------------------------------


def _pair() -> ConnectedStreams:
    env = LocalEnvironment()
    return ConnectedStreams([env.from_collection([1], name="a"), env.from_collection([2], name="b")])


def _one() -> DataStream[int]:
    return LocalEnvironment().from_collection([1], name="one")


MISUSE: dict[str, tuple[Callable[[], object], type[Exception], str]] = {
    "buffer_size zero": (
        lambda: LocalEnvironment(buffer_size=0),
        ValueError,
        "buffer_size must be a positive integer, got 0",
    ),
    "buffer_size bool": (
        lambda: LocalEnvironment(buffer_size=True),
        TypeError,
        "buffer_size must be an integer, got True",
    ),
    "batch_size float": (
        lambda: LocalEnvironment(batch_size=2.0),  # type: ignore[arg-type]
        TypeError,
        "batch_size must be an integer, got 2.0",
    ),
    "environment name": (
        lambda: LocalEnvironment(3),  # type: ignore[arg-type]
        TypeError,
        "an environment's name must be a string, got 3",
    ),
    "stream name": (
        lambda: LocalEnvironment().create_stream(None),  # type: ignore[arg-type]
        TypeError,
        "a stream's name must be a string, got None",
    ),
    "backpressure buffer_size": (
        lambda: _pair().configure_backpressure(buffer_size=-1),
        ValueError,
        "buffer_size must be a positive integer, got -1",
    ),
    "backpressure timeout zero": (
        lambda: _pair().configure_backpressure(timeout=0),
        ValueError,
        "timeout must be finite and > 0, got 0: give None to wait without a limit",
    ),
    "backpressure timeout text": (
        lambda: _pair().configure_backpressure(timeout="1"),  # type: ignore[arg-type]
        TypeError,
        "timeout must be a number of seconds, got '1'",
    ),
    "map not callable": (
        lambda: _one().map(42),  # type: ignore[call-overload]
        TypeError,
        "map function must be callable or a registered name, got 42",
    ),
    "get_function not a name": (
        lambda: get_function(3),  # type: ignore[arg-type]
        TypeError,
        "a registered function's name is a string, got 3",
    ),
    "strategy not a string": (
        lambda: _pair().configure_backpressure(3),  # type: ignore[arg-type]
        TypeError,
        "backpressure strategy must be one of 'block', 'drop', 'drop_oldest', 'buffer', got 3",
    ),
    "empty registered name": (
        lambda: register_function("")(len),
        ValueError,
        "a registered function needs a non-empty name",
    ),
    "one stream connected": (
        lambda: ConnectedStreams([_one()]),
        TypeError,
        "ConnectedStreams takes a list of two or more DataStreams",
    ),
}

UNKNOWN_NAMES: dict[str, tuple[Callable[[], object], str]] = {
    "function": (lambda: _one().map("no_such_function"), "no function registered as 'no_such_function'"),
    "get_function": (
        lambda: get_function("no_such_function"),
        "no function registered as 'no_such_function'",
    ),
    "join_type": (
        lambda: _pair().join("cross", key_func=lambda x: x),  # type: ignore[arg-type]
        "unknown join_type 'cross'; expected one of 'inner', 'left', 'right', 'outer'",
    ),
    "window_type": (
        lambda: _one().window("hopping", 10),  # type: ignore[arg-type]
        "unknown window_type 'hopping'; expected one of 'tumbling', 'sliding', 'session'",
    ),
    "window time": (
        lambda: _one().window("tumbling", 10, time="wall"),  # type: ignore[arg-type]
        "unknown time 'wall'; expected one of 'event', 'processing'",
    ),
    "sync_type": (
        lambda: _pair().synchronize("clock"),  # type: ignore[arg-type]
        "unknown sync_type 'clock'; expected one of 'timestamp', 'event'",
    ),
    "strategy": (
        lambda: _pair().configure_backpressure("fast"),  # type: ignore[arg-type]
        "unknown backpressure strategy 'fast'; expected one of 'block', 'drop', 'drop_oldest', 'buffer'",
    ),
    "codec": (
        lambda: _pair().configure_backpressure("buffer", codec="xml"),  # type: ignore[arg-type]
        "unknown overflow codec 'xml'; expected one of 'pickle', 'json'",
    ),
}


@pytest.mark.parametrize("case", list(MISUSE.values()), ids=list(MISUSE))
def test_a_wrong_type_is_a_type_error_and_a_bad_value_a_value_error(
    case: tuple[Callable[[], object], type[Exception], str],
) -> None:
    call, error, message = case
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize("case", list(UNKNOWN_NAMES.values()), ids=list(UNKNOWN_NAMES))
def test_an_unknown_name_is_a_lookup_error(case: tuple[Callable[[], object], str]) -> None:
    call, message = case
    with pytest.raises(LookupError) as info:
        call()
    assert type(info.value) is UnknownNameError
    assert isinstance(info.value, ValueError | StreamError)
    assert str(info.value).startswith(message), str(info.value)
