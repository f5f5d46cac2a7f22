"""Fusion preserves order and results: any chain of stateless steps, fused or split by fan-out,
with sync or async functions and any batch size, gives what a plain Python loop gives."""

from __future__ import annotations

import asyncio
import linecache
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import LocalEnvironment
from sage_streams._codegen.chain import FusedChain
from sage_streams._codegen.steps import Lookup, Step

# An operation: (kind, parameter, async?)
Op = tuple[str, int, bool]

ops = st.lists(
    st.tuples(st.sampled_from(["add", "mul", "keep_mod", "repeat", "key"]), st.integers(1, 4), st.booleans()),
    max_size=6,
)


def reference(items: list[int], pipeline: list[Op]) -> list[int]:
    """The model: each operation applied to the whole list in turn."""
    for kind, k, _ in pipeline:
        if kind == "add":
            items = [x + k for x in items]
        elif kind == "mul":
            items = [x * k for x in items]
        elif kind == "keep_mod":
            items = [x for x in items if x % (k + 1) != 0]
        elif kind == "repeat":
            items = [x for x in items for _ in range(k % 3)]
    return items


def function(kind: str, k: int, is_async: bool) -> tuple[str, Callable[[int], Any]]:
    sync: dict[str, tuple[str, Callable[[int], Any]]] = {
        "add": ("map", lambda x: x + k),
        "mul": ("map", lambda x: x * k),
        "keep_mod": ("filter", lambda x: x % (k + 1) != 0),
        "repeat": ("flat_map", lambda x: [x] * (k % 3)),
        "key": ("key_by", lambda x: x % 7),
    }
    method, fn = sync[kind]
    if not is_async:
        return method, fn

    async def wrapped(x: int) -> Any:
        await asyncio.sleep(0)  # a yield, so the step really suspends; not a wait
        return fn(x)

    return method, wrapped


async def run_pipeline(items: list[int], pipeline: list[Op], split_at: int | None, batch: int) -> list[int]:
    env = LocalEnvironment(buffer_size=max(batch, 2), batch_size=batch)
    stream = env.from_collection(items)
    for index, (kind, k, is_async) in enumerate(pipeline):
        if index == split_at:
            stream.map(lambda x: x)  # a second consumer: no fusion across this point
        method, fn = function(kind, k, is_async)
        stream = getattr(stream, method)(fn)
    return await stream.collect()


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(st.integers(-50, 50), max_size=60),
    pipeline=ops,
    split_at=st.none() | st.integers(0, 5),
    batch=st.integers(1, 9),
)
def test_any_chain_matches_the_reference(
    items: list[int], pipeline: list[Op], split_at: int | None, batch: int
) -> None:
    assert asyncio.run(run_pipeline(items, pipeline, split_at, batch)) == reference(items, pipeline)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(items=st.lists(st.integers(-50, 50), max_size=40), pipeline=ops, batch=st.integers(1, 9))
def test_push_streams_give_the_same_results(items: list[int], pipeline: list[Op], batch: int) -> None:
    async def run() -> list[int]:
        env = LocalEnvironment(buffer_size=3, batch_size=batch)
        source = env.create_stream("source")
        stream = source
        for kind, k, is_async in pipeline:
            method, fn = function(kind, k, is_async)
            stream = getattr(stream, method)(fn)

        async def feed() -> None:
            for item in items:
                await source.emit(item)
            await source.close()

        result, _ = await asyncio.gather(stream.collect(), feed())
        return result

    assert asyncio.run(run()) == reference(items, pipeline)


async def test_metrics_count_every_fused_operator_exactly() -> None:
    env = LocalEnvironment(batch_size=7)
    source = env.from_collection(range(100), name="numbers")
    evens = source.filter(lambda x: x % 2 == 0, name="evens")
    pairs = evens.flat_map(lambda x: [x, x], name="pairs")
    small = pairs.filter(lambda x: x < 50, name="small")
    small.map(str, name="text").sink(lambda x: None, name="out")
    await env.execute()
    counts = {name: (m.items_in, m.items_out) for name, m in env.metrics().operators.items()}
    assert counts == {
        "numbers": (100, 100),
        "evens": (100, 50),
        "pairs": (50, 100),
        "small": (100, 50),
        "text": (50, 50),
        "out": (50, 0),
    }


