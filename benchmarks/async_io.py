"""``python -m benchmarks.async_io``: async enrichment calls, side by side with the peers.

Each case sends ``n`` items through an async call with at most 100 calls in flight, in four
systems measured in one run, each repetition in turn (round-robin, so that drift of the machine
spreads over all of them): sage_streams (``map(fn, concurrency=100, ordered=...)``), aiostream
(``pipe.map(fn, task_limit=100, ordered=...)``), and a hand-written ``asyncio.gather`` over a
semaphore (input order only). Cases:

* ``10 ms``: the call awaits ``asyncio.sleep(0.01)`` (the ideal is 100 / 0.01 s = 10,000
  items/s); ordered, unordered, and per key (1,000 keys, sage_streams only);
* ``no wait``: the call returns at once, so what is measured is each system's own overhead.

Every result is checked (the same items, in input order where the mode promises it) before its
time counts. The table gives the median items/s and each figure as a ratio to aiostream's, and
the per-key figure as a ratio to sage_streams' unordered one. Everything runs on uvloop when it
is installed, as ``LocalEnvironment.run()`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiostream import pipe, stream

from sage_streams import LocalEnvironment

CONCURRENCY = 100
KEYS = 1_000

Call = Callable[[int], Awaitable[int]]


async def sleeps(x: int) -> int:
    await asyncio.sleep(0.01)
    return x


async def returns(x: int) -> int:
    return x


async def sage_streams_run(fn: Call, n: int, ordered: Any) -> list[int]:
    env = LocalEnvironment("async_io")
    key = (lambda x: x % KEYS) if ordered == "key" else None
    out = env.from_collection(range(n)).map(fn, concurrency=CONCURRENCY, ordered=ordered, key_func=key)
    return await out.collect()


async def aiostream_run(fn: Call, n: int, ordered: Any) -> list[int]:
    mapped = stream.iterate(range(n)) | pipe.map(fn, task_limit=CONCURRENCY, ordered=bool(ordered))
    return await stream.list(mapped)


async def gather_run(fn: Call, n: int, ordered: Any) -> list[int]:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(x: int) -> int:
        async with limit:
            return await fn(x)

    return list(await asyncio.gather(*(one(x) for x in range(n))))


Runner = Callable[[Call, int, Any], Coroutine[Any, Any, list[int]]]

CASES: list[tuple[str, Call, Any, list[tuple[str, Runner]]]] = [
    (
        "10 ms, ordered",
        sleeps,
        True,
        [("sage_streams", sage_streams_run), ("aiostream", aiostream_run), ("gather", gather_run)],
    ),
    ("10 ms, unordered", sleeps, False, [("sage_streams", sage_streams_run), ("aiostream", aiostream_run)]),
    ("10 ms, per key", sleeps, "key", [("sage_streams", sage_streams_run)]),
    (
        "no wait, ordered",
        returns,
        True,
        [("sage_streams", sage_streams_run), ("aiostream", aiostream_run), ("gather", gather_run)],
    ),
    (
        "no wait, unordered",
        returns,
        False,
        [("sage_streams", sage_streams_run), ("aiostream", aiostream_run)],
    ),
]


def check(result: list[int], n: int, ordered: Any, who: str) -> None:
    expected = list(range(n))
    if (result if ordered is True else sorted(result)) != expected:
        raise AssertionError(f"{who} gave a wrong result")
    if ordered == "key":
        for key in range(min(KEYS, n)):
            if [x for x in result if x % KEYS == key] != expected[key::KEYS]:
                raise AssertionError(f"{who} broke the order of key {key}")


def measure(sizes: dict[Call, int], reps: int) -> dict[str, dict[str, float]]:
    """Median items/s per case and system, the repetitions round-robin."""
    times: dict[str, dict[str, list[float]]] = {
        case: {who: [] for who, _ in runs} for case, _, _, runs in CASES
    }

    async def one_round() -> None:
        for case, fn, ordered, runs in CASES:
            n = sizes[fn]
            for who, run in runs:
                start = time.perf_counter()
                result = await run(fn, n, ordered)
                elapsed = time.perf_counter() - start
                check(result, n, ordered, f"{who} in {case!r}")
                times[case][who].append(n / elapsed)

    for _ in range(reps):
        _event_loop_runner()(one_round())
    return {case: {who: statistics.median(rates) for who, rates in by.items()} for case, by in times.items()}


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it installs
        return asyncio.run
    return uvloop.run


def table(rates: dict[str, dict[str, float]]) -> str:
    lines = [
        f"async calls, at most {CONCURRENCY} in flight (median items/s; ratio to aiostream in the same run)",
        "",
        "| case | sage_streams | aiostream | gather + semaphore | sage_streams / aiostream |",
        "|---|---:|---:|---:|---:|",
    ]
    for case, by in rates.items():
        ours, theirs, gather = by["sage_streams"], by.get("aiostream"), by.get("gather")
        ratio = f"{ours / theirs:.2f}x" if theirs else "n/a"
        lines.append(
            f"| {case} | {ours:,.0f} | {f'{theirs:,.0f}' if theirs else 'n/a'} | "
            f"{f'{gather:,.0f}' if gather else 'n/a'} | {ratio} |"
        )
    per_key = rates["10 ms, per key"]["sage_streams"] / rates["10 ms, unordered"]["sage_streams"]
    lines += ["", f"per key ({KEYS:,} keys) / unordered, sage_streams: {per_key:.2f}x"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 items per 10 ms case, 3 repetitions")
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args()
    sizes = {sleeps: 2_000, returns: 20_000} if args.quick else {sleeps: 10_000, returns: 100_000}
    reps = args.reps or (3 if args.quick else 5)
    print(table(measure(sizes, reps)))


if __name__ == "__main__":
    main()
