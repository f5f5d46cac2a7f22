"""The NATS → PostgreSQL crash test: a job reading a JetStream stream and writing per-user window
totals into a PostgreSQL table (``tests/connectors/nats_postgres_job.py``), killed with SIGKILL
at ten seeded moments and restarted each time until it finishes, leaves in the table exactly the
totals of the input: nothing lost, nothing twice, and the consumer acknowledged to the end.

Each run is killed once it has committed an epoch of its own, at a seeded random moment of the
next 30 ms (checkpoints every 20 ms): mid-fetch, mid-COPY, between the sink's transaction and the
checkpoint's commit, before or after an acknowledgement. Only the job's process is killed, by
its PID; both servers (the session's) go on.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections import Counter
from functools import partial
from pathlib import Path

import asyncpg
import nats
import pytest

from benchmarks.crash import kill_repeatedly
from servers import Server

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 20_000
KILLS = 10


def start(nats_url: str, stream: str, postgres_url: str, folder: Path) -> subprocess.Popen[bytes]:
    with open(folder / "stderr", "ab") as errors:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.connectors.nats_postgres_job",
                nats_url,
                stream,
                postgres_url,
                str(folder),
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stderr=errors,
        )


def event(i: int) -> dict[str, int]:
    """The i-th input: 41 users, 25 events per time unit."""
    return {"n": i, "user": i * 7 % 41, "timestamp": i // 25}


async def fill(url: str, stream: str) -> None:
    connection = await nats.connect(url)
    try:
        js = connection.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        for i in range(MESSAGES):
            await js.publish_async(f"{stream}.in", json.dumps(event(i)).encode())
        await js.publish_async_completed()
    finally:
        await connection.close()


async def acked(url: str, stream: str) -> int:
    connection = await nats.connect(url)
    try:
        info = await connection.jetstream().consumer_info(stream, "np")
        return int(info.ack_floor.stream_seq)
    finally:
        await connection.close()


async def database(server: Server, name: str) -> str:
    connection = await asyncpg.connect(server.url)
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()
    url = server.url.rsplit("/", 1)[0] + f"/{name}"
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CREATE TABLE sums (user_id int, start bigint, total bigint, _epoch bigint)")
    finally:
        await connection.close()
    return url


async def sums(url: str) -> Counter[tuple[int, int, int]]:
    connection = await asyncpg.connect(url)
    try:
        return Counter(tuple(row) for row in await connection.fetch("SELECT user_id, start, total FROM sums"))
    finally:
        await connection.close()


@pytest.mark.slow
def test_a_nats_to_postgres_job_killed_ten_times_writes_each_total_once(
    nats_server: Server, postgres_server: Server, tmp_path: Path
) -> None:
    totals: Counter[tuple[int, int]] = Counter()
    for i in range(MESSAGES):
        e = event(i)
        totals[(e["user"], e["timestamp"] // 10 * 10)] += 2 * i
    expected = Counter((user, start, total) for (user, start), total in totals.items())

    stream = f"NP{random.Random().randrange(10**9)}"
    asyncio.run(fill(nats_server.url, stream))
    url = asyncio.run(database(postgres_server, f"np_{stream.lower()}"))
    launch = partial(start, nats_server.url, stream, url)
    assert kill_repeatedly(tmp_path, KILLS, random.Random(2026), launch=launch) == KILLS
    assert launch(tmp_path).wait(timeout=120) == 0, (tmp_path / "stderr").read_text()
    found = asyncio.run(sums(url))
    assert (sum((expected - found).values()), sum((found - expected).values())) == (0, 0)  # lost, extra
    assert found == expected
    assert asyncio.run(acked(nats_server.url, stream)) == MESSAGES  # sequences 1..MESSAGES