async def test_metrics_of_a_comprehension_chain_with_several_counted_steps() -> None:
    env = LocalEnvironment(batch_size=16)
    stream = (
        env.from_collection(range(60))
        .filter(lambda x: x % 3 == 0, name="threes")
        .flat_map(lambda x: [x] * 3, name="triple")
        .filter(lambda x: x % 2 == 0, name="evens")
    )
    assert len(await stream.collect()) == 30
    counts = {name: (m.items_in, m.items_out) for name, m in env.metrics().operators.items()}
    assert counts["threes"] == (60, 20)
    assert counts["triple"] == (20, 60)
    assert counts["evens"] == (60, 30)


async def test_metrics_report_channels_of_fanned_out_streams() -> None:
    env = LocalEnvironment(buffer_size=50)
    source = env.from_collection(range(10), name="src")
    source.map(abs, name="a")
    source.map(abs, name="b")
    await env.execute()
    snapshot = env.metrics()
    assert set(snapshot.channels) == {"src->a", "src->b"}
    stats = snapshot.channels["src->a"]
    assert (stats.capacity, stats.depth, stats.peak, stats.open_senders) == (50, 0, 10, 0)
    assert snapshot.elapsed > 0
    assert snapshot.operators["a"].rate > 0


def test_one_or_two_emission_points_give_the_same_outputs() -> None:
    steps = [Step("map", lambda x: x + 1, "inc"), Step("filter", lambda x: x % 2 == 0, "even")]
    assert FusedChain(steps, [2])(iter(range(6))) == (([2, 4, 6],), ())  # the filter's count: derived
    assert FusedChain(steps, [1, 2])(iter(range(6))) == (([1, 2, 3, 4, 5, 6], [2, 4, 6]), ())
    assert FusedChain(steps, [1])(iter(range(6))) == (([1, 2, 3, 4, 5, 6],), (3,))  # counted: no last point


def test_explain_finds_the_step_and_item_whatever_the_points() -> None:
    def fragile(x: int) -> int:
        if x == 3:
            raise ValueError(x)
        return x

    steps = [Step("map", lambda x: x + 1, "inc"), Step("map", fragile, "fragile")]
    for points in ([2], [1, 2]):
        chain = FusedChain(steps, points)
        iterator = iter([0, 1, 2, 3])
        try:
            chain(iterator)
        except ValueError as exc:
            failure = chain.explain(exc, 4, iterator)
        assert (failure.step, failure.item, failure.consumed) == (1, 3, 3)


async def test_metrics_read_while_running_are_up_to_date() -> None:
    env = LocalEnvironment()
    clicks = env.create_stream("clicks")
    arrived = asyncio.Event()
    clicks.filter(lambda x: x > 1, name="big").sink(lambda x: arrived.set(), name="note")
    async with env.running():
        for value in (1, 2):
            await clicks.emit(value)
        await asyncio.wait_for(arrived.wait(), 5)
        live = env.metrics().operators
        assert (live["clicks"].items_in, live["big"].items_in, live["big"].items_out) == (2, 2, 1)
        await clicks.emit(3)
    final = env.metrics().operators
    assert (final["big"].items_in, final["note"].items_in) == (3, 2)


# -- lookup steps: a join against a finished table, fused into the chain ----------------------

PROFILES = {1: "ann", 2: "bob"}


def user_of(event: dict[str, Any]) -> Any:
    return event["user"]


def greeting(pair: tuple[dict[str, Any], str]) -> str:
    event, name = pair
    return f"{name}:{event['page']}"


def greeting_reversed(pair: tuple[str, dict[str, Any]]) -> str:
    name, event = pair
    return f"{name}:{event['page']}"


def test_a_lookup_step_pairs_items_with_their_partner_and_drops_misses() -> None:
    events = [{"user": 1, "page": "/"}, {"user": 3, "page": "/x"}, {"user": 2, "page": "/y"}]
    for item_first, follow in ((True, greeting), (False, greeting_reversed)):
        steps = [Step("lookup", user_of, "join", Lookup(PROFILES, item_first)), Step("map", follow, "greet")]
        pairs = [(e, PROFILES[e["user"]]) for e in events if e["user"] in PROFILES]
        if not item_first:
            pairs = [(name, event) for event, name in pairs]
        for inline in (False, True):
            chain = FusedChain(steps, [1, 2], inline=inline)
            assert chain(iter(events)) == ((pairs, ["ann:/", "bob:/y"]), ())  # the misses: derived
            assert chain.counts(3, [], 2) == [(3, 2), (2, 2)]
            resumable = FusedChain(steps, [2], inline=inline, resumable=True)
            assert resumable(iter(events)) == ((["ann:/", "bob:/y"],), (3, 2, 2))


