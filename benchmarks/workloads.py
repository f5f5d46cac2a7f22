"""Workloads and their implementations, one function per (workload, implementation).

Every implementation of a workload gets the same input and must return the same result; the
harness checks that before it reports a number. ``INPUTS[workload](n)`` makes the input (not
timed); an implementation is a function of that input returning the result; ``async`` ones run
on a fresh event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

from sage_streams import ConnectedStreams, LocalEnvironment

T = TypeVar("T")
U = TypeVar("U")

Impl = Callable[[Any], Any | Awaitable[Any]]

ENV_OPTIONS_VARIABLE = "SAGE_BENCH_ENV"
"""JSON keyword arguments for every ``LocalEnvironment`` below (``benchmarks.compare --env``)."""


def environment(name: str) -> LocalEnvironment:
    """The environment of one sage_streams implementation: defaults, unless the variable
    :data:`ENV_OPTIONS_VARIABLE` gives other options (``{"inline": false}``)."""
    options: dict[str, Any] = json.loads(os.environ.get(ENV_OPTIONS_VARIABLE) or "{}")
    return LocalEnvironment(name, **options)


def double(x: int) -> int:
    return x * 2


def divisible_by_3(x: int) -> bool:
    return x % 3 == 0


# -- W1: ints -> map(x * 2) -> filter(x % 3 == 0) -> sum -----------------------------------------


def w1_plain_loop(n: int) -> int:
    total = 0
    for x in range(n):
        y = x * 2
        if y % 3 == 0:
            total += y
    return total


def _gen_map(fn: Callable[[T], U], items: Iterator[T]) -> Iterator[U]:
    for item in items:
        yield fn(item)


def _gen_filter(fn: Callable[[int], bool], items: Iterator[int]) -> Iterator[int]:
    for item in items:
        if fn(item):
            yield item


def w1_generator_chain(n: int) -> int:
    """One generator per stage, each calling the stage's function, as a hand-built pipeline does."""
    return sum(_gen_filter(divisible_by_3, _gen_map(double, iter(range(n)))))


async def w1_asyncio_queues(n: int) -> int:
    """One task per stage, one item per hop through bounded ``asyncio.Queue`` s (the naive design)."""
    done = object()
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(1000) for _ in range(3)]
    total = 0

    async def source() -> None:
        for x in range(n):
            await queues[0].put(x)
        await queues[0].put(done)

    async def mapper() -> None:
        while (x := await queues[0].get()) is not done:
            await queues[1].put(double(x))
        await queues[1].put(done)

    async def filterer() -> None:
        while (x := await queues[1].get()) is not done:
            if divisible_by_3(x):
                await queues[2].put(x)
        await queues[2].put(done)

    async def summer() -> None:
        nonlocal total
        while (x := await queues[2].get()) is not done:
            total += x

    await asyncio.gather(source(), mapper(), filterer(), summer())
    return total


async def w1_sage_streams(n: int) -> int:
    env = environment("W1")
    stream = env.from_collection(range(n)).map(double).filter(divisible_by_3)
    return sum(await stream.collect())


# -- W2: four sources of 250,000 dicts, merged and counted -------------------------------------

SOURCES = 4
W2Input = list[list[dict[str, Any]]]


def w2_data(n: int) -> W2Input:
    """``n`` events dealt round-robin to four sources, so their timestamps interleave."""
    return [
        [{"user_id": i % 1000, "value": i, "ts": i / 1000} for i in range(source, n, SOURCES)]
        for source in range(SOURCES)
    ]


