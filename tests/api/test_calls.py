"""Overlapping calls (``concurrency``, ``ordered``, ``timeout``, ``in_thread``) through whole graphs.

Latencies run on the manual clock: a call awaits ``clock.sleep(latency)`` and the test moves
the clock on, so nothing sleeps for real and every run is repeatable.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import DeadLetter, ErrorContext, LocalEnvironment, PipelineError
from sage_streams.testing import ManualClock, leftover_tasks


async def until_done(clock: ManualClock, run: Awaitable[Any], *, step: float = 1.0) -> Any:
    """Await ``run`` while moving ``clock`` on by ``step``; a run that never ends fails."""
    task = asyncio.ensure_future(run)
    for _ in range(5_000):
        if task.done():
            return task.result()
        await clock.advance(step)
    task.cancel()
    raise AssertionError("the graph did not finish")


def outputs_of(kind: str, item: tuple[int, int]) -> list[Any]:
    """What the test's user function gives for ``item`` as each kind of operator."""
    index, key = item
    if kind == "map":
        return [(index, key, "m")]
    if kind == "filter":
        return [item] if index % 2 == 0 else []
    return [(index, key, n) for n in range(index % 3)]


class Service:
    """An async service of per-item latencies that fails some items' first tries, recording
    what a correct operator must respect: calls in flight, and keys in flight."""

    def __init__(self, clock: ManualClock, latencies: list[int], fails: list[int], kind: str) -> None:
        self.clock = clock
        self.latencies = latencies
        self.fails = fails
        self.kind = kind
        self.tries: Counter[int] = Counter()
        self.in_flight = 0
        self.peak = 0
        self.keys_in_flight: Counter[int] = Counter()
        self.key_overlap = False

    async def __call__(self, item: tuple[int, int]) -> Any:
        index, key = item
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.keys_in_flight[key] += 1
        self.key_overlap |= self.keys_in_flight[key] > 1
        try:
            self.tries[index] += 1
            hangs = self.fails[index] < 0 and self.tries[index] == 1  # past any timeout given
            await self.clock.sleep(50 if hangs else self.latencies[index])
            if self.tries[index] <= self.fails[index]:
                raise ConnectionError(f"transient failure of {index}")
        finally:
            self.in_flight -= 1
            self.keys_in_flight[key] -= 1
        if self.kind == "map":
            return (index, key, "m")
        if self.kind == "filter":
            return index % 2 == 0
        return outputs_of("flat_map", item)


def retry_twice(stream_id: str, error: BaseException, context: ErrorContext) -> str:
    return "retry" if context.attempt <= 2 else "continue"


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(
    plan=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.sampled_from([0, 0, 0, 1, 2, 9, -1]))),
    concurrency=st.integers(1, 6),
    ordered=st.sampled_from([True, False, "key"]),
    kind=st.sampled_from(["map", "filter", "flat_map"]),
    batch_size=st.integers(1, 5),
    buffer_size=st.integers(1, 6),
    timeout=st.sampled_from([None, 6.0]),
)
def test_random_latencies_and_failures_keep_order_bound_and_every_item(
    plan: list[tuple[int, int, int]],
    concurrency: int,
    ordered: Any,
    kind: str,
    batch_size: int,
    buffer_size: int,
    timeout: float | None,
) -> None:
    """Ordered output is input order, unordered a permutation, per-key output keeps each key's
    order; never more than ``concurrency`` calls in flight, never two of one key with
    ``"key"``; retried items come out once, items failing a third time are dead letters, once.
    A fail count of -1 makes an item's first try hang past the timeout (when one is given).

    With ``concurrency=1`` and no timeout the operator is a step of its chain: the same holds."""
    items = [(index, key) for index, (key, _, _) in enumerate(plan)]
    latencies = [latency for _, latency, _ in plan]
    fails = [fail for _, _, fail in plan]

    async def main() -> tuple[list[Any], list[DeadLetter], LocalEnvironment]:
        clock = ManualClock()
        env = LocalEnvironment(clock=clock, batch_size=batch_size, buffer_size=buffer_size)
        service = Service(clock, latencies, fails, kind)
        source = env.from_collection(items, name="items")
        source.on_error(retry_twice)
        key = (lambda item: item[1]) if ordered == "key" else None
        options = {"concurrency": concurrency, "ordered": ordered, "key_func": key, "timeout": timeout}
        called = getattr(source, kind)(service, name="call", **options)
        out: list[Any] = []
        letters: list[DeadLetter] = []
        called.sink(out.append)
        source.errors().sink(letters.append)
        await until_done(clock, env.execute())
        assert service.peak <= concurrency
        assert not (ordered == "key" and service.key_overlap)
        return out, letters, env

    out, letters, env = asyncio.run(main())
    lost = [item for item in items if fails[item[0]] >= 3]
    expected = [value for item in items if item not in lost for value in outputs_of(kind, item)]
    if ordered is True:
        assert out == expected
    else:
        assert sorted(out) == sorted(expected)
    if ordered == "key":
        for key in range(4):
            assert [v for v in out if v[1] == key] == [v for v in expected if v[1] == key]
    assert sorted(letter.item for letter in letters) == lost  # dead letters leave as calls fail
    metrics = env.metrics().operators["call"]
    failed_tries = sum(min(fail, 3) for fail in fails if fail >= 0)
    timeouts = sum(fail < 0 for fail in fails) if timeout is not None else 0
    failed_tries += timeouts
    assert (metrics.errors, metrics.dead_letters) == (failed_tries, len(lost))
    assert metrics.retries == failed_tries - len(lost)
    assert (metrics.items_in, metrics.items_out) == (len(items), len(expected))
    if concurrency > 1 or timeout is not None:
        assert metrics.details["completed"] == len(items)
        assert metrics.details["timed_out"] == timeouts
        assert metrics.details["in_flight"] == 0


