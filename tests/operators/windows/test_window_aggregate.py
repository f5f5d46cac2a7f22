"""WindowedStream.aggregate: windows that fold their items as they arrive, against process
summing what the windows kept; errors of add through the error policies; the generated loops."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import (
    ConnectedStreams,
    DataStream,
    DeadLetter,
    ErrorContext,
    LocalEnvironment,
    PipelineError,
    StreamError,
    StreamState,
    WindowAggregate,
    WindowData,
    register_function,
)
from sage_streams._codegen.window_loops import key_reader, run_loop
from sage_streams.operators.base import ItemError
from sage_streams.operators.windows.config import (
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    WindowConfig,
)
from sage_streams.operators.windows.contents import Accumulators
from sage_streams.operators.windows.operator import WindowOperator
from sage_streams.testing import ManualClock
from tests.support import user


def event(ts: Any, value: Any = 1, user: Any = "a", **extra: Any) -> dict[str, Any]:
    return {"timestamp": ts, "value": value, "user": user, **extra}


def add_value(total: Any, item: dict[str, Any]) -> Any:
    return total + item["value"]


def merge_sums(earlier: Any, later: Any) -> Any:
    return earlier + later


def summed(window: WindowData, state: StreamState) -> tuple[Any, float, float, Any, bool]:
    """What ``aggregate(add_value, initial=0)`` must give, from the items a window kept."""
    sums = tuple(sum(item["value"] for item in items) for items in window)
    return (
        window.key,
        window.start_time,
        window.end_time,
        sums[0] if len(sums) == 1 else sums,
        window.refire,
    )


def row(window: WindowAggregate) -> tuple[Any, float, float, Any, bool]:
    return (window.key, window.start_time, window.end_time, window.value, window.refire)


WINDOWS: dict[str, dict[str, Any]] = {
    "tumbling": {"window_type": "tumbling", "size": 10},
    "tumbling 25": {"window_type": "tumbling", "size": 25},
    "sliding": {"window_type": "sliding", "size": 20, "slide": 5},
    "sliding 7.5": {"window_type": "sliding", "size": 7.5, "slide": 2.5},
    "session": {"window_type": "session", "timeout": 8},
}


# -- aggregate gives what process summing the kept items gives -------------------------------------


async def run_graph(
    items: list[dict[str, Any]],
    window: dict[str, Any],
    *,
    aggregated: bool,
    batch: int = 1024,
    inline: bool = True,
    **options: Any,
) -> tuple[list[Any], list[Any]]:
    """Fired windows as rows, and the late items, of one run of a keyed window over ``items``."""
    env = LocalEnvironment(batch_size=batch, inline=inline)
    windowed = env.from_collection(items, name="events").window(**window, key_func=user, **options)
    out: DataStream[Any]
    if aggregated:
        out = windowed.aggregate(add_value, initial=0, merge=merge_sums).map(row)
    else:
        out = windowed.process(summed)
    rows: list[Any] = []
    late: list[Any] = []
    out.sink(rows.append)
    windowed.late().sink(late.append)
    await env.execute()
    return rows, late


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    window=st.sampled_from(list(WINDOWS.values())),
    arrivals=st.lists(
        st.tuples(st.integers(-10, 150), st.sampled_from(["a", "b", 3]), st.integers(-5, 20)), max_size=50
    ),
    lateness=st.sampled_from([0, 15, 40]),
    delay=st.sampled_from([0, 10]),
    batch=st.integers(1, 6),
    inline=st.booleans(),
)
def test_aggregate_fires_what_process_summing_the_window_fires(
    window: dict[str, Any],
    arrivals: list[tuple[int, Any, int]],
    lateness: float,
    delay: float,
    batch: int,
    inline: bool,
) -> None:
    # Arrivals in any order: within out_of_orderness, late within allowed lateness (refires),
    # and past it (late items). The same windows must fire with the same sums, in the same order.
    items = [event(float(ts), value, key, id=i) for i, (ts, key, value) in enumerate(arrivals)]
    options = {"out_of_orderness": delay, "allowed_lateness": lateness}
    expected = asyncio.run(run_graph(items, window, aggregated=False, batch=batch, **options))
    actual = asyncio.run(run_graph(items, window, aggregated=True, batch=batch, inline=inline, **options))
    assert actual == expected


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    window=st.sampled_from([WINDOWS["tumbling"], WINDOWS["sliding"]]),
    stamps=st.lists(st.integers(0, 60), max_size=40),
    batch=st.integers(1, 5),
)
def test_items_are_folded_in_arrival_order(window: dict[str, Any], stamps: list[int], batch: int) -> None:
    items = [event(float(ts), id=i) for i, ts in enumerate(stamps)]

    async def run() -> tuple[list[Any], list[Any]]:
        env = LocalEnvironment(batch_size=batch)
        source = env.from_collection(items)
        folded = source.window(**window, out_of_orderness=100).aggregate(
            lambda ids, item: (*ids, item["id"]), initial=()
        )
        kept = source.window(**window, out_of_orderness=100).process(
            lambda window, state: tuple(item["id"] for item in window[0])
        )
        got: list[WindowAggregate] = []
        expected: list[Any] = []
        folded.sink(got.append)
        kept.sink(expected.append)
        await env.execute()
        return [w.value for w in got], expected

    folded, expected = asyncio.run(run())
    assert folded == expected


def operator(
    config: WindowConfig, *, aggregated: bool, lateness: float, delay: float, inputs: int = 2
) -> WindowOperator:
    accumulators = Accumulators(add_value, 0, merge_sums, inline=True) if aggregated else None
    return WindowOperator(
        [f"input{i}" for i in range(inputs)],
        config.build(inputs=inputs, allowed_lateness=lateness, accumulators=accumulators),
        key_func=user,
        timestamp="timestamp",
        out_of_orderness=delay,
        clock=ManualClock(),
        aggregated=aggregated,
        inline=True,
    )


async def fire(windows: WindowOperator, batches: Sequence[tuple[int, list[Any]]]) -> list[Any]:
    fired: list[Any] = []
    for index, batch in batches:
        fired += await windows.on_batch(index, batch)
    return fired + list(await windows.on_finish())


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    config=st.sampled_from([TumblingWindows(10), SlidingWindows(20, 5), SessionWindows(8)]),
    batches=st.lists(
        st.tuples(
            st.integers(0, 1),
            st.lists(st.tuples(st.integers(-10, 150), st.sampled_from(["a", "b"])), min_size=1, max_size=6),
        ),
        max_size=12,
    ),
    lateness=st.sampled_from([0, 15]),
    delay=st.sampled_from([0, 10]),
)
def test_windows_over_several_inputs_give_one_accumulator_per_input(
    config: WindowConfig, batches: list[tuple[int, list[tuple[int, str]]]], lateness: float, delay: float
) -> None:
    feed = [(index, [event(float(ts), ts % 7, key) for ts, key in batch]) for index, batch in batches]

    async def run() -> tuple[list[Any], list[Any], list[Any], list[Any], dict[str, float], dict[str, float]]:
        folding = operator(config, aggregated=True, lateness=lateness, delay=delay)
        keeping = operator(config, aggregated=False, lateness=lateness, delay=delay)
        folded, kept = await fire(folding, feed), await fire(keeping, feed)
        details = folding.details(), keeping.details()
        return folded, kept, folding.side["late"], keeping.side["late"], *details

    folded, kept, folded_late, kept_late, folded_details, kept_details = asyncio.run(run())
    assert all(isinstance(w, WindowAggregate) and isinstance(w.value, tuple) for w in folded)
    assert [row(w) for w in folded] == [summed(w, StreamState()) for w in kept]
    assert (folded_late, folded_details) == (kept_late, kept_details)


async def test_connected_streams_aggregate_gives_a_tuple_per_window_in_input_order() -> None:
    env = LocalEnvironment()
    clicks = env.from_collection([event(1, 2), event(12, 3)], name="clicks")
    views = env.from_collection([event(2, 10), event(3, 20)], name="views")
    windowed = ConnectedStreams([clicks, views]).window("tumbling", size=10, name="w")
    sums = await windowed.aggregate(add_value, initial=0).collect()
    assert sums == [
        WindowAggregate(None, 0.0, 10.0, (2, 30), False),
        WindowAggregate(None, 10.0, 20.0, (3, 0), False),  # no views: the initial accumulator
    ]


# -- the operator: refires, late items, metrics ------------------------------------------------------


async def test_a_kept_window_refires_with_its_late_items_folded_in_and_later_ones_go_to_late() -> None:
    env = LocalEnvironment()
    items = [event(5, 1), event(62, 10), event(40, 100), event(130, 1000), event(50, 10_000)]
    items += [event(160, 20_000), event(7, 5)]
    windowed = env.from_collection(items).window(
        "tumbling", size=60, out_of_orderness=30, allowed_lateness=60, name="minute"
    )
    late = windowed.late()
    sums = windowed.aggregate(add_value, initial=0, name="sums")
    got: list[WindowAggregate] = []
    late_items: list[Any] = []
    sums.sink(got.append)
    late.sink(late_items.append)
    await env.execute()
    # 40 is within out_of_orderness; 50 comes after [0, 60) fired (watermark 100) but within the
    # allowed lateness: it fires again at once; the next watermark (130) drops it; so 7 is late.
    assert [row(w) for w in got] == [
        (None, 0.0, 60.0, 101, False),
        (None, 0.0, 60.0, 10_101, True),
        (None, 60.0, 120.0, 10, False),
        (None, 120.0, 180.0, 21_000, False),
    ]
    assert late_items == [event(7, 5)]
    operators = env.metrics().operators
    assert operators["minute"].details == {
        "open_windows": 0.0,
        "fired_windows": 4.0,
        "late_items": 1.0,
        "watermark": 130.0,
        "watermark_lag": 30.0,
    }
    assert (operators["sums"].items_in, operators["sums"].items_out) == (4, 4)
    assert (operators["minute"].kind, operators["sums"].kind) == ("operator", "aggregate")


async def test_sessions_merge_their_accumulators_in_time_order() -> None:
    env = LocalEnvironment()
    items = [event(20, "b"), event(0, "a"), event(10, "c"), event(50, "d")]
    sums = (
        env.from_collection(items)
        .window("session", timeout=10, out_of_orderness=30)
        .aggregate(add_value, initial="", merge=lambda earlier, later: earlier + later)
    )
    assert [row(w) for w in await sums.collect()] == [
        (None, 0.0, 30.0, "abc", False),  # "c" bridged [0, 10) and [20, 30)
        (None, 50.0, 60.0, "d", False),
    ]


async def test_a_callable_initial_makes_a_fresh_accumulator_for_each_window_and_input() -> None:
    made = Counter[str]()

    def fresh() -> list[Any]:
        made["lists"] += 1
        return []

    def append(values: list[Any], item: dict[str, Any]) -> list[Any]:
        values.append(item["value"])
        return values

    env = LocalEnvironment()
    a = env.from_collection([event(1, 1), event(2, 2, "b"), event(11, 3)], name="a")
    b = env.from_collection([event(3, 4)], name="b")
    windowed = a.connect(b).window("tumbling", size=10, key_func=user)
    lists = await windowed.aggregate(append, initial=fresh).collect()
    assert [row(w) for w in lists] == [
        ("a", 0.0, 10.0, ([1], [4]), False),
        ("b", 0.0, 10.0, ([2], []), False),
        ("a", 10.0, 20.0, ([3], []), False),
    ]
    assert made["lists"] == 6  # three windows, two inputs each
    listed = (
        await LocalEnvironment()
        .from_collection([event(1, 1)])
        .window("tumbling", 10)
        .aggregate(lambda values, item: [*values, item["value"]], initial=[])
        .collect()
    )
    assert listed[0].value == [1]  # a value: used as it is (a new list from add: never changed)


async def test_processing_time_windows_aggregate_on_the_clock() -> None:
    clock = ManualClock(start=1000.0)
    env = LocalEnvironment(clock=clock)
    clicks = env.create_stream("clicks")
    counts = clicks.window("tumbling", size=60, time="processing").aggregate(
        lambda count, click: count + 1, initial=0
    )
    async with env.running():
        reader = asyncio.ensure_future(counts.collect())
        await clicks.emit({})
        await clicks.emit({})
        await clock.advance(0)  # let the operator see them: their time is when they are seen
        await clock.advance(30)  # 1030: [1020, 1080)
        await clicks.emit({})
    assert [row(w) for w in await reader] == [
        (None, 960.0, 1020.0, 2, False),
        (None, 1020.0, 1080.0, 1, False),
    ]


async def test_registered_names_stand_for_add_and_merge() -> None:
    register_function("aggregate_test_add")(add_value)
    register_function("aggregate_test_merge")(merge_sums)
    env = LocalEnvironment()
    windowed = env.from_collection([event(1, 2), event(5, 3), event(30, 4)]).window("session", timeout=10)
    sums = windowed.aggregate("aggregate_test_add", initial=0, merge="aggregate_test_merge")
    assert [w.value for w in await sums.collect()] == [5, 4]
    assert sums.name == "aggregate(add_value)"


def test_window_aggregate_is_a_frozen_record() -> None:
    window = WindowAggregate("k", 0.0, 10.0, 3)
    assert (window.refire, dataclasses.astuple(window)) == (False, ("k", 0.0, 10.0, 3, False))
    with pytest.raises(dataclasses.FrozenInstanceError):
        window.value = 4  # type: ignore[misc]
    assert not hasattr(window, "__dict__")


# -- refused when the graph is built ------------------------------------------------------------------


def test_aggregating_sessions_needs_merge() -> None:
    windowed = LocalEnvironment().from_collection([]).window("session", timeout=5)
    with pytest.raises(ValueError, match="aggregating session windows needs merge"):
        windowed.aggregate(add_value, initial=0)
    windowed.aggregate(add_value, initial=0, merge=merge_sums)


def test_add_merge_and_initial_must_be_plain_functions() -> None:
    async def later(total: int, item: Any) -> int:
        return total

    async def start() -> int:
        return 0

    stream = LocalEnvironment().from_collection([])
    cases: list[tuple[Any, dict[str, Any], str]] = [
        (later, {"initial": 0}, "add must be a plain function, not async"),
        (add_value, {"initial": 0, "merge": later}, "merge must be a plain function, not async"),
        (add_value, {"initial": start}, "initial must be a plain function, not async"),
        (42, {"initial": 0}, "window aggregate function must be callable or a registered name"),
        (add_value, {"initial": 0, "merge": 42}, "window merge function must be callable"),
    ]
    for add, options, message in cases:
        with pytest.raises(TypeError, match=message):
            stream.window("session", timeout=5).aggregate(add, **options)


def test_a_window_is_aggregated_or_processed_not_both() -> None:
    env = LocalEnvironment()
    stream = env.from_collection([])
    aggregated = stream.window("tumbling", 10, name="sums")
    aggregated.late()  # a side output is no reader of the windows
    aggregated.aggregate(add_value, initial=0)
    with pytest.raises(StreamError, match="'sums' is aggregated already"):
        aggregated.aggregate(add_value, initial=0)
    with pytest.raises(StreamError, match="'sums' is aggregated: its windows hold accumulators"):
        aggregated.process(summed)
    processed = stream.window("tumbling", 10, name="kept")
    processed.process(summed, name="summed")
    with pytest.raises(StreamError, match="'kept' already feeds 'summed' with its WindowData"):
        processed.aggregate(add_value, initial=0)


# -- errors of add: the error path, and the error policies ---------------------------------------------


GOOD = [event(5, 1, "a"), event(65, 2, "a"), event(70, 4, "b"), event(130, 8, "a")]
BAD = {
    "add raises": event(1000, "x", "a"),  # int + str; a trace of 1000 would make 70 late
    "no value": {"timestamp": 1000.0, "user": "a"},
    "unhashable key": event(1000, 1, ["a"]),
    "key function raises": {"timestamp": 1000.0, "value": 1},
    "no timestamp": {"value": 1, "user": "a"},
    "NaN timestamp": event(math.nan),
}


@pytest.mark.parametrize("config", [TumblingWindows(60), SlidingWindows(60, 30), SessionWindows(30)])
@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
async def test_a_bad_item_fails_at_its_position_and_leaves_no_trace(
    bad: dict[str, Any], config: WindowConfig
) -> None:
    windows = operator(config, aggregated=True, lateness=0, delay=0, inputs=1)
    batch = [*GOOD[:2], bad, *GOOD[2:]]
    with pytest.raises(ItemError) as caught:
        await windows.on_batch(0, batch)
    failure = caught.value
    assert (failure.index, failure.item) == (2, bad)
    assert failure.__cause__ is failure.error
    rest = [*await windows.on_batch(0, batch[3:]), *await windows.on_finish()]
    without = operator(config, aggregated=True, lateness=0, delay=0, inputs=1)
    expected = await fire(without, [(0, GOOD)])
    assert [row(w) for w in [*failure.output, *rest]] == [row(w) for w in expected]
    assert windows.details() == without.details()


def continue_and_record(
    letters: list[tuple[Any, str]],
) -> Any:
    def handler(stream_id: str, error: BaseException, context: ErrorContext) -> str:
        letters.append((context.item, f"{type(error).__name__}: {error}"))
        return "continue"

    return handler


@pytest.mark.parametrize("window", [WINDOWS["tumbling"], WINDOWS["sliding"], WINDOWS["session"]])
@pytest.mark.parametrize("inline", [True, False])
async def test_on_error_continue_drops_the_bad_items_and_keeps_the_rest(
    window: dict[str, Any], inline: bool
) -> None:
    items = [event(t, t % 5, "ab"[t % 2]) for t in range(0, 60, 3)]
    bad = [event(7.5, "x"), event(8, 1, {"a"}), {"timestamp": 31.0, "value": 1}, event(math.inf)]
    mixed = [*items[:3], bad[0], *items[3:8], bad[1], bad[2], *items[8:], bad[3]]
    expected, _ = await run_graph(items, window, aggregated=True, batch=4)
    env = LocalEnvironment(batch_size=4, inline=inline)
    source = env.from_collection(mixed, name="in")
    handled: list[tuple[Any, str]] = []
    source.on_error(continue_and_record(handled))
    sums = source.window(**window, key_func=user, name="w").aggregate(add_value, initial=0, merge=merge_sums)
    letters: list[DeadLetter] = []
    rows: list[Any] = []
    sums.map(row).sink(rows.append)
    source.errors().sink(letters.append)
    await env.execute()
    assert rows == expected
    assert [letter.item for letter in letters] == [item for item, _ in handled] == bad
    assert [message.split(":")[0] for _, message in handled] == [
        "TypeError",
        "TypeError",
        "KeyError",
        "ValueError",
    ]
    assert all(letter.operator == "w" for letter in letters)
    assert env.metrics().operators["w"].errors == 4


flaky_failures = Counter[int]()


def flaky(item: dict[str, Any]) -> int:
    """The item's value; raises the first ``flaky_failures[id]`` times it is asked for one."""
    if flaky_failures[item["id"]]:
        flaky_failures[item["id"]] -= 1
        raise ConnectionError(f"flaky on {item['id']}")
    value: int = item["value"]
    return value


