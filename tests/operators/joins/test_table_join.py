"""Table joins through the runtime: a table that stays open while events flow, updates and
tombstones, event time, bad items on the error path with exact counts, metrics, the API."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from sage_streams import (
    ConnectedStreams,
    DataStream,
    LocalEnvironment,
    PipelineError,
    StreamError,
    UnknownNameError,
    register_function,
)
from tests.support import run_with_dead_letters, user

Event = dict[str, Any]


async def settled(env: LocalEnvironment, name: str, field: str, value: object) -> None:
    """Let the loop run until the metrics of operator ``name`` show ``field == value``.

    A push stream's item reaches the join a few loop turns after ``emit``: the tests wait for
    the join to have read it, by what it reports, not by time.
    """
    for _ in range(10_000):
        metrics = env.metrics().operators[name]
        if (metrics.mode if field == "mode" else metrics.details.get(field)) == value:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{name} never reported {field} = {value!r}: {env.metrics().operators[name]}")


def name_or_none(profile: Event) -> Any:
    """A profile's value: its name; a profile without one is a tombstone."""
    return profile.get("name")


def continue_all(stream_id: str, error: BaseException, context: Any) -> str:
    return "continue"


# -- processing time -----------------------------------------------------------------------------


@pytest.mark.parametrize("join_type", ["inner", "left"])
async def test_each_event_joins_the_row_current_when_it_arrives(join_type: str) -> None:
    env = LocalEnvironment()
    events, profiles = env.create_stream("events"), env.create_stream("profiles")
    out: list[Any] = []
    joined = events.join_table(profiles, user, join_type, value_func=name_or_none, name="enrich")
    joined.sink(out.append)
    async with env.running():
        await profiles.emit({"user": 1, "name": "ann"})
        await settled(env, "enrich", "table_rows", 1)
        await events.emit({"user": 1, "seq": 0})
        await events.emit({"user": 2, "seq": 1})
        await settled(env, "enrich", "probes", 2)
        await profiles.emit({"user": 1, "name": "ann2"})
        await profiles.emit({"user": 2, "name": "bob"})
        await settled(env, "enrich", "table_rows", 2)
        await events.emit({"user": 1, "seq": 2})
        await settled(env, "enrich", "probes", 3)
        await profiles.emit({"user": 1})  # no name: deletes user 1
        await settled(env, "enrich", "table_rows", 1)
        await events.emit({"user": 1, "seq": 3})
        await events.emit({"user": 2, "seq": 4})
        await settled(env, "enrich", "probes", 5)
        assert env.metrics().operators["enrich"].mode == "table"
    missing = [] if join_type == "inner" else [None]
    assert [(event["seq"], found) for event, found in out] == [
        (0, "ann"),
        *[(1, m) for m in missing],
        (2, "ann2"),
        *[(3, m) for m in missing],
        (4, "bob"),
    ]
    details = env.metrics().operators["enrich"].details
    assert (details["probes"], details["hits"], details["misses"], details["buffered"]) == (5, 3, 2, 0)


async def test_50k_events_against_an_open_table_are_not_buffered_and_an_update_re_emits_none() -> None:
    count = 50_000
    env = LocalEnvironment()
    events = env.from_collection(({"user": i % 10, "seq": i} for i in range(count)), name="events")
    profiles = env.create_stream("profiles")
    seen: Counter[int] = Counter()
    done = asyncio.Event()

    def tally(pair: tuple[Event, Any]) -> None:
        seen[pair[0]["seq"]] += 1
        if len(seen) == count:
            done.set()

    events.join_table(profiles, user, "left", name="enrich").sink(tally)
    async with env.running():
        for key in range(10):
            await profiles.emit({"user": key, "name": f"n{key}"})
        await asyncio.wait_for(done.wait(), 10)
        details = env.metrics().operators["enrich"].details
        assert (details["probes"], details["buffered"]) == (count, 0)  # every event, none kept
        await settled(env, "enrich", "table_rows", 10)  # the state is the table: 10 rows
        await profiles.emit({"user": 0, "name": "renamed"})
        await profiles.emit({"user": 10, "name": "new"})
        await settled(env, "enrich", "table_rows", 11)
        assert env.metrics().operators["enrich"].mode == "table"  # the table is still open
    assert len(seen) == count
    assert set(seen.values()) == {1}  # each event once: the updates re-emitted nothing
    assert env.metrics().operators["enrich"].details["probes"] == count


async def test_the_symmetric_join_reports_every_buffered_item_in_buffered() -> None:
    env = LocalEnvironment()
    events = env.from_collection([{"user": i % 3, "seq": i} for i in range(50)], name="events")
    profiles = env.create_stream("profiles")
    ConnectedStreams([events, profiles]).join("inner", key_func=user, name="sym").sink(lambda pair: None)
    async with env.running():
        await profiles.emit({"user": 0})
        await settled(env, "sym", "buffered", 51)  # the 50 events wait for rows that may come
        details = env.metrics().operators["sym"].details
        assert (details["buffered_left"], details["buffered_right"]) == (50, 1)


