"""Joins through the runtime: results, bad input on the error path, metrics, joined.process."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import (
    ConnectedStreams,
    DeadLetter,
    LocalEnvironment,
    PipelineError,
    StreamState,
    register_function,
)
from sage_streams.operators.joins.config import JoinConfig, join_config
from sage_streams.operators.joins.state import JoinState
from tests.support import watching_lookups

Item = tuple[str, int, int]  # (side, id, key)


def nested_loop(left: list[Item], right: list[Item]) -> Counter[tuple[Item, Item]]:
    return Counter((a, b) for a in left for b in right if a[2] == b[2])


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    keys_left=st.lists(st.integers(0, 4), max_size=25),
    keys_right=st.lists(st.integers(0, 4), max_size=25),
    batch=st.integers(1, 6),
    right_first=st.booleans(),
)
def test_inner_join_through_the_runtime_equals_the_nested_loop(
    keys_left: list[int], keys_right: list[int], batch: int, right_first: bool
) -> None:
    left = [("L", i, k) for i, k in enumerate(keys_left)]
    right = [("R", i, k) for i, k in enumerate(keys_right)]

    async def run() -> list[Any]:
        env = LocalEnvironment(buffer_size=3, batch_size=batch)
        a, b = env.create_stream("a"), env.create_stream("b")
        joined = ConnectedStreams([a, b]).join("inner", key_func=lambda item: item[2])

        async def feed() -> None:
            order = [(b, right), (a, left)] if right_first else [(a, left), (b, right)]
            for stream, items in order:
                for item in items:
                    await stream.emit(item)
                await stream.close()

        result, _ = await asyncio.gather(joined.collect(), feed())
        return result

    assert Counter(asyncio.run(run())) == nested_loop(left, right)


async def test_outer_join_adds_the_unmatched_items_of_both_sides() -> None:
    env = LocalEnvironment()
    orders = env.from_collection([{"id": 1, "user": "a"}, {"id": 2, "user": "x"}], name="orders")
    users = env.from_collection([{"user": "a"}, {"user": "b"}], name="users")
    joined = ConnectedStreams([orders, users]).join("outer", key_func=lambda item: item["user"])
    pairs = await joined.collect()
    assert sorted(pairs, key=repr) == sorted(
        [
            ({"id": 1, "user": "a"}, {"user": "a"}),
            ({"id": 2, "user": "x"}, None),
            (None, {"user": "b"}),
        ],
        key=repr,
    )


async def test_key_pair_condition_and_registered_names() -> None:
    @register_function("order_user")
    def order_user(order: dict[str, Any]) -> Any:
        return order["user_id"]

    env = LocalEnvironment()
    orders = env.from_collection([{"user_id": 1, "amount": 5}, {"user_id": 1, "amount": 50}], name="orders")
    limits = env.from_collection([{"uid": 1, "limit": 20}], name="limits")
    joined = ConnectedStreams([orders, limits]).join(
        "inner",
        key_func=("order_user", lambda limit: limit["uid"]),
        condition=lambda order, limit: order["amount"] > limit["limit"],
    )
    assert await joined.collect() == [({"user_id": 1, "amount": 50}, {"uid": 1, "limit": 20})]


async def test_interval_join_within_event_time() -> None:
    env = LocalEnvironment()
    clicks = env.from_collection([{"ad": 1, "timestamp": 10.0}, {"ad": 1, "timestamp": 100.0}], name="clicks")
    views = env.from_collection([{"ad": 1, "timestamp": 8.0}], name="views")
    joined = ConnectedStreams([clicks, views]).join("left", key_func=lambda e: e["ad"], within=5.0)
    assert sorted(await joined.collect(), key=lambda p: p[0]["timestamp"]) == [
        ({"ad": 1, "timestamp": 10.0}, {"ad": 1, "timestamp": 8.0}),
        ({"ad": 1, "timestamp": 100.0}, None),
    ]


async def test_joined_process_receives_lists_of_pairs_and_the_shared_state() -> None:
    env = LocalEnvironment()
    a = env.from_collection([{"k": 1, "v": "a"}], name="a")
    b = env.from_collection([{"k": 1, "w": "b"}], name="b")
    state = StreamState()
    connected = ConnectedStreams([a, b], state=state)
    calls: list[list[Any]] = []

    def merge(joined_data: list[Any], state: StreamState, *, tag: str) -> list[dict[str, Any]]:
        calls.append(joined_data)
        state.increment("pairs", len(joined_data))
        return [{**left, **right, "tag": tag} for left, right in joined_data]

    merged = connected.join(key_func=lambda item: item["k"]).process(merge, tag="t")
    assert await merged.collect() == [{"k": 1, "v": "a", "w": "b", "tag": "t"}]
    assert all(isinstance(batch, list) for batch in calls)
    assert state.get("pairs") == 1


async def test_join_metrics_report_matches_misses_hit_rate_and_buffers(lookups: asyncio.Event) -> None:
    env = LocalEnvironment()
    profiles = env.from_collection([{"u": 1}, {"u": 2}], name="profiles")
    events = env.create_stream("events")
    ConnectedStreams([events, profiles]).join(key_func=lambda item: item["u"], name="enrich")
    async with env.running():
        await asyncio.wait_for(lookups.wait(), 5)  # the profiles have all arrived, and ended
        for user in (1, 1, 2, 3):
            await events.emit({"u": user})
    details = env.metrics().operators["enrich"].details
    # Only the events probed (the profiles came before any event): 3 of 4 found a profile.
    assert details == {
        "probes": 4,
        "matches": 3,
        "misses": 1,
        "hit_rate": 0.75,
        "buffered_left": 0,
        "buffered_right": 0,
        "buffered": 0,
    }


PROFILE_COUNT = 100


def profile_table() -> list[dict[str, Any]]:
    return [{"user": user, "name": f"n{user}"} for user in range(PROFILE_COUNT)]


def one_probe(details: dict[str, float]) -> tuple[float, float, float, float]:
    return details["probes"], details["matches"], details["misses"], details["hit_rate"]


@pytest.mark.parametrize("profiles_end", [True, False], ids=["lookup", "buffered"])
async def test_one_event_against_100_profiles_is_one_probe_and_one_hit(
    lookups: asyncio.Event, profiles_end: bool
) -> None:
    env = LocalEnvironment()
    profiles = env.create_stream("profiles")
    events = env.create_stream("events")
    keyed, joined_one = asyncio.Event(), asyncio.Event()
    profile_keys: list[int] = []

    def profile_key(profile: dict[str, Any]) -> int:
        profile_keys.append(profile["user"])
        if len(profile_keys) == PROFILE_COUNT:
            keyed.set()  # the join buffers it before it next waits
        return int(profile["user"])

    out: list[Any] = []

    def store(pair: Any) -> None:
        out.append(pair)
        joined_one.set()

    joined = ConnectedStreams([events, profiles]).join(
        key_func=(lambda item: item["user"], profile_key), name="j"
    )
    joined.sink(store)
    async with env.running():
        for profile in profile_table():
            await profiles.emit(profile)
        await asyncio.wait_for(keyed.wait(), 5)
        if profiles_end:
            await profiles.close()
            await asyncio.wait_for(lookups.wait(), 5)
        await events.emit({"user": 7})
        await asyncio.wait_for(joined_one.wait(), 5)
        details = env.metrics().operators["j"].details
        looked_up = lookups.is_set()
        if not profiles_end:
            await profiles.close()
    assert out == [({"user": 7}, {"user": 7, "name": "n7"})]
    assert looked_up is profiles_end
    assert one_probe(details) == (1, 1, 0, 1.0)
    # The profiles stay buffered; the event too while the profiles may still bring a partner.
    assert (details["buffered_left"], details["buffered_right"]) == (0 if profiles_end else 1, PROFILE_COUNT)
    assert details["buffered"] == details["buffered_left"] + details["buffered_right"]


JoinStep = tuple[int, list[int] | None]
"""One call on a join: ``(side, keys)`` pushes items with these keys, ``(side, None)`` ends it."""


def stats_model(steps: list[JoinStep]) -> tuple[int, int, int]:
    """(probes, hits, matches) of an inner join by key, as ``JoinStats`` defines them: an item
    probes once the other side has had an item or has ended."""
    buffers: list[Counter[int]] = [Counter(), Counter()]
    arrived, ended = [False, False], [False, False]
    probes = hits = matches = 0
    for side, keys in steps:
        other = 1 - side
        if keys is None:
            ended[side] = True
            buffers[other].clear()
            continue
        for key in keys:
            partners = buffers[other][key]
            probes += arrived[other] or ended[other]
            hits += partners > 0
            matches += partners
            if not ended[other]:
                buffers[side][key] += 1
            arrived[side] = True
    return probes, hits, matches


join_steps = st.lists(
    st.tuples(st.integers(0, 1), st.one_of(st.none(), st.lists(st.integers(0, 3), max_size=4))),
    max_size=12,
)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(steps=join_steps)
def test_join_stats_on_every_path_equal_the_model(steps: list[JoinStep]) -> None:
    def key(item: tuple[str, int]) -> int:
        return item[1]

    paths = {
        "fast": join_config("inner", key).build(),
        "inlined": join_config("inner", lambda item: item[1]).build(inline=True),
        "general": join_config("inner", key, lambda left, right: True).build(),
        "outer": join_config("outer", key).build(),
    }
    for name, join in paths.items():
        ended = [False, False]
        model_steps: list[JoinStep] = []
        for side, keys in steps:
            if ended[side]:
                continue  # nothing can be pushed to an ended side
            model_steps.append((side, keys))
            if keys is None:
                ended[side] = True
                join.end(side)
            else:
                join.push(side, [(f"{side}{n}", k) for n, k in enumerate(keys)])
        stats = join.stats()
        assert (name, stats.probes, stats.hits, stats.matches) == (name, *stats_model(model_steps))
        assert stats.hit_rate == (stats.hits / stats.probes if stats.probes else 0.0)


@pytest.mark.parametrize(
    ("key_func", "items", "message", "item"),
    [
        (
            lambda item: item["user_id"],
            [{"user_id": 1}, {"name": "no id"}],
            "KeyError: 'user_id'",
            {"name": "no id"},
        ),
        (lambda item: item["tags"], [{"tags": ["a"]}], "TypeError: .*unhashable", {"tags": ["a"]}),
        (
            lambda item: item.get("user_id"),
            [{"user": 1}],
            "ValueError: key function returned None",
            {"user": 1},
        ),
    ],
)
async def test_bad_keys_reach_the_error_path_with_their_item(
    key_func: Any, items: list[Any], message: str, item: Any
) -> None:
    env = LocalEnvironment()
    left = env.from_collection(items, name="left")
    right = env.from_collection([], name="right")
    joined = ConnectedStreams([left, right]).join("inner", key_func=key_func, name="by_user")
    with pytest.raises(PipelineError, match=f"operator 'by_user' failed on item .*: {message}") as caught:
        await joined.collect()
    assert caught.value.operator == "by_user"
    assert caught.value.item == item


async def test_a_missing_timestamp_and_a_raising_condition_reach_the_error_path() -> None:
    env = LocalEnvironment()
    left = env.from_collection([{"k": 1}], name="left")
    right = env.from_collection([{"k": 1, "timestamp": 1.0}], name="right")
    joined = ConnectedStreams([left, right]).join(key_func=lambda i: i["k"], within=1.0, name="timed")
    with pytest.raises(PipelineError, match=r"operator 'timed' failed on item \{'k': 1\}: KeyError"):
        await joined.collect()

    env = LocalEnvironment()
    left = env.from_collection([{"k": 1, "x": 0}], name="left")
    right = env.from_collection([{"k": 1}], name="right")
    joined = ConnectedStreams([left, right]).join(condition=lambda a, b: 1 / a["x"] > 0, name="theta")
    with pytest.raises(PipelineError, match=r"operator 'theta' failed on item .*ZeroDivisionError"):
        await joined.collect()


def test_join_needs_exactly_two_streams_and_a_key_or_condition() -> None:
    env = LocalEnvironment()
    a, b, c = (env.from_collection([]) for _ in range(3))
    with pytest.raises(Exception, match="exactly two streams"):
        ConnectedStreams([a, b, c]).join(key_func=id)
    with pytest.raises(Exception, match="key function, a condition, or both"):
        ConnectedStreams([a, b]).join()
    with pytest.raises(Exception, match="join_type"):
        ConnectedStreams([a, b]).join("sideways", key_func=id)


# -- a join against a finished table runs as a lookup fused into the steps after it ---------

Event = dict[str, Any]


@pytest.fixture
def lookups() -> Iterator[asyncio.Event]:
    with watching_lookups() as started:
        yield started


def event_of(seq: int, kind: Any) -> Event:
    """An event: a user id, a None, unhashable or missing key, or an enrichment that fails."""
    if kind == "missing":
        return {"seq": seq}
    if kind == "list":
        return {"seq": seq, "user": [seq]}
    if isinstance(kind, tuple):  # ("boom", user)
        return {"seq": seq, "user": kind[1], "boom": True}
    return {"seq": seq, "user": kind}


def enrich(pair: tuple[Any, Any]) -> tuple[int, str]:
    event, profile = pair if "seq" in pair[0] else pair[::-1]
    if "boom" in event:
        raise ValueError(f"cannot enrich {event['seq']}")
    return event["seq"], profile["name"]


def kept(pair: tuple[Any, Any]) -> bool:
    """The filter of a filtered run: every third event is dropped."""
    return (pair[0] if "seq" in pair[0] else pair[1])["seq"] % 3 != 0


def lookup_model(users: set[int], events: list[Event], events_left: bool, filtered: bool) -> dict[str, Any]:
    """What the join and the steps after it give, event by event, with errors continued. The
    profiles came first, before any event: they only filled the buffer, none probed."""
    out: list[tuple[int, str]] = []
    letters: list[tuple[str, str, str, Any]] = []
    probes, matches, enriched = 0, 0, 0
    for event in events:
        if "user" not in event or event["user"] is None or isinstance(event["user"], list):
            error = "KeyError" if "user" not in event else "TypeError" if event["user"] else "ValueError"
            letters.append(("j", "events", error, event))
            continue
        user = event["user"]
        probes += 1
        if user not in users:
            continue
        matches += 1
        profile = {"user": user, "name": f"n{user}"}
        pair = (event, profile) if events_left else (profile, event)
        if filtered and not kept(pair):
            continue
        enriched += 1
        if "boom" in event:
            letters.append(("enrich", "enrich", "ValueError", pair))
        else:
            out.append((event["seq"], profile["name"]))
    return {"out": out, "letters": letters, "probes": probes, "matches": matches, "enriched": enriched}


async def run_lookup(
    users: set[int],
    events: list[Event],
    events_left: bool,
    filtered: bool,
    batch: int,
    started: asyncio.Event,
) -> tuple[LocalEnvironment, list[Any], list[DeadLetter]]:
    env = LocalEnvironment(buffer_size=4, batch_size=batch)
    profiles = env.from_collection([{"user": u, "name": f"n{u}"} for u in sorted(users)], name="profiles")
    stream = env.create_stream("events")
    connected = ConnectedStreams([stream, profiles] if events_left else [profiles, stream])
    connected.on_error(lambda stream_id, error, context: "continue")
    joined = connected.join("inner", key_func=lambda item: item["user"], name="j")
    out: list[Any] = []
    letters: list[DeadLetter] = []
    (joined.filter(kept, name="keep") if filtered else joined).map(enrich, name="enrich").sink(out.append)
    connected.errors().sink(letters.append)
    async with env.running():
        await asyncio.wait_for(started.wait(), 5)  # every event goes through the lookup
        for event in events:
            await stream.emit(event)
    return env, out, letters


kinds = st.one_of(
    st.integers(0, 7),
    st.sampled_from([None, "list", "missing"]),
    st.tuples(st.just("boom"), st.integers(0, 7)),
)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    users=st.sets(st.integers(0, 5), min_size=1),
    kinds=st.lists(kinds, max_size=30),
    events_left=st.booleans(),
    filtered=st.booleans(),
    batch=st.integers(1, 5),
)
def test_a_lookup_join_gives_what_the_model_gives_with_every_error_continued(
    users: set[int], kinds: list[Any], events_left: bool, filtered: bool, batch: int
) -> None:
    events = [event_of(seq, kind) for seq, kind in enumerate(kinds)]
    expected = lookup_model(users, events, events_left, filtered)

    async def run() -> None:
        with watching_lookups() as started:
            env, out, letters = await run_lookup(users, events, events_left, filtered, batch, started)
        assert out == expected["out"]
        assert [(d.operator, d.stream_id, type(d.error).__name__, d.item) for d in letters] == expected[
            "letters"
        ]
        operators = env.metrics().operators
        join, step = operators["j"], operators["enrich"]
        assert (join.mode, step.mode) == ("lookup", None)
        details = join.details
        assert (details["probes"], details["matches"]) == (expected["probes"], expected["matches"])
        assert details["misses"] == expected["probes"] - expected["matches"]
        key_errors = sum(letter[0] == "j" for letter in expected["letters"])
        assert (join.items_in, join.items_out, join.errors, join.dead_letters) == (
            len(users) + len(events),
            expected["matches"],
            key_errors,
            key_errors,
        )
        assert (step.items_in, step.items_out) == (expected["enriched"], len(expected["out"]))

    asyncio.run(run())


async def test_a_lookup_join_retries_an_item_whose_key_failed_once(lookups: asyncio.Event) -> None:
    tries: Counter[int] = Counter()

    def flaky_user(item: Event) -> int:
        if "seq" in item:
            tries[item["seq"]] += 1
            if item["seq"] == 1 and tries[1] == 1:
                raise ConnectionError("key service unavailable")
        return int(item["user"])

    env = LocalEnvironment()
    profiles = env.from_collection([{"user": 1, "name": "ann"}], name="profiles")
    stream = env.create_stream("events")
    connected = ConnectedStreams([stream, profiles])
    connected.on_error(lambda stream_id, error, context: "retry")
    out: list[Any] = []
    connected.join("inner", key_func=flaky_user, name="j").sink(out.append)
    events = [{"seq": seq, "user": 1} for seq in range(3)]
    async with env.running():
        await asyncio.wait_for(lookups.wait(), 5)
        for event in events:
            await stream.emit(event)
    assert out == [(event, {"user": 1, "name": "ann"}) for event in events]
    assert tries == Counter({0: 1, 1: 2, 2: 1})
    join = env.metrics().operators["j"]
    # Probes: each event once, the retried one too (the profile came before any event).
    assert (join.details["probes"], join.details["matches"], join.retries, join.errors) == (3, 3, 1, 1)


@pytest.mark.parametrize(
    ("events", "operator", "item", "message"),
    [
        ([{"seq": 0, "user": 1}, {"seq": 1}], "j", {"seq": 1}, "KeyError: 'user'"),
        (
            [{"seq": 0, "user": [1]}],
            "j",
            {"seq": 0, "user": [1]},
            "TypeError: key function returned an unhashable",
        ),
        (
            [{"seq": 0, "user": 1, "boom": True}],
            "enrich",
            ({"seq": 0, "user": 1, "boom": True}, {"user": 1, "name": "n1"}),
            "ValueError: cannot enrich 0",
        ),
    ],
)
async def test_an_unhandled_error_of_a_lookup_join_stops_it_naming_operator_and_item(
    lookups: asyncio.Event, events: list[Event], operator: str, item: Any, message: str
) -> None:
    env = LocalEnvironment()
    profiles = env.from_collection([{"user": 1, "name": "n1"}], name="profiles")
    stream = env.create_stream("events")
    joined = ConnectedStreams([stream, profiles]).join("inner", key_func=lambda item: item["user"], name="j")
    joined.map(enrich, name="enrich").sink(lambda result: None)
    with pytest.raises(PipelineError, match=f"operator '{operator}' failed on item .*: {message}") as caught:
        async with env.running():
            await asyncio.wait_for(lookups.wait(), 5)
            for event in events:
                await stream.emit(event)
    assert (caught.value.operator, caught.value.item) == (operator, item)


def test_only_a_keyed_inner_join_against_one_item_per_key_comes_down_to_a_lookup() -> None:
    def ended(config: JoinConfig, right: list[Any]) -> JoinState:
        join = config.build()
        join.push(1, right)
        join.end(1)
        return join

    key = join_config("inner", key_func=lambda item: item["k"])
    assert ended(key, [{"k": 1}, {"k": 2}]).lookup(0) is not None
    assert ended(key, [{"k": 1}, {"k": 1}]).lookup(0) is None  # a key with two partners
    assert key.build().lookup(0) is None  # the other input is still open
    for config in (
        join_config("left", key_func=lambda item: item["k"]),
        join_config("inner", key_func=lambda item: item["k"], condition=lambda a, b: True),
        join_config("inner", key_func=lambda item: item["k"], within=1.0),
    ):
        assert ended(config, [{"k": 1, "timestamp": 0.0}]).lookup(0) is None
    join = ended(key, [{"k": 1}])
    before = join.stats()
    join.record_lookups(5, 3)
    after = join.stats()
    assert (after.probes - before.probes, after.hits - before.hits, after.matches - before.matches) == (
        5,
        3,
        3,
    )


async def test_a_join_reports_hash_mode_unless_it_is_a_lookup() -> None:
    for profiles_of_user_1, mode in ((1, "lookup"), (2, "hash")):
        env = LocalEnvironment()
        profiles, events = env.create_stream("profiles"), env.create_stream("events")
        connected = ConnectedStreams([events, profiles])
        joined = connected.join("inner", key_func=lambda item: item["user"], name="j")
        out: list[Any] = []
        joined.sink(out.append)
        assert env.metrics().operators["j"].mode is None  # before any run: nothing runs yet
        async with env.running():
            for _ in range(profiles_of_user_1):
                await profiles.emit({"user": 1})
            await profiles.close()
            await anyio.wait_all_tasks_blocked()  # the join has taken the end of its profiles
            await events.emit({"user": 1, "seq": 0})
            await anyio.wait_all_tasks_blocked()
            assert len(out) == profiles_of_user_1
            # One profile per key: a lookup; a key with two partners: the join probes and buffers.
            assert env.metrics().operators["j"].mode == mode