@pytest.mark.parametrize("window", [WINDOWS["tumbling"], WINDOWS["sliding"], WINDOWS["session"]])
@pytest.mark.parametrize("inline", [True, False])
async def test_on_error_retry_folds_the_item_in_once(window: dict[str, Any], inline: bool) -> None:
    items = [event(t, t % 5, "ab"[t % 2], id=t) for t in range(0, 60, 3)]
    expected, _ = await run_graph(items, window, aggregated=True, batch=4)
    flaky_failures.clear()
    flaky_failures.update({9: 2, 30: 1, 57: 1})
    env = LocalEnvironment(batch_size=4, inline=inline)
    source = env.from_collection(items, name="in")
    attempts: list[tuple[int, int]] = []

    def retry(stream_id: str, error: BaseException, context: ErrorContext) -> str:
        attempts.append((context.item["id"], context.attempt))
        return "retry"

    source.on_error(retry)
    windowed = source.window(**window, key_func=user, name="w")
    # One expression reading a global function: pasted into the loop when inline, and raising there.
    sums = windowed.aggregate(lambda total, item: total + flaky(item), initial=0, merge=merge_sums)
    rows = await sums.map(row).collect()
    assert rows == expected
    assert attempts == [(9, 1), (9, 2), (30, 1), (57, 1)]
    assert (env.metrics().operators["w"].errors, env.metrics().operators["w"].retries) == (4, 4)