async def test_an_ended_table_makes_an_inner_join_a_lookup_with_exact_counts() -> None:
    env = LocalEnvironment()
    profiles = env.from_collection([{"user": 1, "name": "ann"}], name="profiles")
    events = env.create_stream("events")
    out: list[Any] = []
    events.join_table(profiles, user, name="enrich").sink(out.append)
    async with env.running():
        await settled(env, "enrich", "mode", "lookup")
        for key in (1, 2, 1):
            await events.emit({"user": key})
    assert out == [({"user": 1}, {"user": 1, "name": "ann"})] * 2
    details = env.metrics().operators["enrich"].details
    assert (details["probes"], details["hits"], details["misses"]) == (3, 2, 1)


# -- event time ----------------------------------------------------------------------------------


async def test_event_time_joins_the_version_valid_at_each_event_whatever_arrives_first() -> None:
    profiles_data = [
        {"user": 1, "name": "ann", "ts": 1.0},
        {"user": 2, "name": "bob", "ts": 2.0},
        {"user": 1, "name": "ann2", "ts": 5.0},
        {"user": 2, "ts": 6.0},  # deletes bob
    ]
    stamps = [(1, 0.5), (1, 3.0), (2, 4.0), (1, 5.0), (2, 7.0)]
    events_data = [{"user": u, "ts": t, "seq": i} for i, (u, t) in enumerate(stamps)]
    data = {"profiles": profiles_data, "events": events_data}
    for order in (["profiles", "events"], ["events", "profiles"]):  # which source starts first
        env = LocalEnvironment(batch_size=2)
        made = {which: env.from_collection(data[which], name=which) for which in order}
        joined = made["events"].join_table(
            made["profiles"], user, "left", value_func=name_or_none, timestamp="ts", name="asof"
        )
        pairs = await joined.collect()
        assert [(event["seq"], found) for event, found in pairs] == [
            (0, None),
            (1, "ann"),
            (2, "bob"),
            (3, "ann2"),
            (4, None),
        ]
        details = env.metrics().operators["asof"].details
        assert (details["probes"], details["hits"], details["held_events"]) == (5, 3, 0)


async def test_events_wait_for_the_table_time_and_are_counted_as_held() -> None:
    env = LocalEnvironment()
    events, profiles = env.create_stream("events"), env.create_stream("profiles")
    out: list[Any] = []
    events.join_table(profiles, user, timestamp="ts", name="asof").sink(out.append)
    async with env.running():
        await profiles.emit({"user": 1, "ts": 1.0, "v": 1})
        await events.emit({"user": 1, "ts": 4.0})
        await settled(env, "asof", "held_events", 1)
        details = env.metrics().operators["asof"].details
        assert (details["buffered"], details["versions"], details["table_rows"]) == (1, 1, 1)
        assert out == []
        await profiles.emit({"user": 1, "ts": 3.0, "v": 3})
        await profiles.emit({"user": 1, "ts": 9.0, "v": 9})
        await settled(env, "asof", "held_events", 0)
        assert out == [({"user": 1, "ts": 4.0}, {"user": 1, "ts": 3.0, "v": 3})]
        await events.emit({"user": 1, "ts": 2.0})  # late: joined as of 4.0
        await settled(env, "asof", "late_events", 1)
    assert [found["v"] for _, found in out] == [3, 3]


# -- errors --------------------------------------------------------------------------------------


async def test_bad_rows_and_events_are_dead_letters_and_nothing_else_is_lost() -> None:
    env = LocalEnvironment()
    profiles = env.from_collection(
        [
            {"user": 1, "name": "ann", "ts": 0.0},
            {"name": "no user", "ts": 1.0},
            {"user": [1], "ts": 1.0},
            {"user": 2, "name": "bob", "ts": 2.0},
        ],
        name="profiles",
    )
    events = env.from_collection(
        [
            {"user": 1, "ts": 5.0, "seq": 0},
            {"ts": 5.0, "seq": 1},
            {"user": 2, "ts": 6.0, "seq": 2},
            {"user": 1, "seq": 3},
        ],
        name="events",
    )
    events.on_error(continue_all)
    joined = events.join_table(profiles, user, timestamp="ts", value_func=name_or_none, name="asof")
    out, letters = await run_with_dead_letters(env, joined, events.errors())
    assert [(event["seq"], found) for event, found in out] == [(0, "ann"), (2, "bob")]
    # Each side's dead letters in its own order, under the stream each came on.
    by_stream = {
        stream: [(letter.item, type(letter.error)) for letter in letters if letter.stream_id == stream]
        for stream in ("profiles", "events")
    }
    assert by_stream == {
        "profiles": [({"name": "no user", "ts": 1.0}, KeyError), ({"user": [1], "ts": 1.0}, TypeError)],
        "events": [({"ts": 5.0, "seq": 1}, KeyError), ({"user": 1, "seq": 3}, KeyError)],
    }
    assert {letter.operator for letter in letters} == {"asof"}
    metrics = env.metrics().operators["asof"]
    assert (metrics.errors, metrics.dead_letters, metrics.retries) == (4, 4, 0)
    assert (metrics.details["probes"], metrics.details["hits"]) == (2, 2)


