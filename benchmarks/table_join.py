"""``python -m benchmarks.table_join``: a table join against a changing table, beside W3's lookup join.

W3's shape: 200,000 activity events against the profiles of 1,000 users (one in eleven without
one), enriched and tallied by a sink. Today's *lookup join* is W3 itself: the profiles come
first and end, so the symmetric join comes down to a lookup fused into the steps after it. The
*table join* is ``events.join_table(profiles, ...)`` with the profile stream open for the whole
run: an async source that yields the profiles, then keeps updating them, ten rows per loop turn
(one turn is about one batch of 1,024 events, so a row changes every 100 events or so), until
after the last event. Only the events are counted in the throughput; the updates are work the
table join does on top.

Both run in this process, five times each, round-robin, best run reported, and the ratio of the
two. Then memory: the peak that ``tracemalloc`` sees while the table join runs over 50,000 and
over 200,000 events made lazily (so the input takes no memory); a join that keeps its events
would grow four times, a flat one stays at about 1.0x.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from typing import Any

from benchmarks.workloads import PROFILES_COUNT, enrich, user_id, w3_data, w3_sage_streams
from sage_streams import LocalEnvironment

__all__ = ["main"]

EVENTS = 200_000
MEMORY_SIZES = (50_000, 200_000)
REPETITIONS = 5
ROWS_PER_TURN = 10
UPDATES_PER_EVENT = 1 / 80
"""Updates made per event: a row every 100 events as they interleave, and 25% more, so that the
table is still open when the last event is joined."""


def activities(n: int) -> Iterator[dict[str, Any]]:
    """W3's activity events, made one at a time."""
    for i in range(n):
        yield {"user_id": (i * 7919) % PROFILES_COUNT, "action": "view", "seq": i}


async def changing_profiles(profiles: list[dict[str, Any]], updates: int) -> AsyncIterator[dict[str, Any]]:
    """The profiles, then ``updates`` changes of their tier, ``ROWS_PER_TURN`` per loop turn."""
    for profile in profiles:
        yield profile
    for k in range(updates):
        if k % ROWS_PER_TURN == 0:
            await asyncio.sleep(0)
        profile = profiles[k % len(profiles)]
        yield {**profile, "tier": ("free", "gold")[k % 2]}


async def table_join(events: Iterable[dict[str, Any]], n: int) -> tuple[int, str]:
    """The enriched events counted, and the join's mode at the end (``"table"``: it never
    came down to a lookup, the table was open throughout)."""
    _, profiles = w3_data(0)
    env = LocalEnvironment("table_join")
    event_stream = env.from_collection(events, name="activities")
    profile_stream = env.create_stream("profiles", changing_profiles(profiles, int(n * UPDATES_PER_EVENT)))
    tally = [0]

    def count(event: dict[str, Any]) -> None:
        tally[0] += 1

    joined = event_stream.join_table(profile_stream, key_func=user_id, name="enrich")
    joined.map(enrich).sink(count)
    await env.execute()
    return tally[0], env.metrics().operators["enrich"].mode or ""


def timed(run: Callable[[], Coroutine[Any, Any, Any]], times: list[float]) -> None:
    """Run ``run()`` on a fresh loop and add its wall time to ``times``."""
    start = time.perf_counter()
    asyncio.run(run())
    times.append(time.perf_counter() - start)


def peak_bytes(n: int) -> int:
    """The peak traced memory of the table join over ``n`` lazily made events."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        asyncio.run(table_join(activities(n), n))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    data = w3_data(EVENTS)
    activity_list = data[0]
    counted, mode = asyncio.run(table_join(activity_list, EVENTS))  # also the warm-up
    asyncio.run(w3_sage_streams(data))
    lookup_times: list[float] = []
    table_times: list[float] = []
    for _ in range(REPETITIONS):
        timed(lambda: w3_sage_streams(data), lookup_times)
        timed(lambda: table_join(activity_list, EVENTS), table_times)
    lookup_rate = EVENTS / min(lookup_times)
    table_rate = EVENTS / min(table_times)
    print(f"events: {EVENTS:,} against {PROFILES_COUNT:,} keys, best of {REPETITIONS}")
    print(f"lookup join (W3, profiles ended first): {lookup_rate:12,.0f} events/s")
    print(f"join_table (profiles open, changing):   {table_rate:12,.0f} events/s  (mode {mode!r})")
    print(f"join_table / lookup join: {table_rate / lookup_rate:.2f}x  ({counted:,} events enriched)")
    peaks = [peak_bytes(n) for n in MEMORY_SIZES]
    pairs = zip(peaks, MEMORY_SIZES, strict=True)
    sizes = " and ".join(f"{peak / 2**20:.2f} MiB after {n:,}" for peak, n in pairs)
    print(f"join_table peak traced memory: {sizes} events: {peaks[1] / peaks[0]:.2f}x")


if __name__ == "__main__":
    main()