def test_a_lookup_steps_bad_keys_fail_with_the_errors_of_a_join() -> None:
    steps = [
        Step(
            "lookup",
            lambda event: event["user"] if "user" in event else event["id"],
            "join",
            Lookup(PROFILES, True),
        )
    ]
    cases = [
        ({"user": None}, ValueError, "key function returned None"),
        ({"user": [1]}, TypeError, r"key function returned an unhashable value \[1\]"),
        ({"name": "x"}, KeyError, "'id'"),
    ]
    for inline in (False, True):
        chain = FusedChain(steps, [1], inline=inline)
        for bad, kind, message in cases:
            iterator = iter([{"user": 1}, bad, {"user": 2}])
            with pytest.raises(kind, match=message) as caught:
                chain(iterator)
            failure = chain.explain(caught.value, 3, iterator)
            assert (failure.step, failure.item, failure.consumed) == (0, bad, 2)
        with pytest.raises(TypeError) as caught:
            chain(iter([{"user": [1]}]))
        assert isinstance(caught.value.__cause__, TypeError)  # what the dict lookup raised


def test_an_inlined_step_after_a_lookup_unpacks_the_pair_without_building_it() -> None:
    def fragile(pair: tuple[dict[str, Any], str]) -> str:
        event, name = pair
        return name + event["page"]  # no "page": a KeyError of this step

    for item_first in (True, False):
        follow = fragile if item_first else lambda pair: pair[1]["page"] + pair[0]
        steps = [Step("lookup", user_of, "join", Lookup(PROFILES, item_first)), Step("map", follow, "greet")]
        chain = FusedChain(steps, [2], inline="all")  # fragile is two statements
        source = "".join(linecache.getlines(chain.function.__code__.co_filename))
        pair = "(v0, p0)" if item_first else "(p0, v0)"
        # Read once, the pair is pasted where it is read; read twice, it is built once first.
        assert "v1 = (" not in source
        assert (f"u1_event, u1_name = {pair}" in source) == item_first
        assert (f"u1_pair = {pair}" in source) != item_first
        iterator = iter([{"user": 1, "page": "/"}, {"user": 2}])
        with pytest.raises(KeyError) as caught:
            chain(iterator)
        failure = chain.explain(caught.value, 2, iterator)
        expected = ({"user": 2}, "bob") if item_first else ("bob", {"user": 2})
        assert (failure.step, failure.item) == (1, expected)


@pytest.mark.parametrize("kind", ["map", "filter", "key_by", "flat_map", "sink"])
@pytest.mark.parametrize("item_first", [True, False])
def test_every_kind_of_step_after_a_lookup_gives_what_it_gives_on_the_pairs(
    kind: str, item_first: bool
) -> None:
    events = [{"user": 1, "page": "/"}, {"user": 3, "page": "/x"}, {"user": 2, "page": "/y"}, {"user": 1}]
    pairs = [(e, PROFILES[e["user"]]) for e in events if e["user"] in PROFILES]
    if not item_first:
        pairs = [(name, event) for event, name in pairs]
    sunk: list[Any] = []
    follow, expected = {
        "map": (lambda pair: repr(pair), [repr(pair) for pair in pairs]),
        "filter": (lambda pair: "ann" in pair, [pair for pair in pairs if "ann" in pair]),
        "key_by": (lambda pair: len(pair), pairs),
        "flat_map": (lambda pair: [pair, pair], [pair for pair in pairs for _ in range(2)]),
        "sink": (lambda pair: sunk.append(pair), []),
    }[kind]
    steps = [Step("lookup", user_of, "join", Lookup(PROFILES, item_first)), Step(kind, follow, kind)]  # type: ignore[arg-type]
    for inline in (False, True):
        for resumable in (False, True):
            for points in ([2], [1, 2]):
                sunk.clear()
                chain = FusedChain(steps, points, inline=inline, resumable=resumable)
                outputs = chain(iter(events))[0]
                assert outputs[-1] == expected
                if len(outputs) == 2:
                    assert outputs[0] == pairs
                assert sunk == (pairs if kind == "sink" else [])