@pytest.mark.parametrize("join_type", ["inner", "left"])
async def test_in_processing_time_bad_rows_and_events_are_dead_letters_of_the_join(join_type: str) -> None:
    env = LocalEnvironment()
    events, profiles = env.create_stream("events"), env.create_stream("profiles")
    joined = events.join_table(profiles, user, join_type, name="enrich").on_error(continue_all)
    out: list[Any] = []
    letters: list[Any] = []
    joined.sink(out.append)
    joined.errors().sink(letters.append)
    async with env.running():
        await profiles.emit({"user": 1, "name": "ann"})
        await profiles.emit({"name": "nobody"})
        await profiles.emit({"user": 2, "name": "bob"})
        await settled(env, "enrich", "table_rows", 2)
        for event in ({"user": 1, "seq": 0}, {"seq": 1}, {"user": {}, "seq": 2}, {"user": 3, "seq": 3}):
            await events.emit(event)
        await settled(env, "enrich", "probes", 2)
    expected = [0] if join_type == "inner" else [0, 3]
    assert [event["seq"] for event, _ in out] == expected
    assert [(letter.stream_id, letter.item) for letter in letters] == [
        ("profiles", {"name": "nobody"}),
        ("events", {"seq": 1}),
        ("events", {"user": {}, "seq": 2}),
    ]
    metrics = env.metrics().operators["enrich"]
    assert (metrics.errors, metrics.dead_letters) == (3, 3)
    assert (metrics.details["probes"], metrics.details["hits"], metrics.details["misses"]) == (2, 1, 1)


@pytest.mark.parametrize("join_type", ["inner", "left"])
async def test_a_key_that_fails_once_is_retried_on_either_side(join_type: str) -> None:
    tries: Counter[str] = Counter()

    def flaky_user(item: Event) -> Any:
        tries[item["id"]] += 1
        if item["id"] in ("p2", "e1") and tries[item["id"]] == 1:
            raise ConnectionError("key service unavailable")
        return item["user"]

    env = LocalEnvironment()
    events, profiles = env.create_stream("events"), env.create_stream("profiles")
    joined = events.join_table(profiles, flaky_user, join_type, name="enrich")
    joined.on_error(lambda stream_id, error, context: "retry")
    out: list[Any] = []
    joined.sink(out.append)
    async with env.running():
        await profiles.emit({"id": "p1", "user": 1})
        await profiles.emit({"id": "p2", "user": 2})
        await settled(env, "enrich", "table_rows", 2)
        for seq in range(3):
            await events.emit({"id": f"e{seq}", "user": 1 + seq % 2})
        await settled(env, "enrich", "probes", 3)
    assert [(event["id"], row["id"]) for event, row in out] == [("e0", "p1"), ("e1", "p2"), ("e2", "p1")]
    assert tries == Counter({"p1": 1, "p2": 2, "e0": 1, "e1": 2, "e2": 1})
    metrics = env.metrics().operators["enrich"]
    assert (metrics.errors, metrics.retries, metrics.dead_letters) == (2, 2, 0)


async def test_an_unhandled_bad_row_stops_the_graph_naming_the_join_and_the_row() -> None:
    env = LocalEnvironment()
    events = env.from_collection([{"user": 1}], name="events")
    profiles = env.from_collection([{"name": "no user"}], name="profiles")
    joined = events.join_table(profiles, user, name="enrich")
    with pytest.raises(
        PipelineError, match=r"operator 'enrich' failed on item \{'name': 'no user'\}: KeyError"
    ):
        await joined.collect()


# -- the API -------------------------------------------------------------------------------------


async def test_registered_names_a_key_pair_and_streams_of_two_environments() -> None:
    @register_function("table_test_profile_id")
    def profile_id(profile: Event) -> Any:
        return profile["id"]

    events = DataStream[Event]("clicks")
    env = LocalEnvironment()
    profiles = env.from_collection([{"id": 7, "name": "ann"}], name="profiles")
    joined = events.join_table(profiles, (user, "table_test_profile_id"), name="enrich")
    assert joined.env is env
    async with env.running():
        await settled(env, "enrich", "table_rows", 1)
        await events.emit({"user": 7})
        await events.emit({"user": 8})
        await settled(env, "enrich", "probes", 2)
    assert env.metrics().operators["enrich"].details["hits"] == 1


def test_bad_arguments_are_refused_where_the_join_is_declared() -> None:
    env = LocalEnvironment()
    events, profiles = env.from_collection([]), env.from_collection([])
    with pytest.raises(TypeError, match="join_table takes the table as a DataStream"):
        events.join_table([], user)  # type: ignore[arg-type]
    with pytest.raises(StreamError, match="cannot be joined as a table with itself"):
        events.join_table(events, user)
    with pytest.raises(UnknownNameError, match="join_type 'outer'"):
        events.join_table(profiles, user, "outer")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timestamp must be a field name"):
        events.join_table(profiles, user, timestamp=3)  # type: ignore[arg-type]
    other = LocalEnvironment("other").from_collection([])
    with pytest.raises(StreamError, match="cannot connect streams of different environments"):
        events.join_table(other, user)
