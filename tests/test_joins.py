"""Joins through the runtime: results, bad input on the error path, metrics, joined.process."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import ConnectedStreams, LocalEnvironment, PipelineError, StreamState, register_function

Item = tuple[str, int, int]  # (side, id, key)


def nested_loop(left: list[Item], right: list[Item]) -> Counter[tuple[Item, Item]]:
    return Counter((a, b) for a in left for b in right if a[2] == b[2])


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


async def test_join_metrics_report_matches_misses_hit_rate_and_buffers() -> None:
    env = LocalEnvironment()
    profiles = env.from_collection([{"u": 1}, {"u": 2}], name="profiles")
    events = env.create_stream("events")
    ConnectedStreams([events, profiles]).join(key_func=lambda item: item["u"], name="enrich")
    async with env.running():
        await asyncio.sleep(0.01)  # profiles first
        for user in (1, 1, 2, 3):
            await events.emit({"u": user})
    details = env.metrics().operators["enrich"].details
    assert details["matches"] == 3
    assert details["misses"] >= 1
    assert 0 < details["hit_rate"] < 1
    assert (details["buffered_left"], details["buffered_right"]) == (0, 0)  # both ended


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
