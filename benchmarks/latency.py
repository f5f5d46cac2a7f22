"""Latency of one pushed item through map -> filter -> sink on an otherwise idle pipeline.

Each item is emitted only after the previous one reached the sink, so the numbers are the cost
of the hops, not of queueing. The baseline is the hand-written equivalent: three tasks joined by
``asyncio.Queue`` s, one item per hop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.workloads import divisible_by_3

ITEMS_TO_TIME = 2000


def _keep(x: int) -> bool:
    return divisible_by_3(x) or True


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": ordered[len(ordered) // 2] * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
    }


async def sage_streams_latency(count: int = ITEMS_TO_TIME) -> dict[str, float]:
    from sage_streams import LocalEnvironment

    env = LocalEnvironment("latency")
    source = env.create_stream("in")
    arrived: asyncio.Future[float] | None = None

    def sink(_: Any) -> None:
        assert arrived is not None
        arrived.set_result(time.perf_counter())

    source.map(lambda x: x + 1).filter(_keep).sink(sink)
    samples = []
    loop = asyncio.get_running_loop()
    async with env.running():
        for item in range(count):
            arrived = loop.create_future()
            started = time.perf_counter()
            await source.emit(item)
            samples.append(await arrived - started)
    return _percentiles(samples)


async def queues_latency(count: int = ITEMS_TO_TIME) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(1000) for _ in range(3)]
    arrived: asyncio.Future[float] | None = None

    async def stage(inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any] | None, fn: Any) -> None:
        nonlocal arrived
        while True:
            item = fn(await inbox.get())
            if outbox is not None:
                await outbox.put(item)
            elif arrived is not None:
                arrived.set_result(time.perf_counter())

    tasks = [
        asyncio.create_task(stage(queues[0], queues[1], lambda x: x + 1)),
        asyncio.create_task(stage(queues[1], queues[2], _keep)),
        asyncio.create_task(stage(queues[2], None, lambda x: x)),
    ]
    samples = []
    try:
        for item in range(count):
            arrived = loop.create_future()
            started = time.perf_counter()
            await queues[0].put(item)
            samples.append(await arrived - started)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return _percentiles(samples)


LATENCY = {"sage_streams": sage_streams_latency, "asyncio_queues": queues_latency}
