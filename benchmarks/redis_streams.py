"""``python -m benchmarks.redis_streams``: Redis Streams end to end, sage_streams beside redis-py.

``--entries`` entries (``{"id", "timestamp", "user", "amount"}``, 50 users, 20 per time unit,
made by the crash job's :func:`benchmarks.redis_job.produce`) are written into a Redis stream
first, on a server of this run's own (``servers.start``). Then the implementations do the same
work, each reading the whole stream and writing to a stream of its own: parse each entry (a
dict of str to ints), double its amount, sum the amounts per user in tumbling windows of
:data:`WINDOW` time units, and append each window's ``(user, start, total)`` to the output
stream.

- ``sage_streams``: ``RedisStreamSource`` -> ``map`` -> keyed tumbling ``window`` +
  ``aggregate`` -> ``RedisStreamSink``, checkpoints every second into a SQLite file (so the sink
  is exactly once: each epoch staged, then moved into place at commit), on uvloop.
- ``sage_streams, consumer group``: the same, the source reading as a consumer of a group of
  its own (``XREADGROUP``, each read ``XACK``-ed once its epoch has committed).
- ``redis-py loop``: a hand-written loop on the same client: ``XRANGE`` in batches of the same
  size, the same parsing, a dict of open windows fired as the largest timestamp passes their
  end, each batch's totals written with one pipelined ``XADD`` round trip; no checkpoints.

Runs alternate, ``--repeat`` each (default 3); the table gives the medians in entries per second
and the ratio, and checks that both outputs hold the same totals.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis.asyncio
import uvloop

import servers
from benchmarks.redis_job import produce
from sage_streams import LocalEnvironment
from sage_streams.connectors.redis_streams import RedisStreamSink, RedisStreamSource

WINDOW = 100
"""Time units per window: 2,000 entries, about 40 per user, so 1 total per 40 entries."""

BATCH = 1024
"""Entries per read, for both (the environment's default batch size)."""

Row = tuple[int, int, int]


def parse(fields: dict[str, str]) -> dict[str, int]:
    """An entry's fields (decoded to str by the source) as the event, its amount doubled."""
    return {
        "timestamp": int(fields["timestamp"]),
        "user": int(fields["user"]),
        "amount": int(fields["amount"]) * 2,
    }


async def with_sage_streams(url: str, key: str, out: str, folder: Path, group: bool = False) -> None:
    env = LocalEnvironment(
        "redis-bench", checkpoints=folder / f"{out}.db", checkpoint_interval=1.0, batch_size=BATCH
    )
    source = RedisStreamSource(url, key, group=out if group else None)
    events = env.create_stream("events", source=source).map(parse, name="parse")
    windows = events.window("tumbling", size=WINDOW, key_func=lambda e: e["user"], name="window")
    sums = windows.aggregate(lambda total, e: total + e["amount"], initial=0, name="sums")
    rows = sums.map(lambda a: {"user": a.key, "start": a.start_time, "total": a.value}, name="rows")
    rows.sink(RedisStreamSink(url, out), name="out")
    await env.execute()


async def with_redis_py(url: str, key: str, out: str, folder: Path) -> None:
    del folder  # no checkpoints
    client = redis.asyncio.Redis.from_url(url)
    try:
        windows: dict[tuple[int, int], int] = {}
        last, watermark = "-", -1
        while True:
            entries = await client.xrange(key, last, "+", count=BATCH)
            if not entries:
                break
            last = "(" + entries[-1][0].decode()
            for _, raw in entries:
                event = parse({name.decode(): value.decode() for name, value in raw.items()})
                start = event["timestamp"] - event["timestamp"] % WINDOW
                windows[event["user"], start] = windows.get((event["user"], start), 0) + event["amount"]
                watermark = max(watermark, event["timestamp"])
            fired = [window for window in windows if window[1] + WINDOW <= watermark]
            await _write(client, out, windows, fired)
        await _write(client, out, windows, list(windows))
    finally:
        await client.aclose()


async def _write(
    client: redis.asyncio.Redis, out: str, windows: dict[tuple[int, int], int], fired: list[Any]
) -> None:
    """Append the ``fired`` windows' totals to ``out`` in one pipelined round trip, and close them."""
    if not fired:
        return
    pipe = client.pipeline(transaction=False)
    for user, start in fired:
        pipe.xadd(out, {"user": user, "start": start, "total": windows.pop((user, start))})
    await pipe.execute()


async def output(url: str, out: str) -> list[Row]:
    """The totals in ``out``, sorted."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        entries = await client.xrange(out)
    finally:
        await client.aclose()
    return sorted((int(f[b"user"]), int(float(f[b"start"])), int(f[b"total"])) for _, f in entries)


IMPLEMENTATIONS: dict[str, Callable[[str, str, str, Path], Any]] = {
    "sage_streams": with_sage_streams,
    "sage_streams, consumer group": partial(with_sage_streams, group=True),
    "redis-py loop": with_redis_py,
}


def measure(entries: int, repeat: int) -> dict[str, list[float]]:
    """Entries per second of each implementation, ``repeat`` runs each, alternating; every
    run's output checked equal to the first."""
    rates: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    expected: list[Row] | None = None
    with servers.start("redis") as server, tempfile.TemporaryDirectory(prefix="sage-redis-bench-") as folder:
        uvloop.run(produce(server.url, "bench", entries))
        for run in range(repeat):
            for name, implementation in IMPLEMENTATIONS.items():
                out = f"out-{name}-{run}".replace(" ", "-").replace(",", "")
                started = time.perf_counter()
                uvloop.run(implementation(server.url, "bench:events", out, Path(folder)))
                rates[name].append(entries / (time.perf_counter() - started))
                found = uvloop.run(output(server.url, out))
                if expected is None:
                    expected = found
                if found != expected:
                    raise AssertionError(f"{name} wrote other totals than the first run ({len(found)} rows)")
    assert expected is not None
    print(f"{entries:,} entries, {len(expected):,} window totals, medians of {repeat}")
    return rates


def table(rates: dict[str, list[float]]) -> str:
    """The medians as markdown, with sage_streams' ratio to the hand-written loop."""
    medians = {name: statistics.median(values) for name, values in rates.items()}
    lines = ["| implementation | entries/s (median) | runs |", "|---|---:|---|"]
    for name, values in rates.items():
        lines.append(f"| {name} | {medians[name]:,.0f} | {', '.join(f'{v:,.0f}' for v in values)} |")
    ratio = medians["sage_streams"] / medians["redis-py loop"]
    lines += ["", f"sage_streams / redis-py loop: {ratio:.2f}x"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redis_streams", description=__doc__)
    parser.add_argument("--entries", type=int, default=300_000, help="entries produced first (300,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each implementation (3)")
    args = parser.parse_args(argv)
    print(table(measure(args.entries, args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