async def test_calls_overlap_up_to_the_concurrency_and_results_keep_input_order() -> None:
    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    latencies = {0: 5, 1: 1, 2: 3, 3: 1, 4: 2}
    service = Service(clock, list(latencies.values()), [0] * 5, "map")
    stream = env.from_collection([(i, 0) for i in range(5)]).map(service, concurrency=3)
    assert await until_done(clock, stream.collect()) == [(i, 0, "m") for i in range(5)]
    assert service.peak == 3


async def test_unordered_results_leave_as_calls_complete() -> None:
    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    service = Service(clock, [5, 1, 3], [0] * 3, "map")
    stream = env.from_collection([(0, 0), (1, 0), (2, 0)]).map(service, concurrency=3, ordered=False)
    assert await until_done(clock, stream.collect()) == [(1, 0, "m"), (2, 0, "m"), (0, 0, "m")]


async def test_per_key_order_takes_the_key_by_key_and_runs_one_call_per_key() -> None:
    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    # Key 0's first call is slow: its second waits for it, key 1 overtakes both.
    service = Service(clock, [5, 1, 1], [0] * 3, "map")
    keyed = env.from_collection([(0, 0), (1, 0), (2, 1)]).key_by(lambda item: item[1])
    stream = keyed.map(service, concurrency=3, ordered="key", name="per-key")
    assert await until_done(clock, stream.collect()) == [(2, 1, "m"), (0, 0, "m"), (1, 0, "m")]
    assert not service.key_overlap
    assert env.metrics().operators["per-key"].mode == "key"


async def test_a_call_past_its_timeout_is_cancelled_and_is_an_error_of_its_item() -> None:
    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    cancelled: list[int] = []

    async def lookup(x: int) -> int:
        try:
            await clock.sleep(10 if x == 2 else 1)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x * 10

    source = env.from_collection([1, 2, 3], name="numbers")
    source.on_error(lambda stream_id, error, context: "continue")
    out = source.map(lookup, concurrency=2, timeout=5, name="lookup")
    letters: list[DeadLetter] = []
    source.errors().sink(letters.append)
    assert await until_done(clock, out.collect()) == [10, 30]
    assert cancelled == [2]
    assert [(letter.item, type(letter.error)) for letter in letters] == [(2, TimeoutError)]
    assert "longer than its timeout of 5 s" in str(letters[0].error)
    metrics = env.metrics().operators["lookup"]
    assert (metrics.errors, metrics.dead_letters, metrics.details["timed_out"]) == (1, 1, 1.0)


async def test_retry_after_a_timeout_calls_that_item_again_only() -> None:
    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    tries: Counter[int] = Counter()

    async def flaky(x: int) -> int:
        tries[x] += 1
        await clock.sleep(10 if x == 2 and tries[x] == 1 else 1)
        return x

    source = env.from_collection([1, 2, 3])
    source.on_error(lambda stream_id, error, context: "retry")
    out = source.map(flaky, concurrency=3, timeout=5, name="flaky")
    assert await until_done(clock, out.collect()) == [1, 2, 3]
    assert tries == {1: 1, 2: 2, 3: 1}
    assert env.metrics().operators["flaky"].retries == 1


