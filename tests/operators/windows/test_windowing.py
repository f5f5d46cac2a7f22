"""Event-time windows through the runtime: WindowData, keys, lateness, watermarks, bad timestamps."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sage_streams import ConnectedStreams, LocalEnvironment, PipelineError, StreamState, WindowData
from sage_streams.operators.base import ItemError
from sage_streams.operators.windows.config import (
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    WindowConfig,
)
from sage_streams.operators.windows.operator import WindowOperator
from sage_streams.testing import ManualClock
from tests.support import user


def event(ts: Any, value: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {"timestamp": ts, "value": value, **extra}


def summary(window: WindowData, state: StreamState) -> tuple[float, float, Any, list[int]]:
    return (window.start_time, window.end_time, window.key, [len(items) for items in window])


async def test_window_data_iterates_per_input_lists_and_names_them() -> None:
    env = LocalEnvironment()
    a = env.from_collection([event(1, 1), event(2, 2)], name="a")
    b = env.from_collection([event(3, 10)], name="b")
    windows = await ConnectedStreams([a, b]).window("tumbling", size=10).collect()
    (window,) = windows
    assert (window.start_time, window.end_time, window.key, window.refire) == (0.0, 10.0, None, False)
    assert [[item["value"] for item in items] for items in window] == [[1, 2], [10]]
    assert list(window.by_stream) == ["a", "b"]
    assert window.by_stream["b"] == [event(3, 10)]


async def test_keyed_sliding_windows_fire_in_end_order() -> None:
    env = LocalEnvironment()
    items = [event(t, user=u) for t, u in [(1, "x"), (4, "y"), (6, "x"), (12, "x")]]
    stream = env.from_collection(items).window("sliding", size=10, slide=5, key_func=lambda e: e["user"])
    rows = await stream.process(summary).collect()
    assert rows == [
        (-5.0, 5.0, "x", [1]),
        (-5.0, 5.0, "y", [1]),
        (0.0, 10.0, "x", [2]),
        (0.0, 10.0, "y", [1]),
        (5.0, 15.0, "x", [2]),
        (10.0, 20.0, "x", [1]),
    ]


async def test_key_by_gives_the_window_its_key() -> None:
    env = LocalEnvironment()
    items = [event(1, user="a"), event(2, user="b"), event(3, user="a")]
    keyed = env.from_collection(items).key_by(lambda e: e["user"])
    rows = await keyed.window("tumbling", size=60).process(summary).collect()
    assert rows == [(0.0, 60.0, "a", [2]), (0.0, 60.0, "b", [1])]


async def test_sessions_close_after_the_gap() -> None:
    env = LocalEnvironment()
    items = [event(t) for t in (0, 20, 30, 100, 129)]
    rows = await env.from_collection(items).window("session", timeout=30).process(summary).collect()
    assert rows == [(0.0, 60.0, None, [3]), (100.0, 159.0, None, [2])]


async def test_late_items_go_to_late_and_are_never_dropped() -> None:
    env = LocalEnvironment()
    items = [event(5), event(65), event(3, 99.0), event(70)]
    windowed = env.from_collection(items).window("tumbling", size=60)
    late = windowed.late()
    summaries = windowed.process(summary)
    async with env.running():
        windows = asyncio.ensure_future(summaries.collect())
        late_items = asyncio.ensure_future(late.collect())
    assert await windows == [(0.0, 60.0, None, [1]), (60.0, 120.0, None, [2])]
    assert await late_items == [event(3, 99.0)]
    details = env.metrics().operators[windowed.name].details
    assert details["late_items"] == 1
    assert details["fired_windows"] == 2


async def test_out_of_orderness_keeps_items_in_time_and_allowed_lateness_refires() -> None:
    env = LocalEnvironment()
    items = [event(5), event(62), event(40), event(130), event(50)]
    windowed = env.from_collection(items).window(
        "tumbling", size=60, out_of_orderness=30, allowed_lateness=60
    )
    rows = await windowed.process(lambda w, s: (w.start_time, w.refire, len(w[0]))).collect()
    # 40 is within out_of_orderness; 50 comes after [0, 60) fired (watermark 100) but within
    # the allowed lateness, so the window fires again with all three of its items.
    assert rows == [(0.0, False, 2), (0.0, True, 3), (60.0, False, 1), (120.0, False, 1)]


async def test_the_slower_input_holds_the_watermark_back() -> None:
    env = LocalEnvironment()
    fast = env.create_stream("fast")
    slow = env.create_stream("slow")
    windowed = ConnectedStreams([fast, slow]).window("tumbling", size=10, name="w")
    async with env.running():
        fired = asyncio.ensure_future(windowed.collect())
        for t in (1, 15, 25):
            await fast.emit(event(t))
        await anyio.wait_all_tasks_blocked()  # the window has taken all three
        assert env.metrics().operators["w"].details["fired_windows"] == 0  # slow says nothing yet
        await slow.emit(event(12))
        await anyio.wait_all_tasks_blocked()
        assert env.metrics().operators["w"].details["watermark"] == 12
        assert env.metrics().operators["w"].details["fired_windows"] == 1
    assert [(w.start_time, [len(i) for i in w]) for w in await fired] == [
        (0.0, [1, 0]),
        (10.0, [1, 1]),
        (20.0, [1, 0]),
    ]


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    left=st.lists(st.integers(0, 200), max_size=30).map(sorted),
    right=st.lists(st.integers(0, 200), max_size=30).map(sorted),
    order=st.lists(st.booleans(), max_size=60),
    batch=st.integers(1, 5),
)
def test_results_do_not_depend_on_how_in_order_inputs_interleave(
    left: list[int], right: list[int], order: list[bool], batch: int
) -> None:
    async def run() -> list[tuple[float, list[list[int]]]]:
        env = LocalEnvironment(buffer_size=4, batch_size=batch)
        a, b = env.create_stream("a"), env.create_stream("b")
        windowed = ConnectedStreams([a, b]).window("tumbling", size=25)

        async def feed() -> None:
            pending = {id(a): list(left), id(b): list(right)}
            for pick_a in [*order, *([True] * len(left)), *([False] * len(right))]:
                stream = a if pick_a else b
                if pending[id(stream)]:
                    await stream.emit(event(pending[id(stream)].pop(0)))
            await a.close()
            await b.close()

        windows, _ = await asyncio.gather(windowed.collect(), feed())
        return [(w.start_time, [[i["timestamp"] for i in items] for items in w]) for w in windows]

    expected = sorted(
        {25.0 * (t // 25) for t in left + right},
    )
    result = asyncio.run(run())
    assert [start for start, _ in result] == expected
    for start, (lefts, rights) in result:
        assert lefts == [t for t in left if start <= t < start + 25]
        assert rights == [t for t in right if start <= t < start + 25]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"value": 1}, "KeyError: \"item has no timestamp field 'timestamp'\""),
        (event(math.nan), "ValueError: timestamp must be finite"),
        (event(math.inf), "ValueError: timestamp must be finite"),
        (event("noon"), "TypeError: timestamp must be a number or datetime"),
        (event(10**400), "ValueError: timestamp must be finite, got 1000000"),
        (event(True), "TypeError: timestamp must be a number or datetime, got True"),
    ],
)
async def test_bad_timestamps_are_errors_of_their_item(bad: dict[str, Any], message: str) -> None:
    env = LocalEnvironment()
    windowed = env.from_collection([event(1), bad]).window("tumbling", size=60, name="minute")
    with pytest.raises(PipelineError) as caught:
        await windowed.collect()
    assert str(caught.value).startswith("pipeline 'default' failed: operator 'minute' failed on item")
    assert message in str(caught.value)
    assert caught.value.item == bad


async def test_mixed_naive_and_aware_datetimes_are_refused() -> None:
    env = LocalEnvironment()
    items = [event(datetime(2026, 1, 1, 0, 0, 10)), event(datetime(2026, 1, 1, tzinfo=UTC))]
    windowed = env.from_collection(items).window("tumbling", size=60)
    with pytest.raises(PipelineError, match="mix naive and timezone-aware datetimes"):
        await windowed.collect()


async def test_datetimes_are_seconds_since_the_epoch() -> None:
    env = LocalEnvironment()
    items = [event(datetime(1970, 1, 1, 0, 1, 5, tzinfo=UTC))]
    (window,) = await env.from_collection(items).window("tumbling", size=60).collect()
    assert (window.start_time, window.end_time) == (60.0, 120.0)


async def test_window_function_return_conventions() -> None:
    env = LocalEnvironment()
    windowed = env.from_collection([event(1), event(70)]).window("tumbling", size=60)
    pairs = windowed.process(lambda w, s: (w.start_time, len(w[0])))
    several = windowed.process(lambda w, s: [w.start_time, w.end_time])
    none = windowed.process(lambda w, s: None)

    async def total(window: WindowData, state: StreamState) -> float:
        await asyncio.sleep(0)  # a yield, so the window function really suspends; not a wait
        state.increment("windows")
        return sum(item["value"] for items in window for item in items)

    totals = windowed.process(total)
    async with env.running():
        readers = [asyncio.ensure_future(s.collect()) for s in (pairs, several, none, totals)]
    assert [await r for r in readers] == [[(0.0, 1), (60.0, 1)], [0.0, 60.0, 60.0, 120.0], [], [1.0, 1.0]]


def test_invalid_window_arguments_fail_when_the_graph_is_built() -> None:
    stream = LocalEnvironment().from_collection([])
    with pytest.raises(ValueError, match="unknown window_type 'hopping'"):
        stream.window("hopping", size=1)
    with pytest.raises(ValueError, match="slide must not exceed size"):
        stream.window("sliding", size=5, slide=10)
    with pytest.raises(ValueError, match="out_of_orderness must be finite and >= 0, got -1"):
        stream.window("tumbling", size=5, out_of_orderness=-1)
    with pytest.raises(ValueError, match="unknown time 'wall'; expected one of 'event', 'processing'"):
        stream.window("tumbling", size=5, time="wall")
    with pytest.raises(ValueError, match="idle_timeout must be more than 0"):
        stream.window("tumbling", size=5, idle_timeout=0)


async def test_processing_time_windows_fire_on_the_clock_with_no_new_input() -> None:
    clock = ManualClock(start=1000.0)
    env = LocalEnvironment(clock=clock)
    clicks = env.create_stream("clicks")
    windowed = clicks.window("tumbling", size=60, time="processing", name="per_minute")
    counts = windowed.process(lambda w, s: (w.start_time, len(w[0])))
    async with env.running():
        reader = asyncio.ensure_future(counts.collect())
        await clicks.emit({"no": "timestamp needed"})
        await clicks.emit({"no": "timestamp needed"})
        await clock.advance(10)  # 1010: inside [960, 1020)
        await clicks.emit({})
        await clock.advance(0)  # let the operator see it: its time is when it is seen
        assert env.metrics().operators["per_minute"].details["fired_windows"] == 0
        await clock.advance(10)  # 1020: the window's end, and no item arrives
        assert env.metrics().operators["per_minute"].details["fired_windows"] == 1
        await clock.advance(30)
        await clicks.emit({})  # 1050: in [1020, 1080), fires at the end of input
    assert await reader == [(960.0, 3), (1020.0, 1)]


async def test_an_idle_input_stops_holding_the_watermark_back() -> None:
    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    busy, quiet = env.create_stream("busy"), env.create_stream("quiet")
    windowed = ConnectedStreams([busy, quiet]).window("tumbling", size=60, idle_timeout=10, name="w")
    late = windowed.late()
    async with env.running():
        fired = asyncio.ensure_future(windowed.collect())
        late_items = asyncio.ensure_future(late.collect())
        await busy.emit(event(5))
        await busy.emit(event(65))
        await clock.advance(9)
        assert env.metrics().operators["w"].details["fired_windows"] == 0  # quiet still counts
        await clock.advance(1)  # quiet has said nothing for 10 s: idle, so the watermark is 65
        assert env.metrics().operators["w"].details["watermark"] == 65
        assert env.metrics().operators["w"].details["fired_windows"] == 1
        await quiet.emit(event(20))  # active again, but [0, 60) has closed: late, not lost
    assert [(w.start_time, [len(i) for i in w]) for w in await fired] == [(0.0, [1, 0]), (60.0, [1, 0])]
    assert await late_items == [event(20)]


async def test_without_idle_timeout_a_quiet_input_holds_every_window() -> None:
    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    busy, quiet = env.create_stream("busy"), env.create_stream("quiet")
    windowed = ConnectedStreams([busy, quiet]).window("tumbling", size=60, name="w")
    async with env.running():
        fired = asyncio.ensure_future(windowed.collect())
        await busy.emit(event(5))
        await busy.emit(event(65))
        await clock.advance(3600)
        assert env.metrics().operators["w"].details["fired_windows"] == 0
    assert len(await fired) == 2  # both fire at the end of input


def test_manual_clock_runs_due_timers_in_order_and_refuses_to_go_back() -> None:
    async def run() -> list[str]:
        clock, calls = ManualClock(), []
        clock.call_at(2.0, lambda: calls.append("b"))
        clock.call_at(1.0, lambda: calls.append("a"))
        clock.call_at(5.0, lambda: calls.append("never")).cancel()
        await clock.advance(3)
        with pytest.raises(ValueError, match="does not go back"):
            await clock.advance(-1)
        await clock.advance(10)
        return calls

    assert asyncio.run(run()) == ["a", "b"]


@pytest.mark.parametrize(
    ("key_func", "message"),
    [
        (lambda e: e["user"], "KeyError: 'user'"),
        (lambda e: [e["value"]], "TypeError: unhashable type: 'list'"),
    ],
)
async def test_bad_window_keys_are_errors_of_their_item(key_func: Any, message: str) -> None:
    env = LocalEnvironment()
    bad = event(2)
    windowed = env.from_collection([bad]).window("tumbling", size=60, key_func=key_func, name="keyed")
    with pytest.raises(PipelineError, match=f"operator 'keyed' failed on item .*: {message}") as caught:
        await windowed.collect()
    assert caught.value.item == bad


# -- the operator on its own: bad items, batching ------------------------------------------------


def window_operator(
    inputs: int = 1,
    config: WindowConfig | None = None,
    *,
    key_func: Any = None,
    allowed_lateness: float = 0.0,
    out_of_orderness: float = 0.0,
    clock: ManualClock | None = None,
    processing_time: bool = False,
) -> WindowOperator:
    windows = (config or TumblingWindows(60)).build(inputs=inputs, allowed_lateness=allowed_lateness)
    return WindowOperator(
        [f"input{i}" for i in range(inputs)],
        windows,
        key_func=key_func,
        timestamp="timestamp",
        out_of_orderness=out_of_orderness,
        clock=clock or ManualClock(),
        processing_time=processing_time,
    )


def rows(windows: Sequence[WindowData]) -> list[tuple[float, float, Any, bool, list[list[Any]]]]:
    return [(w.start_time, w.end_time, w.key, w.refire, [list(items) for items in w]) for w in windows]


GOOD = [event(5, user="a"), event(65, user="a"), event(70, user="b"), event(130, user="a")]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"value": 1.0, "user": "a"}, KeyError),  # no timestamp
        (event(math.nan, user="a"), ValueError),
        (event(math.inf, user="a"), ValueError),
        (event("noon", user="a"), TypeError),
        (event(True, user="a"), TypeError),
        (event(1000), KeyError),  # the key function fails; a trace of 1000 would make 70 late
        (event(1000, user=["a"]), TypeError),  # an unhashable key
    ],
)
async def test_a_bad_item_fails_at_its_position_and_going_on_after_it_loses_nothing(
    bad: dict[str, Any], error: type[Exception]
) -> None:
    windows = window_operator(key_func=user)
    batch = [*GOOD[:2], bad, *GOOD[2:]]
    with pytest.raises(ItemError) as caught:
        await windows.on_batch(0, batch)
    failure = caught.value
    assert (failure.index, failure.item, type(failure.error)) == (2, bad, error)
    assert failure.__cause__ is failure.error
    assert rows(failure.output) == [(0.0, 60.0, "a", False, [[GOOD[0]]])]  # 65 fired [0, 60)
    rest = [*await windows.on_batch(0, batch[failure.index + 1 :]), *await windows.on_finish()]
    without = window_operator(key_func=user)
    expected = [*await without.on_batch(0, GOOD), *await without.on_finish()]
    assert rows([*failure.output, *rest]) == rows(expected)
    assert windows.details() == without.details()


async def test_a_datetime_of_the_other_kind_fails_at_its_position() -> None:
    def at(seconds: int, **tz: Any) -> dict[str, Any]:
        return event(datetime(1970, 1, 1, 0, seconds // 60, seconds % 60, **tz))

    windows = window_operator()
    batch = [at(5), at(65), at(66, tzinfo=UTC), at(70)]
    with pytest.raises(ItemError) as caught:
        await windows.on_batch(0, batch)
    assert caught.value.index == 2
    assert "mix naive and timezone-aware" in str(caught.value.error)
    assert rows(caught.value.output) == [(0.0, 60.0, None, False, [[at(5)]])]
    assert rows(await windows.on_batch(0, batch[3:]) + await windows.on_finish()) == [
        (60.0, 120.0, None, False, [[at(65), at(70)]])
    ]


async def test_a_bad_item_in_processing_time_fails_at_its_position() -> None:
    clock = ManualClock(start=100.0)
    windows = window_operator(key_func=user, clock=clock, processing_time=True)
    assert await windows.on_batch(0, [{"user": "a"}]) == []  # at 100: in [60, 120)
    await clock.advance(30)
    batch = [{"user": "a"}, {"user": ["x"]}, {"user": "b"}]
    with pytest.raises(ItemError) as caught:
        await windows.on_batch(0, batch)
    assert (caught.value.index, type(caught.value.error)) == (1, TypeError)
    assert rows(caught.value.output) == [(60.0, 120.0, "a", False, [[{"user": "a"}]])]
    assert rows(await windows.on_batch(0, batch[2:]) + await windows.on_finish()) == [
        (120.0, 180.0, "a", False, [[{"user": "a"}]]),
        (120.0, 180.0, "b", False, [[{"user": "b"}]]),
    ]


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(st.integers(0, 1), st.integers(-10, 300), st.sampled_from(["a", "b", "c"])), max_size=40
    ),
    cuts=st.lists(st.integers(1, 7), min_size=1, max_size=8),
    lateness=st.sampled_from([0, 30, 90]),
    delay=st.sampled_from([0, 20]),
    size=st.sampled_from([10, 60]),
)
def test_what_fires_and_what_is_late_does_not_depend_on_how_items_are_batched(
    arrivals: list[tuple[int, int, str]], cuts: list[int], lateness: float, delay: float, size: float
) -> None:
    events = [(index, event(float(ts), value=i, user=key)) for i, (index, ts, key) in enumerate(arrivals)]
    one_by_one = [(index, [item]) for index, item in events]
    batches: list[tuple[int, list[dict[str, Any]]]] = []
    for number, (index, item) in enumerate(events):
        if batches and batches[-1][0] == index and len(batches[-1][1]) < cuts[number % len(cuts)]:
            batches[-1][1].append(item)
        else:
            batches.append((index, [item]))

    async def run(feed: list[tuple[int, list[dict[str, Any]]]]) -> tuple[list[Any], list[Any], float]:
        windows = window_operator(
            2, TumblingWindows(size), key_func=user, allowed_lateness=lateness, out_of_orderness=delay
        )
        fired = []
        for index, batch in feed:
            fired += await windows.on_batch(index, batch)
        watermark = windows.watermark
        fired += await windows.on_finish()
        return rows(fired), windows.side["late"], watermark

    assert asyncio.run(run(batches)) == asyncio.run(run(one_by_one))


def test_window_data_makes_its_lists_once_and_shares_them_with_by_stream() -> None:
    windows = window_operator(2)

    async def fire() -> list[WindowData]:
        await windows.on_batch(0, [event(1)])
        await windows.on_batch(1, [event(2), event(3)])
        return await windows.on_finish()

    (window,) = asyncio.run(fire())
    assert len(window) == 2
    assert window.by_stream == {"input0": [event(1)], "input1": [event(2), event(3)]}
    assert window.by_stream["input1"] is window[1] is list(window)[1]


async def test_watermarks_reach_a_window_downstream_of_a_window_with_the_data() -> None:
    env = LocalEnvironment()
    readings = env.create_stream("readings")
    tens = readings.window("tumbling", 10, name="tens").process(
        lambda window, state: {"timestamp": window.start_time, "count": sum(len(s) for s in window)}
    )
    thirties = tens.window("tumbling", 30, name="thirties").process(
        lambda window, state: (window.start_time, sum(item["count"] for s in window for item in s))
    )
    seen: list[tuple[float, int]] = []
    thirties.sink(seen.append)
    async with env.running():
        for t in range(0, 66, 5):
            await readings.emit({"timestamp": float(t)})
        await anyio.wait_all_tasks_blocked()
        # The first window fired [0, 10) ... [50, 60) and passed on its watermark, 65: the second
        # has fired [30, 60) too, though the last count it received is stamped 50.
        assert seen == [(0.0, 6), (30.0, 6)]
        await readings.close()
    assert seen == [(0.0, 6), (30.0, 6), (60.0, 2)]
    # Its own items reach 60 at most: 65 came in band from the first window.
    assert env.metrics().operators["thirties"].details["watermark"] == 65.0


key_calls: list[int] = []


async def test_a_key_function_is_asked_once_per_item_even_around_a_failing_one() -> None:
    # One expression: pasted into the loop that reads the keys. The keys read before a failing
    # item are kept, so that going on after it asks for none of them again.
    key_calls.clear()
    env = LocalEnvironment(batch_size=8)
    items = [event(t, id=t, user="ab"[t % 2]) for t in range(20)]
    items[5], items[12] = event(5, id=5), event(12, id=12)  # no user
    source = env.from_collection(items)
    source.on_error(lambda stream_id, error, context: "continue")
    windowed = source.window("tumbling", size=10, key_func=lambda e: key_calls.append(e["id"]) or e["user"])
    rows = await windowed.process(summary).collect()
    assert key_calls == list(range(20))
    assert rows == [
        (0.0, 10.0, "a", [5]),
        (0.0, 10.0, "b", [4]),
        (10.0, 20.0, "a", [4]),
        (10.0, 20.0, "b", [5]),
    ]


# -- huge timestamps, windows per item, refires item by item ---------------------------------------


@pytest.mark.parametrize("window", [("tumbling", 60, None), ("sliding", 60, 20)])
async def test_huge_timestamps_are_errors_of_their_items_and_the_stream_goes_on(
    window: tuple[str, float, float | None],
) -> None:
    # Far beyond 2**50 minutes from 0: each is refused, at once, as an error of its item.
    env = LocalEnvironment(batch_size=3)
    huge = [event(ts, value=ts) for ts in (1e22, 1e24, 1e26, 1e300, -1e300)]
    items = [event(5), huge[0], event(30), huge[1], huge[2], event(70), huge[3], huge[4], event(100)]
    source = env.from_collection(items, name="events")
    seen: list[tuple[str, str, Any]] = []

    def handler(stream_id: str, error: BaseException, context: Any) -> str:
        seen.append((context.operator, type(error).__name__, context.item))
        return "continue"

    source.on_error(handler)
    window_type, size, slide = window
    windowed = source.window(window_type, size, slide, name="w")
    out: list[tuple[float, float, list[float]]] = []
    windowed.process(lambda w, s: (w.start_time, w.end_time, [i["timestamp"] for i in w[0]])).sink(out.append)
    letters: list[Any] = []
    source.errors().sink(letters.append)
    await env.execute()
    assert seen == [("w", "ValueError", item) for item in huge]
    assert [letter.item for letter in letters] == huge
    length = float(slide or size)  # sliding windows are numbered by their slide
    assert all(f"is out of the range of windows of {length} s" in str(letter.error) for letter in letters)
    without = LocalEnvironment()
    expected = (
        await without.from_collection([event(5), event(30), event(70), event(100)])
        .window(window_type, size, slide)
        .process(lambda w, s: (w.start_time, w.end_time, [i["timestamp"] for i in w[0]]))
        .collect()
    )
    assert out == expected
    assert env.metrics().operators["w"].details["watermark"] == 100


async def test_a_huge_timestamp_stops_the_graph_naming_its_item_without_a_handler() -> None:
    env = LocalEnvironment()
    huge = event(1e26)
    windowed = env.from_collection([event(1), huge, event(2)]).window("tumbling", size=60, name="minute")
    with pytest.raises(PipelineError) as caught:
        await windowed.collect()
    assert caught.value.item == huge
    assert "operator 'minute' failed on item" in str(caught.value)
    assert "timestamp 1e+26 is out of the range of windows of 60.0 s" in str(caught.value)


def test_a_sliding_window_with_too_many_windows_per_item_is_refused_when_built() -> None:
    env = LocalEnvironment()
    stream = env.from_collection([event(1)])
    with pytest.raises(ValueError, match="36,000,000 windows, more than the 10,000 allowed"):
        stream.window("sliding", size=3600, slide=0.0001)


def fired_rows(window: WindowData, state: StreamState) -> tuple[float, float, list[float], bool]:
    return (window.start_time, window.end_time, [item["timestamp"] for item in window[0]], window.refire)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 1024])
async def test_each_late_item_within_allowed_lateness_refires_its_window(batch_size: int) -> None:
    # 3 moves the watermark to 3: the first 2 is within lateness of [2, 3), which has already
    # ended, so the window fires at once; the second 2 makes it fire again, with both.
    env = LocalEnvironment(batch_size=batch_size)
    windowed = env.from_collection([event(3), event(2), event(2)]).window(
        "tumbling", size=1, allowed_lateness=1
    )
    assert await windowed.process(fired_rows).collect() == [
        (2.0, 3.0, [2], False),
        (2.0, 3.0, [2, 2], True),
        (3.0, 4.0, [3], False),
    ]


Row = tuple[float, float, Any, bool, list[int]]  # start, end, key, refire, values of input 0


def brute_force_windows(
    size: int, slide: int, lateness: int, delay: int, arrivals: list[tuple[Any, int, int]]
) -> tuple[list[Row], list[int]]:
    """Tumbling (slide == size) and sliding windows by their definition, item by item: an item
    joins each of its windows with ``end + lateness`` past the watermark before it (late if
    none), the watermark moves, and every window it has reached with items not yet fired fires,
    by (end, start, key in first-seen order); windows past ``end + lateness`` are dropped."""
    windows: dict[tuple[Any, int], dict[str, Any]] = {}
    ranks: dict[Any, int] = {}
    next_rank, watermark = 0, -math.inf
    fired: list[Row] = []
    late: list[int] = []

    def fire(due: list[tuple[Any, int]]) -> None:
        due.sort(key=lambda w: (w[1] * slide + size, w[1] * slide, ranks[w[0]]))
        for key, k in due:
            window = windows[(key, k)]
            fired.append(
                (float(k * slide), float(k * slide + size), key, window["fired"], list(window["items"]))
            )
            window["fired"], window["dirty"] = True, False

    for key, ts, value in arrivals:
        mine = [
            k
            for k in range(ts // slide - size // slide - 1, ts // slide + 1)
            if k * slide <= ts < k * slide + size
        ]
        live = [k for k in mine if k * slide + size + lateness > watermark]
        if not live:
            late.append(value)
        if live and not any(held == key for held, _ in windows):
            ranks[key], next_rank = next_rank, next_rank + 1
        for k in live:
            window = windows.setdefault((key, k), {"items": [], "fired": False, "dirty": False})
            window["items"].append(value)
            window["dirty"] = True
        watermark = max(watermark, ts - delay)
        fire([w for w, window in windows.items() if window["dirty"] and w[1] * slide + size <= watermark])
        for w in [w for w in windows if w[1] * slide + size + lateness <= watermark]:
            del windows[w]
    fire([w for w, window in windows.items() if window["dirty"]])
    return fired, late


def pure_state_one_item_at_a_time(
    config: WindowConfig, lateness: float, delay: float, arrivals: list[tuple[Any, int, int]]
) -> tuple[list[Row], list[int]]:
    """The pure window state, one item at a time: add against the watermark before the item,
    move the watermark, fire what it has reached."""
    state = config.build(allowed_lateness=lateness)
    watermark = -math.inf
    fired: list[Any] = []
    late: list[int] = []
    for key, ts, value in arrivals:
        if not state.add(key, ts, 0, value, watermark):
            late.append(value)
        watermark = max(watermark, ts - delay)
        fired += state.advance(watermark)
    fired += state.flush()
    return [(w.start, w.end, w.key, w.refire, list(w.items[0])) for w in fired], late


def value_rows(windows: Sequence[WindowData]) -> list[Row]:
    return [(w.start_time, w.end_time, w.key, w.refire, [item["value"] for item in w[0]]) for w in windows]


async def operator_in_batches(
    config: WindowConfig, lateness: float, delay: float, keyed: bool, batches: list[list[dict[str, Any]]]
) -> tuple[list[Row], list[int]]:
    windows = window_operator(
        1, config, key_func=user if keyed else None, allowed_lateness=lateness, out_of_orderness=delay
    )
    fired: list[Any] = []
    for batch in batches:
        fired += await windows.on_batch(0, batch)
    fired += await windows.on_finish()
    return value_rows(fired), [item["value"] for item in windows.side["late"]]


async def graph_with_batch_size(
    config: WindowConfig,
    lateness: float,
    delay: float,
    keyed: bool,
    items: list[dict[str, Any]],
    batch_size: int,
) -> tuple[list[Row], list[int], list[Row]]:
    """The whole graph: rows of ``process``, late items, and rows of ``aggregate`` collecting values."""
    env = LocalEnvironment(batch_size=batch_size)
    source = env.from_collection(items)
    if isinstance(config, TumblingWindows):
        shape: tuple[Any, ...] = ("tumbling", config.size)
    elif isinstance(config, SlidingWindows):
        shape = ("sliding", config.size, config.slide)
    else:
        shape = ("session",)
    options: dict[str, Any] = {"allowed_lateness": lateness, "out_of_orderness": delay}
    if keyed:
        options["key_func"] = user
    if isinstance(config, SessionWindows):
        options["timeout"] = config.gap
    windowed = source.window(*shape, **options)
    folded = source.window(*shape, **options).aggregate(
        lambda values, e: (*values, e["value"]), initial=(), merge=lambda a, b: a + b
    )
    processed: list[Any] = []
    late: list[Any] = []
    aggregated: list[Any] = []
    windowed.sink(processed.append)
    windowed.late().sink(late.append)
    folded.sink(aggregated.append)
    await env.execute()
    sums = [(w.start_time, w.end_time, w.key, w.refire, list(w.value)) for w in aggregated]
    return value_rows(processed), [item["value"] for item in late], sums


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    kind=st.sampled_from(["tumbling", "sliding", "session"]),
    keyed=st.booleans(),
    lateness=st.sampled_from([0, 1, 3, 10]),
    delay=st.sampled_from([0, 2, 5]),
    arrivals=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 40)), max_size=30),
)
def test_batching_never_changes_what_fires_or_what_is_late(
    data: st.DataObject, kind: str, keyed: bool, lateness: int, delay: int, arrivals: list[tuple[str, int]]
) -> None:
    # CONTRACT 3: the same input, cut into any batches, through the pure state one item at a
    # time, the operator batch by batch and whole graphs of any batch_size, fires the same
    # windows with the same items and refires, in the same order, and sends the same items to
    # late(); for tumbling and sliding windows, exactly what their definition says.
    size, slide = data.draw(st.sampled_from([(1, 1), (3, 3), (4, 2), (6, 2), (5, 5)]), label="size, slide")
    config: WindowConfig
    if kind == "tumbling":
        config = TumblingWindows(size)
    elif kind == "sliding":
        config = SlidingWindows(max(size, 2 * slide), slide)
    else:
        config = SessionWindows(size)
    items = [event(ts, value=i, user=key) for i, (key, ts) in enumerate(arrivals)]
    keyed_arrivals = [(key if keyed else None, ts, i) for i, (key, ts) in enumerate(arrivals)]
    expected = pure_state_one_item_at_a_time(config, lateness, delay, keyed_arrivals)
    if not isinstance(config, SessionWindows):
        length = config.slide if isinstance(config, SlidingWindows) else config.size
        assert brute_force_windows(int(config.size), int(length), lateness, delay, keyed_arrivals) == expected
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(items) - 1)), max_size=8), label="cuts"))
    batches = [items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)], strict=True) if items[a:b]]
    assert asyncio.run(operator_in_batches(config, lateness, delay, keyed, batches)) == expected
    batch_size = data.draw(st.sampled_from([1, 2, 3, 7, 1024]), label="batch_size")
    processed, late, aggregated = asyncio.run(
        graph_with_batch_size(config, lateness, delay, keyed, items, batch_size)
    )
    assert (processed, late) == expected
    if isinstance(config, SessionWindows):  # merged sessions fold earlier session first
        aggregated = [(*row[:4], sorted(row[4])) for row in aggregated]
        processed = [(*row[:4], sorted(row[4])) for row in processed]
    assert aggregated == processed


# -- processing time in epoch seconds, window metrics ----------------------------------------------


async def test_processing_time_windows_are_bounded_in_epoch_seconds() -> None:
    env = LocalEnvironment()  # the system clock: the loop's monotonic time for timers
    stream = env.create_stream("clicks")
    windowed = stream.window("tumbling", size=60, time="processing")
    async with env.running():
        fired = asyncio.ensure_future(windowed.collect())
        before = time.time()
        await stream.emit({})
        await anyio.wait_all_tasks_blocked()  # the window has stamped the item
        after = time.time()
    (window,) = await fired
    assert window.end_time - window.start_time == 60.0
    assert window.start_time % 60 == 0
    assert window.start_time <= after
    assert window.end_time > before


async def test_processing_time_windows_read_the_manual_clocks_epoch_and_fire_on_its_timers() -> None:
    # Monotonic time starts at 100; the wall clock is 1_700_000_000.1 s ahead of it, an offset
    # that no float sum hits exactly: the timer must still be set where epoch time reaches the end.
    clock = ManualClock(start=100.0, epoch_offset=1_699_999_979.9)  # 100 -> 1_700_000_079.9
    env = LocalEnvironment(clock=clock)
    clicks = env.create_stream("clicks")
    windowed = clicks.window("tumbling", size=60, time="processing", name="per_minute")
    async with env.running():
        fired = asyncio.ensure_future(windowed.collect())
        await clicks.emit({})
        await clock.advance(0)
        await clock.advance(20.0)  # 120, epoch 1_700_000_099.9: not yet the end
        assert env.metrics().operators["per_minute"].details["fired_windows"] == 0
        await clock.advance(0.1)  # epoch 1_700_000_100: the end, with no new item
        assert env.metrics().operators["per_minute"].details["fired_windows"] == 1
        await clicks.emit({})
    assert [(w.start_time, w.end_time, len(w[0])) for w in await fired] == [
        (1_700_000_040.0, 1_700_000_100.0, 1),
        (1_700_000_100.0, 1_700_000_160.0, 1),
    ]


def test_a_processing_time_window_needs_a_clock_with_a_wall_reading() -> None:
    class MonotonicOnly:
        def now(self) -> float:
            return 0.0

        def call_at(self, deadline: float, callback: Any) -> Any:
            raise AssertionError("never called")

    env = LocalEnvironment(clock=MonotonicOnly())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"processing-time windows need a clock with time\(\)"):
        env.create_stream("s").window("tumbling", size=60, time="processing")


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@example(start=0.0, offset=-340.4, wall=1048288.7)
@given(
    start=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    offset=st.floats(min_value=-2e9, max_value=2e9, allow_nan=False),
    wall=st.floats(min_value=-1e10, max_value=1e10, allow_nan=False),
)
def test_a_processing_time_timer_is_set_where_epoch_time_reaches_the_window_end(
    start: float, offset: float, wall: float
) -> None:
    # 1048288.7 - -340.4 + -340.4 < 1048288.7 in floats: a timer at the plain difference would
    # find the window not yet due, and be set again at the same reading, for ever.
    clock = ManualClock(start=start, epoch_offset=offset)
    windows = window_operator(clock=clock, processing_time=True)
    reading, epoch_offset = windows._monotonic(wall), windows.epoch_offset
    assert reading + epoch_offset >= wall
    assert abs(reading - (wall - epoch_offset)) <= 2 * math.ulp(
        max(abs(wall), abs(epoch_offset), abs(reading))
    )


async def test_watermark_lag_is_never_negative() -> None:
    # The lag is how far the watermark trails the latest timestamp seen: none when a watermark
    # from upstream, or processing time moving on with no item, has taken it past that.
    windows = window_operator()
    await windows.on_batch(0, [event(5), event(50)])
    assert windows.details()["watermark_lag"] == 0.0
    await windows.on_watermark(0, 500.0)
    assert (windows.details()["watermark"], windows.details()["watermark_lag"]) == (500.0, 0.0)
    clock = ManualClock(start=100.0)
    timed = window_operator(clock=clock, processing_time=True)
    await timed.on_batch(0, [{}])
    await clock.advance(30)
    await timed.on_timer(clock.now())
    assert (timed.details()["watermark"], timed.details()["watermark_lag"]) == (130.0, 0.0)
    delayed = window_operator(out_of_orderness=20)
    await delayed.on_batch(0, [event(5), event(50), event(30)])
    assert delayed.details()["watermark_lag"] == 20.0