async def test_without_a_handler_an_add_error_stops_the_graph_naming_the_item() -> None:
    env = LocalEnvironment()
    bad = event(2, None)
    sums = (
        env.from_collection([event(1), bad])
        .window("tumbling", 60, name="minute")
        .aggregate(add_value, initial=0)
    )
    with pytest.raises(PipelineError, match=r"operator 'minute' failed on item .*TypeError") as caught:
        await sums.collect()
    assert caught.value.item == bad


# -- the generated loops ---------------------------------------------------------------------------------


async def notes_of_add_error(inline: bool) -> list[str]:
    env = LocalEnvironment(inline=inline, codegen=True)  # the generated path pastes
    source = env.from_collection([event(1), {"timestamp": 2.0, "user": "a"}])
    errors: list[BaseException] = []

    def record(stream_id: str, error: BaseException, context: ErrorContext) -> str:
        errors.append(error)
        return "continue"

    source.on_error(record)
    await (
        source.window("tumbling", 10)
        .aggregate(lambda total, item: total + item["value"], initial=0)
        .collect()
    )
    (error,) = errors
    assert isinstance(error, KeyError)
    return getattr(error, "__notes__", [])


async def test_an_inlined_add_that_raises_is_named_in_a_note() -> None:
    (note,) = await notes_of_add_error(inline=True)
    assert "<lambda>" in note
    assert "test_window_aggregate.py" in note
    assert "ran inlined in the window operator's loop" in note
    assert await notes_of_add_error(inline=False) == []


def test_key_reader_pastes_one_expression_keeps_the_keys_before_a_failure_and_names_it() -> None:
    read = key_reader(user, inline=True)
    keys, error = read([event(1, user="x"), event(2, user="y"), {"timestamp": 3}, event(4)])
    assert (keys, type(error)) == (["x", "y"], KeyError)
    assert error is not None
    assert "user (" in error.__notes__[0]  # "user (.../test_window_aggregate.py:...) ran inlined ..."
    keys, error = key_reader(user, inline=False)([event(1, user="x"), {}])
    assert (keys, type(error), getattr(error, "__notes__", None)) == (["x"], KeyError, None)


cell = "value"  # a global named like a local of the generated loop


def add_named_field(total: int, item: dict[str, Any]) -> int:
    return total + item[cell]


async def test_an_add_reading_a_global_named_like_a_local_of_the_loop_is_called() -> None:
    assert run_loop(add_value, inline=True).inlined is not None
    assert run_loop(add_named_field, inline=True).inlined is None
    sums = LocalEnvironment().from_collection([event(1, 2), event(3, 5)]).window("tumbling", 10)
    assert [w.value for w in await sums.aggregate(add_named_field, initial=0).collect()] == [7]