async def test_a_function_returning_no_awaitable_is_an_error_of_each_item() -> None:
    env = LocalEnvironment()
    source = env.from_collection([1, 2])
    source.on_error(lambda stream_id, error, context: "continue")
    letters: list[DeadLetter] = []
    source.errors().sink(letters.append)
    out = await source.map(lambda x: x + 1, concurrency=2, name="plain").collect()
    assert out == []
    assert [letter.item for letter in letters] == [1, 2]
    assert all(isinstance(letter.error, TypeError) for letter in letters)
    assert "must return an awaitable" in str(letters[0].error)
    assert "in_thread=True" in str(letters[0].error)


async def test_a_failing_call_stops_the_graph_and_cancels_every_call_in_flight() -> None:
    env = LocalEnvironment()
    cancelled: list[int] = []
    never = asyncio.Event()

    async def call(x: int) -> int:
        if x == 3:
            await asyncio.sleep(0)
            raise ValueError("bad item 3")
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    stream = env.from_collection(range(10)).map(call, concurrency=4, name="call")
    with pytest.raises(PipelineError) as raised:
        await stream.collect()
    assert raised.value.operator == "call"
    assert raised.value.item == 3
    assert isinstance(raised.value.__cause__, ValueError)
    assert sorted(cancelled) == [0, 1, 2]
    assert not leftover_tasks()


async def test_cancelling_the_reader_cancels_and_awaits_every_call() -> None:
    env = LocalEnvironment()
    started, finished = asyncio.Event(), []

    async def call(x: int) -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that awaits: it must have run before the end
            finished.append(x)
        return x

    task = asyncio.ensure_future(env.from_collection(range(5)).map(call, concurrency=3).collect())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(finished) == [0, 1, 2]
    assert not leftover_tasks()


async def test_calls_in_flight_hold_the_producer_back() -> None:
    env = LocalEnvironment(buffer_size=4, batch_size=2)
    events = env.create_stream("events")
    release = asyncio.Event()
    calls: list[int] = []

    async def slow(x: int) -> int:
        calls.append(x)
        await release.wait()
        return x

    out = events.map(slow, concurrency=3, name="slow")
    accepted: list[int] = []

    async def produce() -> None:
        for x in range(100):
            await events.emit(x)
            accepted.append(x)
        await events.close()

    async with env.running():
        collected = asyncio.ensure_future(out.collect())
        producer = asyncio.ensure_future(produce())
        for _ in range(200):
            await asyncio.sleep(0)
        assert not producer.done()
        assert len(calls) == 3  # no more than the concurrency, while none returns
        # What the producer got rid of: the inbox, the operator's channel, one batch, the calls.
        assert len(accepted) <= 4 + 4 + 2 + 3
        assert env.metrics().operators["slow"].details["in_flight"] == 3
        release.set()
        await producer
        assert await collected == list(range(100))


async def test_every_call_finishes_before_the_stream_ends() -> None:
    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    written: list[int] = []

    async def write(x: int) -> None:
        await clock.sleep(3 - x % 3)
        written.append(x)

    sink = env.from_collection(range(9)).sink(write, concurrency=4, name="write")
    assert await until_done(clock, sink.collect()) == []
    assert sorted(written) == list(range(9))
    assert env.metrics().operators["write"].items_in == 9


async def test_a_key_function_that_fails_is_an_error_of_its_item() -> None:
    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    service = Service(clock, [1] * 4, [0] * 4, "map")
    source = env.from_collection([(0, 0), (1, None), (2, 1), (3, 0)])
    source.on_error(lambda stream_id, error, context: "continue")
    letters: list[DeadLetter] = []
    source.errors().sink(letters.append)

    def key(item: tuple[int, Any]) -> Any:
        return {0: "a", 1: "b"}[item[1]]

    out = source.map(service, concurrency=2, ordered="key", key_func=key)
    result = await until_done(clock, out.collect())
    assert sorted(result) == [(0, 0, "m"), (2, 1, "m"), (3, 0, "m")]
    assert [(letter.item, type(letter.error)) for letter in letters] == [((1, None), KeyError)]


