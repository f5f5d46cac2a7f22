"""The job the Redis crash test kills: a Redis stream -> map -> keyed tumbling window -> Redis.

Run as ``python -m benchmarks.redis_job URL DIR PREFIX``: it reads the stream ``PREFIX:events``
as consumer ``job`` of group ``sums`` (entries ``{"id", "timestamp", "user", "amount"}``),
doubles each amount, sums them per user in tumbling windows of 10 time units, and writes each
window's total to the stream ``PREFIX:sums`` (``RedisStreamSink``) and to the hash
``PREFIX:totals`` (``RedisHashSink``, field ``user:start``), checkpointing into
``DIR/store.db`` every 20 ms. Started again after a kill, it resumes from its last checkpoint:
the group's pending entries after the checkpoint are read again, the sinks' staged epochs are
moved or dropped. :func:`produce` writes the input, :func:`launcher` starts the job in a
subprocess (for :func:`benchmarks.crash.kill_repeatedly`), :func:`outputs` reads what the
sinks hold.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio
import uvloop

from sage_streams import LocalEnvironment
from sage_streams.connectors.redis_streams import RedisHashSink, RedisStreamSink, RedisStreamSource


def build(url: str, folder: Path, prefix: str) -> LocalEnvironment:
    env = LocalEnvironment(
        "redis-job", checkpoints=folder / "store.db", checkpoint_interval=0.02, batch_size=64
    )
    source = RedisStreamSource(url, f"{prefix}:events", group="sums", consumer="job")
    events = env.create_stream("events", source=source)
    doubled = events.map(_parse, name="double")
    windows = doubled.window("tumbling", size=10, key_func=lambda e: e["user"], name="window")
    sums = windows.aggregate(lambda total, e: total + e["amount"], initial=0, name="sums")
    rows = sums.map(lambda a: {"user": a.key, "start": a.start_time, "total": a.value}, name="rows")
    rows.sink(RedisStreamSink(url, f"{prefix}:sums"), name="sums_sink")
    rows.sink(
        RedisHashSink(
            url, f"{prefix}:totals", field=lambda r: f"{r['user']}:{r['start']}", value=lambda r: r["total"]
        ),
        name="totals_sink",
    )
    return env


def _parse(fields: dict[str, str]) -> dict[str, Any]:
    return {
        "timestamp": int(fields["timestamp"]),
        "user": int(fields["user"]),
        "amount": int(fields["amount"]) * 2,
    }


async def produce(url: str, prefix: str, events: int) -> None:
    """``events`` entries of 50 users, 20 per time unit, into ``PREFIX:events``."""
    rng = random.Random(7)
    client = redis.asyncio.Redis.from_url(url)
    try:
        for first in range(0, events, 5000):
            pipe = client.pipeline(transaction=False)
            for i in range(first, min(events, first + 5000)):
                entry = {
                    "id": i,
                    "timestamp": i // 20,
                    "user": rng.randrange(50),
                    "amount": rng.randrange(100),
                }
                pipe.xadd(f"{prefix}:events", entry)  # type: ignore[arg-type]
            await pipe.execute()
    finally:
        await client.aclose()


def launcher(url: str, prefix: str) -> Callable[[Path], subprocess.Popen[bytes]]:
    """What starts the job on ``url`` and ``prefix`` in a folder, its errors in ``folder/stderr``."""
    root = Path(__file__).resolve().parents[1]

    def launch(folder: Path) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(root)}
        command = [sys.executable, "-m", "benchmarks.redis_job", url, str(folder), prefix]
        with open(folder / "stderr", "ab") as errors:
            return subprocess.Popen(command, env=env, stderr=errors)

    return launch


async def outputs(url: str, prefix: str) -> tuple[list[tuple[int, int, int]], dict[str, int], int]:
    """The ``sums`` entries as ``(user, start, total)`` rows (in stream order), the ``totals``
    hash, and the entries still pending in the group."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        sums = [
            (int(f[b"user"]), int(float(f[b"start"])), int(f[b"total"]))
            for _, f in await client.xrange(f"{prefix}:sums")
        ]
        totals = {k.decode(): int(v) for k, v in (await client.hgetall(f"{prefix}:totals")).items()}
        pending = (await client.xpending(f"{prefix}:events", "sums"))["pending"]
    finally:
        await client.aclose()
    return sums, totals, int(pending)


if __name__ == "__main__":
    uvloop.run(build(sys.argv[1], Path(sys.argv[2]), sys.argv[3]).execute())
