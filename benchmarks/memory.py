"""Peak memory against input size: with bounded buffers it should stay flat.

Each size runs in a fresh interpreter (``python -m benchmarks._child memory NAME sage_streams N``),
which takes the peak RSS from the start of the run (the imports before it peak higher than
where they settle); the harness reports the difference between a small and a ten times larger
run. Both inputs are made lazily, so the input itself takes no memory.

- ``W1``: W1's pipeline, ``range(n) -> map(x * 2) -> filter(x % 3 == 0)``, into a sink that sums
  (``collect()`` would keep a third of the items: the user's memory, not the runtime's).
- ``backpressure``: an async generator of dicts, read by its own task into a ``block`` channel
  of 1,000 items, drained by a sink about 100 times slower than the producer: the sink
  busy-waits 100 times as long per item as the generator, timed alone in the same process,
  takes to make one. Without backpressure the channel would hold nearly every item by the end.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from benchmarks.workloads import divisible_by_3, double
from sage_streams import LocalEnvironment

__all__ = ["MEMORY", "SLOWDOWN", "w1_expected"]

BUFFER = 1_000
"""The environment's ``buffer_size``: the bound of the producer's channel, in items."""
SLOWDOWN = 100
"""How many times slower than the producer the backpressure run's consumer is made."""
CALIBRATION_ITEMS = 20_000


def w1_expected(n: int) -> int:
    """W1's result for ``n`` items in closed form: 2x for every x < n divisible by 3."""
    multiples = (n + 2) // 3
    return 3 * multiples * (multiples - 1)


async def w1_memory(n: int) -> dict[str, Any]:
    env = LocalEnvironment("W1-memory")
    total = 0

    def add(x: int) -> None:
        nonlocal total
        total += x

    env.from_collection(range(n)).map(double).filter(divisible_by_3).sink(add)
    await env.execute()
    return {"result": total, "expected": w1_expected(n)}


async def _events(n: int) -> AsyncIterator[dict[str, Any]]:
    for i in range(n):
        yield {"user_id": i % 1000, "value": i, "ts": i / 1000}


async def _drain(n: int, busy: float) -> tuple[list[int], float, dict[str, float]]:
    """``n`` events through the block channel into a sink that busy-waits ``busy`` s an item."""
    env = LocalEnvironment("backpressure", buffer_size=BUFFER)
    tally = [0, 0]
    clock = time.perf_counter

    def consume(event: dict[str, Any]) -> None:
        tally[0] += 1
        tally[1] += event["value"]
        deadline = clock() + busy
        while clock() < deadline:
            pass

    env.create_stream("events", source=_events(n)).sink(consume)
    started = clock()
    await env.execute()
    seconds = clock() - started
    channels = env.metrics().channels.values()
    stats = {
        "channel_capacity": float(max(channel.capacity for channel in channels)),
        "channel_peak": float(max(channel.peak for channel in channels)),
        "blocked_seconds": sum(channel.blocked_seconds for channel in channels),
    }
    return tally, seconds, stats


async def _producer_rate(n: int) -> float:
    """Items per second the source makes on its own, read by a bare ``async for``."""
    started = time.perf_counter()
    async for _ in _events(n):
        pass
    return n / (time.perf_counter() - started)


async def backpressure_memory(n: int) -> dict[str, Any]:
    calibration = min(n, CALIBRATION_ITEMS)
    await _producer_rate(calibration)  # warm-up
    producer_rate = await _producer_rate(calibration)
    tally, seconds, stats = await _drain(n, SLOWDOWN / producer_rate)
    consumer_rate = n / seconds
    return {
        "result": tally,
        "expected": [n, n * (n - 1) // 2],
        "producer_items_per_s": producer_rate,
        "consumer_items_per_s": consumer_rate,
        "slowdown": producer_rate / consumer_rate,
        **stats,
    }


MEMORY: dict[str, Callable[[int], Coroutine[Any, Any, dict[str, Any]]]] = {
    "W1": w1_memory,
    "backpressure": backpressure_memory,
}
"""Measurement -> ``n -> result`` (with the expected result), run on sage_streams."""