def test_blocking_calls_run_in_threads_at_once_and_the_loop_goes_on() -> None:
    barrier = threading.Barrier(4, timeout=30)
    threads: set[int] = set()

    def blocking(x: int) -> int:
        threads.add(threading.get_ident())
        barrier.wait()  # only returns once four calls are running at the same time
        time.sleep(0.01)
        return x * 2

    async def main() -> tuple[list[int], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        ticking = asyncio.ensure_future(ticker())
        env = LocalEnvironment()
        out = await env.from_collection(range(8)).map(blocking, in_thread=True, concurrency=4).collect()
        ticking.cancel()
        return out, ticks

    out, ticks = asyncio.run(main())
    assert out == [x * 2 for x in range(8)]
    assert len(threads) >= 4
    assert threading.get_ident() not in threads
    assert ticks > 0


async def test_blocking_flat_map_lists_its_results_in_the_thread_and_keeps_order() -> None:
    env = LocalEnvironment()
    out = env.from_collection([3, 1, 2]).flat_map(range, in_thread=True, concurrency=2)
    assert await out.collect() == [0, 1, 2, 0, 0, 1]


async def test_windows_are_processed_concurrently_with_the_same_results() -> None:
    events = [{"timestamp": t, "user": t % 3} for t in range(30)]

    async def total(window: Any, state: Any, scale: int) -> tuple[Any, float, int]:
        await asyncio.sleep(0)
        return (window.key, window.start_time, scale * sum(e["timestamp"] for items in window for e in items))

    results = []
    for concurrency in (1, 4):
        env = LocalEnvironment()
        windowed = env.from_collection(events).window("tumbling", size=10, key_func=lambda e: e["user"])
        results.append(await windowed.process(total, concurrency=concurrency, scale=2).collect())
    assert results[0] == results[1]
    assert len(results[0]) == 9


def test_metrics_report_calls_and_latency_percentiles() -> None:
    async def main() -> Any:
        clock = ManualClock()
        env = LocalEnvironment(clock=clock)
        latencies = [1] * 98 + [5, 5]
        service = Service(clock, latencies, [0] * 100, "map")
        stream = env.from_collection([(i, 0) for i in range(100)]).map(service, concurrency=10, name="io")
        await until_done(clock, stream.collect())
        return env.metrics().operators["io"]

    metrics = asyncio.run(main())
    assert metrics.mode == "ordered"
    assert metrics.details == {
        "concurrency": 10.0,
        "in_flight": 0.0,
        "held": 0.0,
        "completed": 100.0,
        "timed_out": 0.0,
        "latency_p50": 1.0,
        "latency_p99": 5.0,
    }


async def fetch(x: int) -> int:
    return x


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda s: s.map(fetch, concurrency=0), ValueError, "concurrency"),
        (lambda s: s.map(fetch, concurrency=2, ordered="yes"), ValueError, "ordered must be"),
        (lambda s: s.map(fetch, concurrency=2, ordered=1), ValueError, "ordered must be"),
        (lambda s: s.map(fetch, concurrency=2, timeout=0), ValueError, "timeout"),
        (lambda s: s.map(fetch, concurrency=2, ordered="key"), ValueError, "needs a key"),
        (lambda s: s.map(fetch, concurrency=2, key_func=str), ValueError, "give ordered='key'"),
        (lambda s: s.map(fetch, in_thread=True), TypeError, "is async"),
        (lambda s: s.filter(fetch, in_thread="yes"), TypeError, "in_thread must be"),
        (lambda s: s.map(fetch, concurency=2), TypeError, "unexpected keyword argument 'concurency'"),
    ],
)
def test_bad_call_options_are_refused_when_the_graph_is_built(
    build: Callable[[Any], Any], error: type[Exception], message: str
) -> None:
    source = LocalEnvironment().from_collection([1])
    with pytest.raises(error, match=message):
        build(source)


async def test_default_options_keep_the_operator_a_step_of_its_chain() -> None:
    env = LocalEnvironment()
    stream = env.from_collection([1, 2]).map(fetch, ordered=False).filter(fetch, ordered="key", key_func=str)
    assert await stream.collect() == [1, 2]
    assert stream._node.calls is None
    assert env.metrics().operators[stream.name].mode is None


async def test_joined_batches_are_processed_concurrently_with_the_same_results() -> None:
    async def enrich(pairs: list[tuple[Any, Any]], state: Any, unit: str) -> list[str]:
        await asyncio.sleep(0)
        return [f"{event['user']}:{profile['name']}:{unit}" for profile, event in pairs]

    events = [{"user": i % 5, "n": i} for i in range(600)]
    profiles = [{"user": u, "name": f"u{u}"} for u in range(5)]
    results = []
    for options in ({}, {"concurrency": 4}, {"concurrency": 4, "ordered": False}):
        env = LocalEnvironment(batch_size=7)
        joined = (
            env.from_collection(profiles)
            .connect(env.from_collection(events))
            .join(key_func=lambda item: item["user"])
        )
        out = joined.process(enrich, unit="x", name="enrich", **options)
        results.append(await out.collect())
        assert env.metrics().operators["enrich"].kind == "operator"
    assert results[1] == results[0]
    assert sorted(results[2]) == sorted(results[0])
    assert len(results[0]) == 600