# -- chains of any length, and a chain of nothing but a no-op sink ---------------------------------


def _spread(x: int) -> list[int]:
    return [x] if x % 3 else [x, x + 1]


@pytest.mark.parametrize("inline", [True, "all", False])
@pytest.mark.parametrize("handled", [False, True])
@pytest.mark.parametrize("length", [19, 20, 99, 210])
async def test_a_chain_of_any_number_of_flat_maps_compiles_and_runs(
    length: int, handled: bool, inline: Any
) -> None:
    env = LocalEnvironment(inline=inline, batch_size=4)
    stream = env.from_collection(range(6))
    if handled:
        stream = stream.on_error(lambda stream_id, error, context: "continue")
    for i in range(length):
        stream = stream.flat_map(_spread if i % 50 == 0 else lambda x: [x], name=f"f{i}")
    got: list[int] = []
    stream.sink(got.append)
    await env.execute()
    expected = list(range(6))
    for i in range(length):
        expected = [y for x in expected for y in (_spread(x) if i % 50 == 0 else [x])]
    assert got == expected
    assert env.metrics().operators["f0"].items_in == 6


LONG_CHAIN: list[tuple[str, Callable[[int], Any]]] = [
    ("map", lambda x: x + 1),
    ("flat_map", lambda x: [x]),
    ("filter", lambda x: 100 // (x - 50) != 1000),  # raises for 50
    ("key_by", lambda x: x % 3),
]


def _long_chain_reference(items: list[int], length: int, fan_out: int) -> tuple[list[Any], ...]:
    """What the chain of ``length`` steps of ``LONG_CHAIN`` gives, a skipped item at a time."""
    got, middle, skipped = [], [], []
    for item in items:
        values = [item]
        for i in range(length):
            kind, fn = LONG_CHAIN[i % 4]
            try:
                if kind == "map":
                    values = [fn(x) for x in values]
                elif kind == "flat_map":
                    values = [y for x in values for y in fn(x)]
                elif kind == "filter":
                    values = [x for x in values if fn(x)]
            except ZeroDivisionError:
                skipped.append((f"op{i}", 50))
                values = []
            if i == fan_out:
                middle += values
        got += values
    return got, middle, skipped


@pytest.mark.parametrize("inline", [True, False])
async def test_a_chain_of_hundreds_of_operators_with_fan_out_and_failures(inline: bool) -> None:
    env = LocalEnvironment(inline=inline, batch_size=5)
    seen: list[Any] = []

    def skip(stream_id: str, error: BaseException, context: Any) -> str:
        seen.append((context.operator, context.item))
        return "continue"

    items = list(range(0, 200, 7))  # those below 50 reach 50 at a filter
    stream = env.from_collection(items).on_error(skip)
    middle: list[int] = []
    for i in range(240):
        kind, fn = LONG_CHAIN[i % 4]
        stream = getattr(stream, kind)(fn, name=f"op{i}")
        if i == 120:
            stream.sink(middle.append)
    got: list[int] = []
    stream.sink(got.append)
    await env.execute()
    expected_got, expected_middle, expected_seen = _long_chain_reference(items, 240, 120)
    assert (got, middle) == (expected_got, expected_middle)
    # Loops split by nesting take a batch through one loop, then the next: errors of one batch
    # may come in another order than item by item.
    assert sorted(seen) == sorted(expected_seen)
    assert len(seen) == 8


@pytest.mark.parametrize("inline", [True, "all", False])
async def test_a_no_op_sink_alone_compiles_and_runs(inline: Any) -> None:
    def nothing(x: int) -> None:
        return None

    for sink in (lambda x: None, nothing):
        env = LocalEnvironment(inline=inline)
        done = env.from_collection([1, 2, 3]).sink(sink, name="noop")
        assert await done.collect() == []
        assert (env.metrics().operators["noop"].items_in, env.metrics().operators["noop"].items_out) == (3, 0)
