"""Redis Streams in and out: clicks produced into a stream, each user's spending per minute written
back exactly once, to a stream and to a hash that another service can read.

The job reads the stream as a consumer group (each entry acknowledged once the checkpoint
holding it has committed), sums each user's cents in one-minute tumbling windows, and writes
every total to the stream ``example:totals`` and the latest total of each user to the hash
``example:latest``. An entry whose timestamp is not a number goes to the dead letters, written to
``example:dead``: every sink is exactly once, and so is the job. Needs a
local Redis (``redis-server``, or ``python -m servers run redis``)::

    REDIS_URL=redis://127.0.0.1:6379/0 python examples/redis_pipeline.py

It deletes and rewrites the ``example:*`` keys it uses, so it can be run again.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import cast

import redis.asyncio

from sage_streams import DeadLetter, LocalEnvironment
from sage_streams.connectors.redis_streams import RedisHashSink, RedisStreamSink, RedisStreamSource

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CLICKS, TOTALS, LATEST, DEAD = "example:clicks", "example:totals", "example:latest", "example:dead"

CLICKS_MADE: list[tuple[str, int | str, int]] = [  # (user, second, cents)
    ("ana", 5, 120),
    ("bo", 12, 300),
    ("ana", 40, 80),
    ("bo", "soon", 999),  # not a time: a dead letter
    ("chen", 61, 450),
    ("ana", 75, 200),
    ("bo", 118, 50),
    ("ana", 130, 10),
]


async def produce(client: redis.asyncio.Redis) -> None:
    """The clicks, into a stream made afresh."""
    keys = (CLICKS, TOTALS, LATEST, DEAD)
    await client.delete(*keys, *(f"{key}.sage-staging" for key in keys))
    for user, second, cents in CLICKS_MADE:
        await client.xadd(CLICKS, {"user": user, "timestamp": second, "cents": cents})


def parse(fields: dict[str, str]) -> dict[str, object]:
    """A click's fields (str, as the source decodes them) as an event."""
    return {"user": fields["user"], "timestamp": float(fields["timestamp"]), "cents": int(fields["cents"])}


def dead_letter(letter: DeadLetter) -> dict[str, str]:
    """A dead letter as the fields of an entry: what failed where, and why."""
    return {"operator": letter.operator, "item": repr(letter.item), "error": type(letter.error).__name__}


async def entries(client: redis.asyncio.Redis, key: str) -> list[dict[str, str]]:
    """The fields of each entry of ``key``, in order (the client decodes replies to str)."""
    return [fields for _, fields in cast(list[tuple[str, dict[str, str]]], await client.xrange(key))]


async def main() -> None:
    client = redis.asyncio.Redis.from_url(URL, decode_responses=True)
    await produce(client)
    with tempfile.TemporaryDirectory() as folder:
        env = LocalEnvironment("redis-example", checkpoints=Path(folder) / "checkpoints.db")
        clicks = env.create_stream("clicks", source=RedisStreamSource(URL, CLICKS, group="spending"))
        events = clicks.map(parse, name="parse").on_error(lambda stream_id, error, context: "continue")
        events.errors().sink(RedisStreamSink(URL, DEAD, encode=dead_letter), name="dead")
        minutes = events.window("tumbling", size=60, key_func=lambda e: e["user"], name="minutes")
        spent = minutes.aggregate(lambda total, e: total + e["cents"], initial=0)
        rows = spent.map(lambda w: {"user": w.key, "minute": int(w.start_time // 60), "cents": w.value})
        rows.sink(RedisStreamSink(URL, TOTALS), name="totals")
        rows.sink(
            RedisHashSink(URL, LATEST, field=lambda r: r["user"], value=lambda r: r["cents"]), name="latest"
        )
        await env.execute()
        print(f"the job's guarantee: {env.guarantee}")
    for letter in await entries(client, DEAD):
        print(f"dead letter from {letter['operator']}: {letter['item']} ({letter['error']})")
    for total in await entries(client, TOTALS):
        print("total: " + ", ".join(f"{name}={value}" for name, value in total.items()))
    latest = cast(dict[str, str], await client.hgetall(LATEST))
    print("latest: " + ", ".join(f"{user}={cents}" for user, cents in sorted(latest.items())))
    print(f"pending in the group: {(await client.xpending(CLICKS, 'spending'))['pending']}")
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
