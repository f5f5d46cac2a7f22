"""Error policies: on_error decisions, retries, dead letters, thresholds, scopes."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import (
    BackpressureTimeout,
    ConnectedStreams,
    DeadLetter,
    ErrorContext,
    ErrorThresholdExceeded,
    LocalEnvironment,
    PipelineError,
    StreamError,
    StreamReader,
    StreamState,
)
from sage_streams.errors import _short_repr
from sage_streams.testing import ManualClock
from tests.support import run_with_dead_letters

Handler = Callable[[str, BaseException, ErrorContext], str]


def recording(
    decision: str | Callable[[ErrorContext], str],
) -> tuple[Handler, list[tuple[str, str, Any, int]]]:
    """A handler answering ``decision`` that records (stream_id, error type, item, attempt)."""
    calls: list[tuple[str, str, Any, int]] = []

    def handler(stream_id: str, error: BaseException, context: ErrorContext) -> str:
        calls.append((stream_id, type(error).__name__, context.item, context.attempt))
        return decision(context) if callable(decision) else decision

    return handler, calls


def inverse(x: int) -> float:
    return 12 / x


# -- single-stream chains ------------------------------------------------------------------


async def test_continue_drops_the_item_and_keeps_it_as_a_dead_letter() -> None:
    env = LocalEnvironment()
    source = env.from_collection([1, 2, 0, 3, 0, 4], name="numbers")
    handler, calls = recording("continue")
    source.on_error(handler)
    result = source.map(inverse, name="inverse")
    out, letters = await run_with_dead_letters(env, result, source.errors())
    assert out == [12.0, 6.0, 4.0, 3.0]
    assert calls == [("inverse", "ZeroDivisionError", 0, 1)] * 2
    assert [(d.item, type(d.error), d.operator, d.stream_id, d.attempts) for d in letters] == [
        (0, ZeroDivisionError, "inverse", "inverse", 1)
    ] * 2
    metrics = env.metrics().operators["inverse"]
    assert (metrics.items_in, metrics.items_out, metrics.errors, metrics.dead_letters) == (6, 4, 2, 2)
    assert len(out) + len(letters) == 6


async def test_a_failure_keeps_what_other_emission_points_got_and_the_rest_of_the_batch() -> None:
    env = LocalEnvironment(batch_size=8)
    source = env.from_collection(range(20), name="n")
    source.on_error(lambda stream_id, error, context: "continue")
    halved = source.map(lambda x: x // 2 if x % 7 else x // 0, name="halve")
    doubled = halved.map(lambda x: x * 2, name="double")
    taps: tuple[list[int], list[int]] = ([], [])
    halved.sink(taps[0].append)
    doubled.sink(taps[1].append)
    await env.execute()
    kept = [x for x in range(20) if x % 7]
    assert taps[0] == [x // 2 for x in kept]
    assert taps[1] == [x // 2 * 2 for x in kept]
    ops = env.metrics().operators
    assert (ops["halve"].items_in, ops["halve"].items_out, ops["halve"].errors) == (20, 17, 3)
    assert (ops["double"].items_in, ops["double"].items_out) == (17, 17)


async def test_retry_calls_the_failing_step_again_with_the_same_item() -> None:
    env = LocalEnvironment()
    failures_left = Counter({3: 2, 5: 1})
    seen: list[int] = []

    def flaky(x: int) -> int:
        seen.append(x)
        if failures_left[x]:
            failures_left[x] -= 1
            raise ConnectionError(f"flaky on {x}")
        return x * 10

    handler, calls = recording("retry")
    source = env.from_collection(range(7), name="n")
    source.on_error(handler)
    result = await source.map(lambda x: x + 1, name="inc").map(flaky, name="flaky").collect()
    assert result == [10, 20, 30, 40, 50, 60, 70]
    assert calls == [
        ("flaky", "ConnectionError", 3, 1),
        ("flaky", "ConnectionError", 3, 2),
        ("flaky", "ConnectionError", 5, 1),
    ]
    assert seen == [1, 2, 3, 3, 3, 4, 5, 5, 6, 7]
    ops = env.metrics().operators
    assert (ops["flaky"].items_in, ops["flaky"].items_out, ops["flaky"].errors, ops["flaky"].retries) == (
        7,
        7,
        3,
        3,
    )
    assert (ops["inc"].items_in, ops["inc"].items_out) == (7, 7)


async def test_a_retry_past_max_retries_stops_the_graph() -> None:
    env = LocalEnvironment()
    handler, calls = recording("retry")
    source = env.from_collection([1, 2], name="n")
    source.on_error(handler, max_retries=2)
    stream = source.map(lambda x: x / 0, name="boom")
    with pytest.raises(PipelineError, match=r"operator 'boom' failed on item 1: ZeroDivisionError") as caught:
        await stream.collect()
    assert [attempt for *_, attempt in calls] == [1, 2, 3]
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    assert any("still failing after 2 retries" in note for note in caught.value.__cause__.__notes__)


async def test_backoff_waits_on_the_environment_clock() -> None:
    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    attempts: list[float] = []

    def once_flaky(x: int) -> int:
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise TimeoutError("not yet")
        return x

    source = env.create_stream("in")
    source.on_error(lambda stream_id, error, context: "retry", backoff=1.5)
    collected: list[int] = []
    source.map(once_flaky, name="flaky").sink(collected.append)
    async with env.running():
        await source.emit(7)
        await anyio.wait_all_tasks_blocked()  # the first attempt failed; the retry waits on the clock
        assert attempts == [0.0]  # waiting 1.5 s before the first retry
        await clock.advance(1.5)
        assert attempts == [0.0, 1.5]  # then 3 s (doubled) before the second
        await clock.advance(2.0)
        assert attempts == [0.0, 1.5]
        await clock.advance(1.0)
        assert attempts == [0.0, 1.5, 4.5]
        await source.close()
    assert collected == [7]


async def test_without_a_handler_the_first_error_stops_the_graph() -> None:
    env = LocalEnvironment()
    stream = env.from_collection([1, 0], name="n").map(inverse, name="inverse")
    with pytest.raises(PipelineError, match=r"operator 'inverse' failed on item 0: ZeroDivisionError"):
        await stream.collect()
    assert env.metrics().operators["inverse"].errors == 1


async def test_stop_fails_the_graph_chained_to_the_error() -> None:
    env = LocalEnvironment()
    handler, calls = recording("stop")
    source = env.from_collection([4, 0, 6], name="n")
    source.on_error(handler)
    with pytest.raises(PipelineError, match=r"operator 'inverse' failed on item 0") as caught:
        await source.map(inverse, name="inverse").collect()
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    assert calls == [("inverse", "ZeroDivisionError", 0, 1)]


@pytest.mark.parametrize("answer", ["skip", None, 3])
async def test_an_invalid_decision_is_a_clear_error(answer: Any) -> None:
    env = LocalEnvironment()
    source = env.from_collection([0], name="n")
    source.on_error(lambda stream_id, error, context: answer)
    with pytest.raises(
        PipelineError, match=rf"returned {answer!r}; expected one of 'continue', 'retry', 'stop'"
    ) as caught:
        await source.map(inverse, name="inverse").collect()
    assert isinstance(caught.value.__cause__, StreamError)
    assert isinstance(caught.value.__cause__.__cause__, ZeroDivisionError)


async def test_a_handler_that_raises_stops_the_graph_with_its_error() -> None:
    env = LocalEnvironment()

    def broken(stream_id: str, error: BaseException, context: ErrorContext) -> str:
        raise RuntimeError("handler bug")

    source = env.from_collection([0], name="n")
    source.on_error(broken)
    with pytest.raises(
        PipelineError, match=r"operator 'inverse' failed on item 0: RuntimeError: handler bug"
    ) as caught:
        await source.map(inverse, name="inverse").collect()
    error = caught.value.__cause__
    assert isinstance(error, RuntimeError)
    assert isinstance(error.__context__, ZeroDivisionError)
    assert "sage_streams: raised by the error handler of operator 'inverse'" in error.__notes__


async def test_async_handlers_and_async_functions() -> None:
    env = LocalEnvironment()

    async def handler(stream_id: str, error: BaseException, context: ErrorContext) -> str:
        await asyncio.sleep(0)  # a yield, so the handler really suspends; not a wait
        return "continue"

    async def check(x: int) -> int:
        await asyncio.sleep(0)  # a yield, so the function really suspends; not a wait
        if x % 4 == 0:
            raise ValueError(f"bad {x}")
        return x

    source = env.from_collection(range(10), name="n")
    source.on_error(handler)
    out, letters = await run_with_dead_letters(env, source.map(check, name="check"), source.errors())
    assert out == [1, 2, 3, 5, 6, 7, 9]
    assert [d.item for d in letters] == [0, 4, 8]


async def test_flat_map_results_after_a_failure_are_not_lost_or_repeated() -> None:
    env = LocalEnvironment(batch_size=4)
    source = env.from_collection([1, 2, 3], name="n")
    source.on_error(lambda stream_id, error, context: "continue")
    expanded = source.flat_map(lambda x: [x * 10 + i for i in range(4)], name="expand")
    checked = expanded.map(lambda y: y if y % 10 != 2 else y // 0, name="check")
    out, letters = await run_with_dead_letters(env, checked, source.errors())
    assert out == [10, 11, 13, 20, 21, 23, 30, 31, 33]
    assert [d.item for d in letters] == [12, 22, 32]
    ops = env.metrics().operators
    assert (ops["expand"].items_in, ops["expand"].items_out) == (3, 12)
    assert (ops["check"].items_in, ops["check"].items_out, ops["check"].dead_letters) == (12, 9, 3)


async def test_a_flat_map_that_fails_part_way_is_retried_from_its_start_without_repeats() -> None:
    env = LocalEnvironment()
    tries = Counter[int]()

    def expand(x: int) -> Any:
        tries[x] += 1
        yield x
        if x == 2 and tries[x] == 1:
            raise OSError("interrupted")
        yield -x

    source = env.from_collection([1, 2, 3], name="n")
    source.on_error(lambda stream_id, error, context: "retry")
    assert await source.flat_map(expand, name="expand").collect() == [1, -1, 2, -2, 3, -3]
    assert tries == {1: 1, 2: 2, 3: 1}


async def test_filter_key_by_and_sink_errors_go_to_the_handler() -> None:
    env = LocalEnvironment()
    source = env.from_collection([{"k": 1}, {"k": [2]}, {}, {"k": 3}, {"k": 4}], name="items")
    handler, calls = recording("continue")
    source.on_error(handler)
    sunk: list[dict[str, Any]] = []

    def store(item: dict[str, Any]) -> None:
        if item["k"] == 4:
            raise OSError("disk full")
        sunk.append(item)

    keyed = source.filter(lambda item: "k" in item or item["missing"], name="has_k").key_by(
        lambda item: item["k"], name="by_k"
    )
    keyed.sink(store, name="store")
    letters: list[DeadLetter] = []
    source.errors().sink(letters.append)
    await env.execute()
    assert sunk == [{"k": 1}, {"k": 3}]
    assert [(d.operator, type(d.error).__name__, d.item) for d in letters] == [
        ("by_k", "TypeError", {"k": [2]}),
        ("has_k", "KeyError", {}),
        ("store", "OSError", {"k": 4}),
    ]
    assert [stream_id for stream_id, *_ in calls] == ["by_k", "has_k", "store"]


async def test_every_item_failing_does_not_exhaust_the_stack() -> None:
    env = LocalEnvironment(batch_size=5000)
    source = env.from_collection(range(20_000), name="n")
    source.on_error(lambda stream_id, error, context: "continue")
    out, letters = await run_with_dead_letters(env, source.map(lambda x: x / 0, name="boom"), source.errors())
    assert out == []
    assert [d.item for d in letters] == list(range(20_000))


async def test_handled_errors_without_an_errors_stream_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    env = LocalEnvironment()
    source = env.from_collection([1, 0], name="n")
    source.on_error(lambda stream_id, error, context: "continue")
    with caplog.at_level(logging.WARNING, logger="sage_streams"):
        assert await source.map(inverse, name="inverse").collect() == [12.0]
    assert [r.getMessage() for r in caplog.records] == [
        "operator 'inverse' skipped item 0 after ZeroDivisionError: division by zero "
        "(no errors() stream keeps it)"
    ]


# -- scopes --------------------------------------------------------------------------------


async def test_a_policy_covers_what_is_downstream_unless_overridden() -> None:
    env = LocalEnvironment()
    source = env.from_collection([0, 1], name="n")
    source.on_error(lambda stream_id, error, context: "continue")
    first = source.map(inverse, name="first")  # under the source's policy
    second = first.map(lambda x: x - 12, name="second").map(inverse, name="third")
    second.on_error(lambda stream_id, error, context: "stop")  # its own, for 'third' and after
    with pytest.raises(PipelineError, match=r"operator 'third' failed on item 0.0"):
        await second.collect()
    assert env.metrics().operators["first"].dead_letters == 1


async def test_the_errors_stream_of_a_stream_without_a_policy_is_the_one_in_effect() -> None:
    env = LocalEnvironment()
    source = env.from_collection([0, 2], name="n")
    source.on_error(lambda stream_id, error, context: "continue")
    mapped = source.map(inverse, name="inverse")
    assert mapped.errors().name == source.errors().name == "n.errors"
    out, letters = await run_with_dead_letters(env, mapped, mapped.errors())
    assert (out, [d.item for d in letters]) == ([6.0], [0])


async def test_errors_stream_is_empty_when_nothing_fails_and_ends_with_the_graph() -> None:
    env = LocalEnvironment()
    source = env.from_collection([1, 2], name="n")
    source.on_error(lambda stream_id, error, context: "continue")
    out, letters = await run_with_dead_letters(env, source.map(inverse, name="inverse"), source.errors())
    assert (out, letters) == ([12.0, 6.0], [])


# -- connected operators -------------------------------------------------------------------


def two_streams(env: LocalEnvironment, left: list[Any], right: list[Any]) -> ConnectedStreams:
    return ConnectedStreams(
        [env.from_collection(left, name="left"), env.from_collection(right, name="right")]
    )


async def test_join_key_errors_continue_with_the_rest_of_the_batch() -> None:
    env = LocalEnvironment()
    left = [{"id": 1}, {"id": [2]}, {"nope": 3}, {"id": 2}]
    right = [{"id": 1, "r": "a"}, {"id": 2, "r": "b"}]
    connected = two_streams(env, left, right)
    handler, calls = recording("continue")
    connected.on_error(handler)
    joined = connected.join("inner", key_func=lambda item: item["id"], name="j")
    out, letters = await run_with_dead_letters(env, joined, connected.errors())
    assert sorted((a["id"], b["r"]) for a, b in out) == [(1, "a"), (2, "b")]
    assert [(d.item, d.stream_id, d.operator, type(d.error).__name__) for d in letters] == [
        ({"id": [2]}, "left", "j", "TypeError"),
        ({"nope": 3}, "left", "j", "KeyError"),
    ]
    assert [(stream_id, item) for stream_id, _, item, _ in calls] == [
        ("left", {"id": [2]}),
        ("left", {"nope": 3}),
    ]
    assert env.metrics().operators["j"].dead_letters == 2


async def test_process_errors_keep_what_the_call_read_and_retry_sees_it_again() -> None:
    env = LocalEnvironment()
    connected = two_streams(env, [1, 2], [3])
    calls: list[list[int]] = []

    def merge(streams: list[StreamReader], state: StreamState) -> list[int]:
        items = [x for reader in streams for x in reader]
        calls.append(items)
        if len(calls) == 1:
            raise ValueError("first call fails")
        return items

    handler, decisions = recording("retry")
    connected.on_error(handler)
    assert sorted(await connected.process(merge, name="merge").collect()) == [1, 2, 3]
    assert calls[0] == calls[1]
    assert decisions == [("merge", "ValueError", calls[0], 1)]


async def test_a_failed_process_call_with_continue_becomes_a_dead_letter() -> None:
    env = LocalEnvironment()
    connected = two_streams(env, [1, 2], [3])
    connected.on_error(lambda stream_id, error, context: "continue")

    def reject_all(streams: list[StreamReader], state: StreamState) -> None:
        for reader in streams:
            reader.read_all()
        raise ValueError("rejected")

    out, letters = await run_with_dead_letters(
        env, connected.process(reject_all, name="p"), connected.errors()
    )
    assert out == []
    assert sorted(x for d in letters for x in d.item) == [1, 2, 3]


async def test_items_left_unread_at_the_end_go_to_the_handler() -> None:
    env = LocalEnvironment()
    connected = two_streams(env, [1, 2], ["x"])
    connected.on_error(lambda stream_id, error, context: "continue")
    stream = connected.process(lambda streams, state: streams[1].read_all(), name="only_right")
    out, letters = await run_with_dead_letters(env, stream, connected.errors())
    assert out == ["x"]
    assert [(d.item, str(d.error)) for d in letters] == [
        ([1, 2], "the process function left items unread at the end of input: 2 of 'left'")
    ]


async def test_a_batch_process_failure_keeps_the_batch() -> None:
    env = LocalEnvironment()
    connected = two_streams(env, [{"id": 1}], [{"id": 1}])
    connected.on_error(lambda stream_id, error, context: "continue")
    joined = connected.join("inner", key_func=lambda item: item["id"])
    result = joined.process(lambda pairs, state: 1 / 0, name="bad")
    out, letters = await run_with_dead_letters(env, result, connected.errors())
    assert out == []
    assert [(d.operator, d.item) for d in letters] == [("bad", [({"id": 1}, {"id": 1})])]


async def test_synchronize_bad_timestamps_continue() -> None:
    env = LocalEnvironment()
    left = [
        {"timestamp": 1.0, "v": "a"},
        {"timestamp": float("nan"), "v": "bad"},
        {"timestamp": 2.0, "v": "b"},
    ]
    right = [{"timestamp": 1.0, "v": "x"}, {"timestamp": 2.0, "v": "y"}]
    connected = two_streams(env, left, right)
    connected.on_error(lambda stream_id, error, context: "continue")
    synced = connected.synchronize("timestamp", tolerance=0.1)
    out, letters = await run_with_dead_letters(env, synced, connected.errors())
    assert [(a["v"], b["v"]) for a, b in out] == [("a", "x"), ("b", "y")]
    assert [(d.item["v"], d.stream_id, type(d.error).__name__) for d in letters] == [
        ("bad", "left", "ValueError")
    ]


async def test_the_connected_policy_covers_sinks_downstream() -> None:
    env = LocalEnvironment()
    connected = two_streams(env, [1, 2], [3])
    connected.on_error(lambda stream_id, error, context: "continue")
    merged = connected.process(lambda streams, state: [x for r in streams for x in r], name="m")
    got: list[int] = []

    def store(x: int) -> None:
        if x == 2:
            raise OSError("nope")
        got.append(x)

    merged.sink(store, name="store")
    letters: list[DeadLetter] = []
    connected.errors().sink(letters.append)
    await env.execute()
    assert sorted(got) == [1, 3]
    assert [(d.operator, d.item) for d in letters] == [("store", 2)]


async def test_backpressure_timeout_goes_to_the_handler_and_continue_drops_counted() -> None:
    env = LocalEnvironment(batch_size=10)
    connected = two_streams(env, list(range(100)), [])
    connected.configure_backpressure("block", buffer_size=10, timeout=0.01)
    handler, calls = recording("continue")
    connected.on_error(handler)

    async def slow(streams: list[StreamReader], state: StreamState) -> list[int]:
        # Not a wait: the consumer is slower than the producer's 0.01 s timeout, which runs on the
        # loop's real clock, so only real time can outlast it.
        await asyncio.sleep(0.05)
        return [x for reader in streams for x in reader]

    out, letters = await run_with_dead_letters(env, connected.process(slow, name="slow"), connected.errors())
    channel = env.metrics().channels["left->slow[0]"]
    assert channel.dropped > 0
    assert len(out) + channel.dropped == 100
    assert sorted(out + [x for d in letters for x in d.item]) == list(range(100))
    assert {(stream_id, kind) for stream_id, kind, *_ in calls} == {("left", "BackpressureTimeout")}
    assert all(isinstance(d.error, BackpressureTimeout) for d in letters)


# -- thresholds ----------------------------------------------------------------------------


async def test_more_errors_than_the_threshold_within_the_window_stop_the_graph() -> None:
    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    source = env.create_stream("in")
    source.on_error(lambda stream_id, error, context: "continue").set_error_threshold(
        max_errors=2, time_window=10
    )
    source.map(inverse, name="inverse").sink(lambda x: None)
    with pytest.raises(ErrorThresholdExceeded) as caught:
        async with env.running():
            for value in (0, 0, 1, 0, 1, 0):  # an error every 6 or 12 s: at most 2 within 10 s
                await source.emit(value)
                await clock.advance(6)
            for _ in range(3):  # three at one time: one too many
                await source.emit(0)
            await source.close()
    error = caught.value
    assert isinstance(error, PipelineError)
    assert (error.count, error.max_errors, error.time_window, error.operator) == (3, 2, 10.0, "inverse")
    assert "3 errors within 10 s (max_errors=2, time_window=10), the last in operator 'inverse'" in str(error)
    assert isinstance(error.__cause__, ZeroDivisionError)


async def test_threshold_without_handler_is_still_stop_on_first_error() -> None:
    env = LocalEnvironment()
    source = env.from_collection([0], name="n")
    source.set_error_threshold(max_errors=5, time_window=1)
    with pytest.raises(PipelineError) as caught:
        await source.map(inverse, name="inverse").collect()
    assert not isinstance(caught.value, ErrorThresholdExceeded)


# -- configuration -------------------------------------------------------------------------


def test_configuration_is_validated_when_set() -> None:
    env = LocalEnvironment()
    stream = env.from_collection([1])
    connected = two_streams(env, [1], [2])
    with pytest.raises(StreamError, match="no function registered as 'nowhere'"):
        stream.on_error("nowhere")
    with pytest.raises(TypeError, match="error handler must be callable"):
        connected.on_error(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_retries must be an int >= 0, got -1"):
        stream.on_error(lambda s, e, c: "stop", max_retries=-1)
    with pytest.raises(ValueError, match="backoff must be finite and >= 0, got nan"):
        stream.on_error(lambda s, e, c: "stop", backoff=float("nan"))
    with pytest.raises(ValueError, match=r"max_errors must be an int >= 0, got 1\.5"):
        connected.set_error_threshold(1.5, 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time_window must be finite and > 0, got 0"):
        connected.set_error_threshold(3, 0)
    assert connected.on_error(lambda s, e, c: "stop") is connected
    assert connected.set_error_threshold(10, 60) is connected


async def test_a_join_condition_that_raises_is_an_error_of_the_probing_item() -> None:
    env = LocalEnvironment()
    left = [{"id": 1, "limit": 10}, {"id": 2, "limit": None}, {"id": 3, "limit": 30}]
    right = [{"id": 1, "price": 5}, {"id": 2, "price": 7}, {"id": 3, "price": 40}]
    connected = ConnectedStreams(
        [env.from_collection(right, name="prices"), env.from_collection(left, name="limits")]
    )
    handler, calls = recording("continue")
    connected.on_error(handler)
    joined = connected.join(
        "inner", key_func=lambda item: item["id"], condition=lambda p, q: p["price"] <= q["limit"], name="j"
    )
    out, letters = await run_with_dead_letters(env, joined, connected.errors())
    assert [(p["id"], q["id"]) for p, q in out] == [(1, 1)]
    assert [(d.stream_id, type(d.error).__name__) for d in letters] == [(calls[0][0], "TypeError")]
    assert letters[0].item in ({"id": 2, "limit": None}, {"id": 2, "price": 7})


# -- messages describe items with a bounded repr (issue 13, point 12) ----------------------


def nested(depth: int) -> list[Any]:
    """``[[[...]]]``, ``depth`` lists deep: more than the interpreter's recursion limit can repr."""
    item: list[Any] = []
    for _ in range(depth):
        item = [item]
    return item


