"""The scope of an error policy: every operator downstream of the stream it is set on, operators
of several inputs (joins, windows, synchronize, process) included, and which policy wins when
their inputs carry different ones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import (
    ConnectedStreams,
    DataStream,
    DeadLetter,
    ErrorContext,
    ErrorThresholdExceeded,
    LocalEnvironment,
    PipelineError,
    StreamReader,
    StreamState,
)
from sage_streams._graph.node import nearest_policy
from tests.support import run_with_dead_letters, user, watching_lookups

Call = tuple[str, str, str, Any]
"""What a handler was told: (handler label, stream_id, operator, item)."""


def handler(label: str, calls: list[Call], decision: str = "continue") -> Callable[..., str]:
    """A handler answering ``decision`` that records its label, stream_id, operator and item."""

    def handle(stream_id: str, error: BaseException, context: ErrorContext) -> str:
        calls.append((label, stream_id, context.operator, context.item))
        return decision

    return handle


def letters_of(letters: list[DeadLetter]) -> list[tuple[str, str, str, Any]]:
    return [(type(d.error).__name__, d.stream_id, d.operator, d.item) for d in letters]


EVENTS = [{"user": 1, "seq": 0}, {"seq": 1}, {"user": 2, "seq": 2}]
PROFILES = [{"user": 1, "name": "ann"}, {"user": 2, "name": "bob"}]


# -- every kind of operator of several inputs is covered by its input's policy -----------------


@pytest.mark.parametrize("join_type", ["inner", "left", "outer"])
@pytest.mark.parametrize("events_first", [True, False])
async def test_a_join_is_covered_by_the_policy_of_its_input(join_type: str, events_first: bool) -> None:
    env = LocalEnvironment()
    events = env.from_collection(EVENTS, name="events")
    profiles = env.from_collection(PROFILES, name="profiles")
    calls: list[Call] = []
    events.on_error(handler("events", calls))
    inputs = [events, profiles] if events_first else [profiles, events]
    joined = ConnectedStreams(inputs).join(join_type, key_func=user, name="j")
    out, letters = await run_with_dead_letters(env, joined, events.errors())
    pairs = [pair if events_first else pair[::-1] for pair in out]
    assert sorted((event["seq"], profile["name"]) for event, profile in pairs) == [(0, "ann"), (2, "bob")]
    assert calls == [("events", "events", "j", {"seq": 1})]
    assert letters_of(letters) == [("KeyError", "events", "j", {"seq": 1})]
    metrics = env.metrics().operators["j"]
    assert (metrics.errors, metrics.dead_letters) == (1, 1)


async def test_a_join_turned_lookup_is_covered_by_the_policy_of_its_input() -> None:
    env = LocalEnvironment()
    events = env.create_stream("events")
    profiles = env.from_collection(PROFILES, name="profiles")
    calls: list[Call] = []
    events.on_error(handler("events", calls))
    joined = ConnectedStreams([events, profiles]).join("inner", key_func=user, name="j")
    out: list[Any] = []
    letters: list[DeadLetter] = []
    joined.map(lambda pair: (pair[0]["seq"], pair[1]["name"]), name="enrich").sink(out.append)
    events.errors().sink(letters.append)
    with watching_lookups() as started:
        async with env.running():
            await asyncio.wait_for(started.wait(), 5)  # the join is now a lookup in the chain
            for event in EVENTS:
                await events.emit(event)
    assert out == [(0, "ann"), (2, "bob")]
    assert calls == [("events", "events", "j", {"seq": 1})]
    assert letters_of(letters) == [("KeyError", "events", "j", {"seq": 1})]


async def test_a_process_of_connected_streams_is_covered_by_the_policy_of_its_input() -> None:
    env = LocalEnvironment()
    numbers = env.from_collection([1, 0, 2], name="numbers")
    words = env.from_collection([], name="words")
    calls: list[Call] = []
    numbers.on_error(handler("numbers", calls))

    def invert(streams: list[StreamReader], state: StreamState) -> list[Any]:
        out: list[Any] = []
        for item in streams[0].read_all():
            out.append(12 // item)
        return out

    processed = ConnectedStreams([numbers, words]).process(invert, name="p")
    out, letters = await run_with_dead_letters(env, processed, numbers.errors())
    assert calls == [("numbers", "p", "p", [1, 0, 2])]
    assert letters_of(letters) == [("ZeroDivisionError", "p", "p", [1, 0, 2])]
    assert out == []


async def test_a_synchronize_is_covered_by_the_policy_of_its_input() -> None:
    env = LocalEnvironment()
    left = env.from_collection(
        [{"timestamp": 1.0, "v": "a"}, {"v": "bad"}, {"timestamp": 2.0, "v": "b"}], name="l"
    )
    right = env.from_collection([{"timestamp": 1.0, "v": "x"}, {"timestamp": 2.0, "v": "y"}], name="r")
    calls: list[Call] = []
    left.on_error(handler("left", calls))
    synced = ConnectedStreams([left, right]).synchronize("timestamp", tolerance=0.1, name="s")
    out, letters = await run_with_dead_letters(env, synced, left.errors())
    assert [(a["v"], b["v"]) for a, b in out] == [("a", "x"), ("b", "y")]
    assert calls == [("left", "l", "s", {"v": "bad"})]
    assert letters_of(letters) == [("KeyError", "l", "s", {"v": "bad"})]


async def test_a_window_of_connected_streams_is_covered_by_the_policy_of_its_input() -> None:
    env = LocalEnvironment()
    clicks = env.from_collection([{"timestamp": 0.5}, {"t": 1}, {"timestamp": 1.5}], name="clicks")
    views = env.from_collection([{"timestamp": 0.2}], name="views")
    calls: list[Call] = []
    clicks.on_error(handler("clicks", calls))
    windowed = ConnectedStreams([clicks, views]).window("tumbling", size=1.0, name="w")
    out, letters = await run_with_dead_letters(env, windowed, clicks.errors())
    assert [(w.start_time, [len(items) for items in w]) for w in out] == [(0.0, [1, 1]), (1.0, [1, 0])]
    assert calls == [("clicks", "clicks", "w", {"t": 1})]
    assert letters_of(letters) == [("KeyError", "clicks", "w", {"t": 1})]


async def test_what_is_downstream_of_a_join_stays_under_the_inputs_policy() -> None:
    env = LocalEnvironment()
    events = env.from_collection(EVENTS, name="events")
    profiles = env.from_collection(PROFILES, name="profiles")
    calls: list[Call] = []
    events.filter(lambda e: True, name="keep").on_error(handler("keep", calls))
    source = events.filter(lambda e: True, name="pass")
    source.on_error(handler("pass", calls))
    joined = ConnectedStreams([source, profiles]).join("inner", key_func=user, name="j")

    def named(pair: tuple[Any, Any]) -> str:
        if pair[1]["name"] == "bob":
            raise ValueError("no bob")
        return str(pair[1]["name"])

    out, letters = await run_with_dead_letters(env, joined.map(named, name="named"), source.errors())
    assert out == ["ann"]
    assert [(label, operator) for label, _, operator, _ in calls] == [("pass", "j"), ("pass", "named")]
    assert [(error, operator) for error, _, operator, _ in letters_of(letters)] == [
        ("KeyError", "j"),
        ("ValueError", "named"),
    ]


# -- which policy wins -------------------------------------------------------------------------


def bad_join(
    env: LocalEnvironment, policies: Sequence[tuple[int, str]], *, order: Sequence[int] = (0, 1)
) -> tuple[DataStream[Any], list[Call]]:
    """Two inputs, ``a`` (3 items) and ``b`` (1 item), each through two maps, joined on a key
    that is missing from every item. ``policies`` sets a handler labelled ``label`` at depth
    ``depth`` (0: the source, 2: the last map) of input ``label``."""
    calls: list[Call] = []
    streams: dict[str, list[DataStream[Any]]] = {}
    for label, items in (("a", [{"x": 1}, {"x": 2}, {"x": 3}]), ("b", [{"x": 9}])):
        source = env.from_collection(items, name=label)
        first = source.map(lambda item: item, name=f"{label}1")
        streams[label] = [source, first, first.map(lambda item: item, name=f"{label}2")]
    for depth, label in policies:
        streams[label][depth].on_error(handler(label, calls))
    inputs = [streams["ab"[i]][2] for i in order]
    joined = ConnectedStreams(inputs).join("inner", key_func=user, name="j")
    return joined, calls


async def test_between_inputs_the_nearer_policy_wins() -> None:
    env = LocalEnvironment()
    joined, calls = bad_join(env, [(0, "a"), (2, "b")])
    assert await joined.collect() == []
    assert sorted(calls, key=repr) == [("b", "a2", "j", {"x": i}) for i in (1, 2, 3)] + [
        ("b", "b2", "j", {"x": 9})
    ]


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
async def test_between_inputs_as_near_the_first_input_wins(order: tuple[int, int]) -> None:
    env = LocalEnvironment()
    joined, calls = bad_join(env, [(1, "a"), (1, "b")], order=order)
    assert await joined.collect() == []
    first = "ab"[order[0]]
    assert {label for label, *_ in calls} == {first}
    assert sorted(calls, key=repr) == [(first, "a2", "j", {"x": i}) for i in (1, 2, 3)] + [
        (first, "b2", "j", {"x": 9})
    ]


async def test_a_policy_of_the_connected_streams_beats_its_inputs_even_when_set_after_the_join() -> None:
    calls: list[Call] = []
    connected_calls: list[Call] = []
    env = LocalEnvironment()
    a = env.from_collection([{"x": 1}], name="a")
    b = env.from_collection([{"x": 9}], name="b")
    a.on_error(handler("a", calls))
    b.on_error(handler("b", calls))
    connected = ConnectedStreams([a, b])
    joined = connected.join("inner", key_func=user, name="j")
    connected.on_error(handler("connected", connected_calls))
    out, letters = await run_with_dead_letters(env, joined, connected.errors())
    assert out == []
    assert calls == []
    assert sorted(connected_calls) == [("connected", "a", "j", {"x": 1}), ("connected", "b", "j", {"x": 9})]
    assert sorted((d.stream_id, d.item["x"]) for d in letters) == [("a", 1), ("b", 9)]


async def test_the_errors_of_unset_connected_streams_are_those_of_the_policy_in_effect() -> None:
    env = LocalEnvironment()
    a = env.from_collection([{"x": 1}, {"user": 1}], name="a")
    b = env.from_collection([{"user": 1}], name="b")
    calls: list[Call] = []
    b.on_error(handler("b", calls))
    connected = ConnectedStreams([a, b])
    assert connected.errors().name == b.errors().name == "b.errors"
    out, letters = await run_with_dead_letters(
        env, connected.join("inner", key_func=user, name="j"), connected.errors()
    )
    assert out == [({"user": 1}, {"user": 1})]
    assert letters_of(letters) == [("KeyError", "a", "j", {"x": 1})]


async def test_without_any_policy_an_error_of_a_join_stops_the_graph() -> None:
    env = LocalEnvironment()
    joined, _ = bad_join(env, [])
    with pytest.raises(PipelineError, match=r"operator 'j' failed on item \{'x': \d\}: KeyError: 'user'"):
        await joined.collect()


async def test_a_stop_decision_of_the_inherited_policy_stops_the_graph() -> None:
    env = LocalEnvironment()
    events = env.from_collection(EVENTS, name="events")
    profiles = env.from_collection(PROFILES, name="profiles")
    calls: list[Call] = []
    events.on_error(handler("events", calls, "stop"))
    joined = ConnectedStreams([events, profiles]).join("inner", key_func=user, name="j")
    with pytest.raises(PipelineError, match=r"operator 'j' failed on item \{'seq': 1\}") as caught:
        await joined.collect()
    assert (caught.value.operator, caught.value.item) == ("j", {"seq": 1})
    assert calls == [("events", "events", "j", {"seq": 1})]


async def test_a_policy_never_covers_an_operator_fed_by_its_own_errors_stream() -> None:
    # Its dead letters end when the operators under it have: the join would wait for itself.
    env = LocalEnvironment()
    numbers = env.from_collection([1, 0, 3], name="numbers")
    calls: list[Call] = []
    numbers.on_error(handler("numbers", calls))
    inverted = numbers.map(lambda x: 6 // x, name="invert")

    def merge(streams: list[StreamReader], state: StreamState) -> list[Any]:
        return [*streams[0].read_all(), *(d.item for d in streams[1].read_all())]

    merged = ConnectedStreams([inverted, numbers.errors()]).process(merge, name="merge")
    out = await asyncio.wait_for(merged.collect(), 10)
    assert sorted(out) == [0, 2, 6]
    assert calls == [("numbers", "invert", "invert", 0)]


# -- thresholds ------------------------------------------------------------------------------


async def test_a_threshold_set_on_an_input_counts_the_errors_of_the_join() -> None:
    env = LocalEnvironment()
    events = env.from_collection([{"seq": 0}, {"seq": 1}, {"seq": 2}], name="events")
    profiles = env.from_collection(PROFILES, name="profiles")
    calls: list[Call] = []
    events.on_error(handler("events", calls)).set_error_threshold(max_errors=1, time_window=60)
    joined = ConnectedStreams([events, profiles]).join("inner", key_func=user, name="j")
    with pytest.raises(ErrorThresholdExceeded) as caught:
        await joined.collect()
    exceeded = caught.value
    assert isinstance(exceeded.__cause__, KeyError)
    assert (exceeded.count, exceeded.max_errors, exceeded.operator, exceeded.item) == (2, 1, "j", {"seq": 1})
    assert calls == [("events", "events", "j", {"seq": 0})]


async def test_a_threshold_counts_errors_of_the_chain_and_of_the_join_together() -> None:
    env = LocalEnvironment()
    events = env.from_collection([{"seq": 0, "user": 1}, {"seq": 1}], name="events")
    profiles = env.from_collection(PROFILES, name="profiles")
    events.set_error_threshold(max_errors=1, time_window=60).on_error(lambda s, e, c: "continue")

    def checked(event: dict[str, Any]) -> dict[str, Any]:
        if event["seq"] == 0:
            raise ValueError("first")
        return event

    joined = ConnectedStreams([events.map(checked, name="checked"), profiles]).join(
        "inner", key_func=user, name="j"
    )
    with pytest.raises(ErrorThresholdExceeded) as caught:
        await joined.collect()
    exceeded = caught.value
    assert isinstance(exceeded.__cause__, KeyError)
    assert (exceeded.count, exceeded.operator, exceeded.item) == (2, "j", {"seq": 1})
    operators = env.metrics().operators
    assert (operators["checked"].errors, operators["j"].errors) == (1, 1)


# -- the rule against a model, on random graphs of two inputs ---------------------------------


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    policies=st.lists(st.tuples(st.integers(0, 2), st.sampled_from("ab")), unique=True, max_size=4),
    order=st.sampled_from([(0, 1), (1, 0)]),
)
def test_the_winner_is_the_nearest_policy_then_the_first_input(
    policies: list[tuple[int, str]], order: tuple[int, int]
) -> None:
    # Model: a label's nearest policy is its deepest one (depth 2 is one map from the join);
    # the nearer label wins, on a tie the first input's.
    depth = {label: max(d for d, other in policies if other == label) for _, label in policies}
    inputs = ["ab"[i] for i in order]
    winner = max(inputs, key=lambda label: (depth.get(label, -1), -inputs.index(label))) if depth else None

    async def main() -> None:
        env = LocalEnvironment()
        joined, calls = bad_join(env, policies, order=order)
        if winner is None:
            with pytest.raises(PipelineError, match="operator 'j' failed"):
                await joined.collect()
            return
        assert await joined.collect() == []
        assert {label for label, *_ in calls} == {winner}
        assert sorted(item["x"] for *_, item in calls) == [1, 2, 3, 9]

    asyncio.run(main())


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_walk_up_a_chain_finds_what_the_full_search_finds(data: st.DataObject) -> None:
    # Random graphs of maps, connected processes and errors() streams, with policies set on some
    # streams and connected streams: Node.governing_policy (which walks up single inputs) must
    # agree with nearest_policy's search from the node itself.
    env = LocalEnvironment()
    streams: list[DataStream[Any]] = [
        env.from_collection([1], name="s0"),
        env.from_collection([2], name="s1"),
    ]
    for _ in range(data.draw(st.integers(0, 12))):
        pick = st.sampled_from(streams)
        step = data.draw(st.sampled_from(["map", "connect", "errors", "policy", "connected policy"]))
        if step == "map":
            streams.append(data.draw(pick).map(lambda x: x))
        elif step == "errors":
            streams.append(data.draw(pick).errors())
        elif step == "policy":
            data.draw(pick).on_error(lambda s, e, c: "continue")
        else:
            inputs = data.draw(st.lists(pick, min_size=2, max_size=3))
            connected = ConnectedStreams(inputs)
            if step == "connected policy":
                connected.on_error(lambda s, e, c: "continue")
            streams.append(connected.process(lambda readers, state: None))
    for node in env._nodes:
        assert node.governing_policy() is nearest_policy((node,))