def _w2_result(events: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """The count and the sum of the values, equal for every implementation."""
    count = total = 0
    for event in events:
        count += 1
        total += event["value"]
    return count, total


def w2_plain_loop(sources: W2Input) -> tuple[int, int]:
    count = total = 0
    for events in sources:
        for event in events:
            count += 1
            total += event["value"]
    return count, total


def _gen_merge(sources: list[list[T]]) -> Iterator[T]:
    for items in sources:
        yield from items


def w2_generator_chain(sources: W2Input) -> tuple[int, int]:
    """A merging generator (one source after another: all four are finite), then the count."""
    return _w2_result(_gen_merge(sources))


async def w2_asyncio_queues(sources: W2Input) -> tuple[int, int]:
    """A producer task per source, one item per hop into one bounded queue, a counting task."""
    done = object()
    queue: asyncio.Queue[Any] = asyncio.Queue(1000)

    async def produce(events: list[dict[str, Any]]) -> None:
        for event in events:
            await queue.put(event)
        await queue.put(done)

    async def consume() -> tuple[int, int]:
        count = total = 0
        running = len(sources)
        while running:
            event = await queue.get()
            if event is done:
                running -= 1
            else:
                count += 1
                total += event["value"]
        return count, total

    async with asyncio.TaskGroup() as group:
        counted = group.create_task(consume())
        for events in sources:
            group.create_task(produce(events))
    return counted.result()


async def w2_sage_streams(sources: W2Input) -> tuple[int, int]:
    """Four pull streams connected, and a process function that counts whatever arrived.

    It takes each reader's items with ``read_all()`` and returns nothing: the fastest of the
    idiomatic forms measured (iterating the readers item by item, or returning the merged items
    to a counting ``sink``, each adds a Python step per item: 60-70% slower).
    """
    env = environment("W2")
    streams = [env.create_stream(f"source{k}", source=events) for k, events in enumerate(sources)]
    tally = [0, 0]

    def count(readers: list[Any], state: Any) -> None:
        for reader in readers:
            events = reader.read_all()
            tally[0] += len(events)
            tally[1] += sum([event["value"] for event in events])

    ConnectedStreams(streams).process(count)
    await env.execute()
    return tally[0], tally[1]


# -- W3: 200,000 activities joined with 1,000 profiles on user_id (profiles first) -------------

PROFILES_COUNT = 1_000


def w3_data(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n`` activity events and the profiles of their users, generated deterministically.

    One user in eleven has no profile, so an inner join drops their events.
    """
    profiles = [
        {"user_id": u, "name": f"user{u}", "tier": ("free", "gold")[u % 2]}
        for u in range(PROFILES_COUNT)
        if u % 11 != 10
    ]
    activities = [{"user_id": (i * 7919) % PROFILES_COUNT, "action": "view", "seq": i} for i in range(n)]
    return activities, profiles


def user_id(item: dict[str, Any]) -> Any:
    return item["user_id"]


def enrich(pair: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    activity, profile = pair
    return {**activity, "name": profile["name"], "tier": profile["tier"]}


def _w3_result(enriched: Any) -> tuple[int, int]:
    """A count and a checksum of the enriched events, equal for every implementation."""
    count = total = 0
    for event in enriched:
        count += 1
        total += event["seq"] if event["tier"] == "gold" else 0
    return count, total


W3Input = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def w3_plain_loop(data: W3Input) -> tuple[int, int]:
    activities, profiles = data
    by_user = {profile["user_id"]: profile for profile in profiles}
    count = total = 0
    for activity in activities:
        profile = by_user.get(activity["user_id"])
        if profile is not None:
            event = {**activity, "name": profile["name"], "tier": profile["tier"]}
            count += 1
            total += event["seq"] if event["tier"] == "gold" else 0
    return count, total


def _gen_lookup(items: Iterator[dict[str, Any]], table: dict[Any, Any]) -> Iterator[Any]:
    for item in items:
        match = table.get(user_id(item))
        if match is not None:
            yield item, match


def w3_generator_chain(data: W3Input) -> tuple[int, int]:
    """Profiles into a dict first, then activities -> lookup -> enrich, one generator a stage."""
    activities, profiles = data
    table = {user_id(profile): profile for profile in profiles}
    return _w3_result(_gen_map(enrich, _gen_lookup(iter(activities), table)))


Enrichment = Callable[[Any, Callable[[Any], None]], Any]
"""Joined stream, counting sink -> the steps between them, ending in that sink."""


async def _w3_through(data: W3Input, enrich_into: Enrichment) -> tuple[int, int]:
    """The join of W3, then ``enrich_into(joined, count)``, which enriches and sinks into ``count``."""
    activities, profiles = data
    env = environment("W3")
    activity_stream = env.from_collection(activities, name="activities")
    profile_stream = env.from_collection(profiles, name="profiles")
    joined = ConnectedStreams([activity_stream, profile_stream]).join("inner", key_func=user_id)
    tally = [0, 0]

    def count(event: dict[str, Any]) -> None:
        tally[0] += 1
        if event["tier"] == "gold":
            tally[1] += event["seq"]

    enrich_into(joined, count)
    await env.execute()
    return tally[0], tally[1]


async def w3_sage_streams(data: W3Input) -> tuple[int, int]:
    """Join -> enrich -> a sink that tallies, as the other implementations fold as they go.

    (``collect()`` would keep 180,000 fresh dicts alive, and the garbage collector's passes over
    them would cost more than the join: measured, not guessed.)
    """
    return await _w3_through(data, lambda joined, count: joined.map(enrich).sink(count))


def enrich_activity(joined_data: list[Any], state: Any) -> list[dict[str, Any]]:
    """The seed page's ``enrich_activity``, with W3's fields: the list of pairs in, enriched
    activities out."""
    enriched = []
    for activity, profile in joined_data:
        enriched.append({**activity, "name": profile["name"], "tier": profile["tier"]})
    return enriched


async def w3_sage_streams_process(data: W3Input) -> tuple[int, int]:
    """The seed page's shape: the join, ``joined.process(enrich_activity)``, a sink that tallies."""
    return await _w3_through(data, lambda joined, count: joined.process(enrich_activity).sink(count))


# -- W4: 1,000,000 events, 1,000 per simulated second, 100 keys, 60 s tumbling sums -----------

WINDOW = 60.0
W4Input = list[dict[str, Any]]


def w4_data(n: int) -> W4Input:
    return [{"key": i % 100, "timestamp": i / 1000, "value": i % 7} for i in range(n)]


def _w4_result(sums: dict[tuple[Any, float], int]) -> tuple[int, int, int]:
    """Windows, total, and a checksum that depends on which window got which sum."""
    weighted = sum((key + 1) * int(start) * total for (key, start), total in sums.items())
    return len(sums), sum(sums.values()), weighted


def w4_plain_loop(events: W4Input) -> tuple[int, int, int]:
    sums: dict[tuple[Any, float], int] = {}
    for event in events:
        window = (event["key"], (event["timestamp"] // WINDOW) * WINDOW)
        sums[window] = sums.get(window, 0) + event["value"]
    return _w4_result(sums)


def _gen_assign(events: Iterator[dict[str, Any]]) -> Iterator[tuple[tuple[Any, float], int]]:
    for event in events:
        yield (event["key"], (event["timestamp"] // WINDOW) * WINDOW), event["value"]


def w4_generator_chain(events: W4Input) -> tuple[int, int, int]:
    sums: dict[tuple[Any, float], int] = {}
    for window, value in _gen_assign(iter(events)):
        sums[window] = sums.get(window, 0) + value
    return _w4_result(sums)


def key_of(event: dict[str, Any]) -> Any:
    return event["key"]


async def w4_sage_streams(events: W4Input) -> tuple[int, int, int]:
    """``aggregate``: each event is added to its window's sum as it arrives."""
    env = environment("W4")
    windowed = env.from_collection(events, name="events").window("tumbling", size=WINDOW, key_func=key_of)
    sums = windowed.aggregate(lambda total, event: total + event["value"], initial=0)
    return _w4_result({(window.key, window.start_time): window.value for window in await sums.collect()})


def window_total(window_data: Any, state: Any) -> dict[str, Any]:
    """The seed page's ``window_aggregator``, summing W4's values: every item of every input of
    the window, then one record for the window."""
    total = 0
    for stream_data in window_data:
        for item in stream_data:
            total += item["value"]
    return {"key": window_data.key, "window_start": window_data.start_time, "total": total}


async def w4_sage_streams_process(events: W4Input) -> tuple[int, int, int]:
    """The seed page's shape: ``windowed.process(window_total)``, then a sink that keeps each
    window's total. Each window keeps its events, and the window function sums them when it fires."""
    env = environment("W4")
    windowed = env.from_collection(events, name="events").window("tumbling", size=WINDOW, key_func=key_of)
    sums: dict[tuple[Any, float], int] = {}

    def keep(record: dict[str, Any]) -> None:
        sums[record["key"], record["window_start"]] = record["total"]

    windowed.process(window_total).sink(keep)
    await env.execute()
    return _w4_result(sums)


WORKLOADS: dict[str, dict[str, Impl]] = {
    "W1": {
        "plain_loop": w1_plain_loop,
        "generator_chain": w1_generator_chain,
        "asyncio_queues": w1_asyncio_queues,
        "sage_streams": w1_sage_streams,
        "sage_streams_uvloop": w1_sage_streams,
    },
    "W2": {
        "plain_loop": w2_plain_loop,
        "generator_chain": w2_generator_chain,
        "asyncio_queues": w2_asyncio_queues,
        "sage_streams": w2_sage_streams,
        "sage_streams_uvloop": w2_sage_streams,
    },
    "W3": {
        "plain_loop": w3_plain_loop,
        "generator_chain": w3_generator_chain,
        "sage_streams": w3_sage_streams,
        "sage_streams_uvloop": w3_sage_streams,
        "sage_streams_process": w3_sage_streams_process,
    },
    "W4": {
        "plain_loop": w4_plain_loop,
        "generator_chain": w4_generator_chain,
        "sage_streams": w4_sage_streams,
        "sage_streams_uvloop": w4_sage_streams,
        "sage_streams_process": w4_sage_streams_process,
    },
}
"""Workload -> implementation name -> function. ``*_uvloop`` names run on uvloop."""

SIZES = {"W1": 1_000_000, "W2": 1_000_000, "W3": 200_000, "W4": 1_000_000}
"""Items per workload at full size."""

INPUTS: dict[str, Callable[[int], Any]] = {
    "W1": lambda n: n,
    "W2": w2_data,
    "W3": w3_data,
    "W4": w4_data,
}
"""Workload -> ``n -> input``, made before the clock starts."""