class CountsRepr:
    """An object that counts how often it is asked for its ``repr``."""

    calls = 0

    def __repr__(self) -> str:
        CountsRepr.calls += 1
        return "counted"


class RaisingRepr:
    """An object whose ``repr`` raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def refuse(item: Any) -> Any:
    if isinstance(item, int):
        return item
    raise ValueError("not a number")


async def test_a_deeply_nested_failing_item_is_an_error_of_its_item() -> None:
    deep = nested(1000)
    env = LocalEnvironment()
    with pytest.raises(PipelineError) as caught:
        await env.from_collection([1, deep, 3], name="n").map(refuse, name="refuse").collect()
    error = caught.value
    assert (error.operator, error.item) == ("refuse", deep)
    assert type(error.__cause__) is ValueError
    assert str(error) == (
        "pipeline 'default' failed: operator 'refuse' failed on item [[[[[[[...]]]]]]]: "
        "ValueError: not a number"
    )
    assert error.__cause__.__notes__ == [
        "sage_streams: raised in operator 'refuse' on item [[[[[[[...]]]]]]]"
    ]


async def test_a_deeply_nested_failing_item_reaches_the_handler_and_the_rest_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    deep = nested(1000)
    env = LocalEnvironment()
    source = env.from_collection([1, deep, 3], name="n")
    handler, calls = recording("continue")
    source.on_error(handler)
    with caplog.at_level(logging.WARNING, logger="sage_streams"):  # no errors() stream: it is logged
        assert await source.map(refuse, name="refuse").collect() == [1, 3]
    assert calls == [("refuse", "ValueError", deep, 1)]
    assert [r.getMessage() for r in caplog.records] == [
        "operator 'refuse' skipped item [[[[[[[...]]]]]]] after ValueError: not a number "
        "(no errors() stream keeps it)"
    ]


async def test_describing_a_huge_item_is_bounded_and_reprs_only_a_few_of_its_parts() -> None:
    CountsRepr.calls = 0
    huge = [CountsRepr()] * 12_500_000  # 100 MB of references
    env = LocalEnvironment()
    with pytest.raises(PipelineError) as caught:
        await env.from_collection([huge], name="n").map(refuse, name="refuse").collect()
    message = str(caught.value)
    assert caught.value.item is huge
    start = "pipeline 'default' failed: operator 'refuse' failed on item [counted, counted, "
    assert message.startswith(start)
    assert message.endswith(": ValueError: not a number")
    assert len(message) <= 300
    (note,) = caught.value.__cause__.__notes__  # type: ignore[union-attr]
    assert len(note) <= 300
    assert CountsRepr.calls <= 2 * 20  # a few parts, for the message and the note: not 12.5 million


async def test_a_huge_string_or_bytes_item_gets_a_bounded_message() -> None:
    for huge in ("x" * 100_000_000, b"y" * 100_000_000):
        env = LocalEnvironment()
        with pytest.raises(PipelineError) as caught:
            await env.from_collection([huge], name="n").map(refuse, name="refuse").collect()
        assert caught.value.item is huge
        assert len(str(caught.value)) <= 300
        assert "xxxxxxxxxx" in str(caught.value) or "yyyyyyyyyy" in str(caught.value)


def test_a_huge_int_keeps_its_first_digits_until_repr_would_refuse_it() -> None:
    assert _short_repr(10**400) == "1" + "0" * 27 + "..." + "0" * 29
    assert _short_repr(10**5000) == "<int of 16610 bits>"  # repr() itself raises past 4300 digits


async def test_an_item_whose_repr_raises_is_still_reported_as_an_error_of_its_item() -> None:
    bad = RaisingRepr()
    env = LocalEnvironment()
    with pytest.raises(PipelineError) as caught:
        await env.from_collection([bad], name="n").map(refuse, name="refuse").collect()
    error = caught.value
    assert (error.operator, error.item, type(error.__cause__)) == ("refuse", bad, ValueError)
    assert str(error) == (
        f"pipeline 'default' failed: operator 'refuse' failed on item <RaisingRepr object at {id(bad):#x} "
        "(its repr raised RuntimeError)>: ValueError: not a number"
    )
    # Under a handler, and inside a container, too.
    env = LocalEnvironment()
    source = env.from_collection([[bad], 2], name="n")
    handler, calls = recording("continue")
    source.on_error(handler)
    out, letters = await run_with_dead_letters(env, source.map(refuse, name="refuse"), source.errors())
    assert (out, calls, [d.item for d in letters]) == ([2], [("refuse", "ValueError", [bad], 1)], [[bad]])


async def test_an_error_whose_message_cannot_be_made_still_stops_the_graph_clearly() -> None:
    deep = nested(1000)

    def look_up(item: Any) -> Any:
        raise KeyError(item)  # str(KeyError(x)) is repr(x): a RecursionError here

    env = LocalEnvironment()
    with pytest.raises(PipelineError) as caught:
        await env.from_collection([deep], name="n").map(look_up, name="look_up").collect()
    error = caught.value
    assert (error.operator, error.item, type(error.__cause__)) == ("look_up", deep, KeyError)
    assert str(error) == (
        "pipeline 'default' failed: operator 'look_up' failed on item [[[[[[[...]]]]]]]: "
        "KeyError: <its message raised RecursionError>"
    )


_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=20)
)
_hashable = st.recursive(
    _scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=8
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner)
        | st.dictionaries(_hashable, inner, max_size=4)
        | st.sets(_hashable, max_size=4)
    ),
    max_leaves=30,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(_values)
def test_the_bounded_repr_of_a_small_value_is_its_repr(value: Any) -> None:
    """The bounded repr is a plain repr's cheap twin: equal to it where no limit is reached."""
    if _depth(value) <= 6 and _parts(value) <= 64:
        assert _short_repr(value, limit=10**6) == repr(value)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(st.lists(_values, min_size=20, max_size=40), st.integers(1, 400))
def test_the_bounded_repr_never_passes_its_limit(values: list[Any], limit: int) -> None:
    text = _short_repr(values, limit=limit)
    assert len(text) <= max(limit, 3)
    assert text.startswith("[") or text == "..."


def _parts(value: Any) -> int:
    """How many values make up ``value``, itself included."""
    if isinstance(value, dict):
        return 1 + sum(_parts(k) + _parts(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return 1 + sum(map(_parts, value))
    return 1


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((max(_depth(k), _depth(v)) for k, v in value.items()), default=0)
    if isinstance(value, list | tuple | set | frozenset):
        return 1 + max(map(_depth, value), default=0)
    return 0
