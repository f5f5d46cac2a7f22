"""Workloads and their implementations, one function per (workload, implementation).

Every implementation of a workload gets the same input and must return the same result; the
harness checks that before it reports a number. An implementation is a function of ``n`` (the
number of items) returning the result; ``async`` ones are run on a fresh event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from sage_streams import LocalEnvironment

Impl = Callable[[int], Any | Awaitable[Any]]


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


def _gen_map(fn: Callable[[int], int], items: Iterator[int]) -> Iterator[int]:
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
    env = LocalEnvironment("W1")
    stream = env.from_collection(range(n)).map(double).filter(divisible_by_3)
    return sum(await stream.collect())


WORKLOADS: dict[str, dict[str, Impl]] = {
    "W1": {
        "plain_loop": w1_plain_loop,
        "generator_chain": w1_generator_chain,
        "asyncio_queues": w1_asyncio_queues,
        "sage_streams": w1_sage_streams,
        "sage_streams_uvloop": w1_sage_streams,
    },
}
"""Workload -> implementation name -> function. ``*_uvloop`` names run on uvloop."""

SIZES = {"W1": 1_000_000}
"""Items per workload at full size."""