async def test_a_failing_batch_call_is_an_error_of_its_batch() -> None:
    async def check(pairs: list[Any], state: Any) -> list[Any]:
        if any(right == 3 for _, right in pairs):
            raise ValueError("bad batch")
        return pairs

    env = LocalEnvironment(batch_size=2)
    left = env.from_collection([1])
    joined = left.connect(env.from_collection([1, 2, 3, 4])).join(condition=lambda a, b: True)
    joined.on_error(lambda stream_id, error, context: "continue")
    letters: list[DeadLetter] = []
    joined.errors().sink(letters.append)
    out = await joined.process(check, concurrency=2, name="check").collect()
    lost = [pair for letter in letters for pair in letter.item]
    assert sorted(out + lost) == [(1, 1), (1, 2), (1, 3), (1, 4)]
    assert (1, 3) in lost
    assert all(isinstance(letter.error, ValueError) for letter in letters)


def test_a_batch_call_has_no_key_to_order_by() -> None:
    env = LocalEnvironment()
    joined = env.from_collection([1]).connect(env.from_collection([1])).join(condition=lambda a, b: True)
    with pytest.raises(ValueError, match="no key to order by"):
        joined.process(fetch, concurrency=2, ordered="key", key_func=str)


async def test_a_cancelled_error_nobody_aimed_at_the_call_is_an_error_of_its_item() -> None:
    env = LocalEnvironment()

    async def awaits_a_cancelled_future(x: int) -> int:
        if x == 2:
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            future.cancel()
            return await future
        return x

    source = env.from_collection([1, 2, 3])
    source.on_error(lambda stream_id, error, context: "continue")
    letters: list[DeadLetter] = []
    source.errors().sink(letters.append)
    out = await source.map(awaits_a_cancelled_future, concurrency=2).collect()
    assert out == [1, 3]
    assert [(letter.item, type(letter.error)) for letter in letters] == [(2, RuntimeError)]
    assert isinstance(letters[0].error.__cause__, asyncio.CancelledError)


def test_watermarks_wait_for_the_calls_before_them() -> None:
    """Windows of windows, with overlapping calls between them whose later windows finish
    first: no result reaches the second window after the watermark that would make it late."""

    async def run(concurrency: int, ordered: Any) -> tuple[list[Any], list[Any]]:
        clock = ManualClock()
        env = LocalEnvironment(clock=clock, batch_size=3)
        events = [{"timestamp": t, "user": t % 2} for t in range(60)]
        windows = env.from_collection(events).window("tumbling", size=5, key_func=lambda e: e["user"])

        async def total(window: Any, state: Any) -> dict[str, Any]:
            await clock.sleep(12 - window.start_time / 5)  # the earlier windows are the slower
            return {"timestamp": window.start_time, "n": sum(len(items) for items in window)}

        totals = windows.process(total, concurrency=concurrency, ordered=ordered)
        second = totals.window("tumbling", size=20)
        sums = second.aggregate(lambda acc, record: acc + record["n"], initial=0)
        out: list[Any] = []
        late_items: list[Any] = []
        sums.sink(out.append)
        second.late().sink(late_items.append)
        await until_done(clock, env.execute())
        return [(a.start_time, a.value) for a in out], late_items

    for concurrency, ordered in ((1, True), (6, True), (6, False)):
        sums, late_items = asyncio.run(run(concurrency, ordered))
        assert late_items == []
        assert sums == [(0.0, 20), (20.0, 20), (40.0, 20)]


async def test_blocking_calls_follow_the_same_error_and_timeout_rules() -> None:
    clock = ManualClock()
    env = LocalEnvironment(clock=clock)
    gate = threading.Event()

    def blocking(x: int) -> int:
        if x == 2:
            gate.wait(60)  # past the timeout: abandoned, its thread finishes later
        if x == 4:
            raise ValueError("bad 4")
        return x

    source = env.from_collection([1, 2, 3, 4, 5])
    source.on_error(lambda stream_id, error, context: "continue")
    letters: list[DeadLetter] = []
    source.errors().sink(letters.append)
    out = source.map(blocking, in_thread=True, concurrency=2, timeout=1000, name="blocking")
    try:
        result = await until_done(clock, out.collect())
    finally:
        gate.set()
    assert result == [1, 3, 5]
    assert sorted((letter.item, type(letter.error).__name__) for letter in letters) == [
        (2, "TimeoutError"),
        (4, "ValueError"),
    ]
    assert env.metrics().operators["blocking"].details["timed_out"] == 1
