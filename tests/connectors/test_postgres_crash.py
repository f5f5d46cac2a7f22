"""The PostgreSQL crash test: a job reading and writing PostgreSQL tables (``benchmarks/
postgres_job.py``) killed with SIGKILL at ten seeded moments, restarted each time until it
finishes, leaves in its table exactly what an uninterrupted run leaves: nothing lost, nothing twice.

Each run is killed once it has committed an epoch of its own, at a seeded random moment of the
next 30 ms (checkpoints every 20 ms), so kills fall mid-batch, mid-COPY, between a sink's
transaction and the checkpoint's commit, and mid-commit. Only the job's process is killed, by its
PID: the server (the session's) goes on.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections import Counter
from functools import partial
from pathlib import Path

import asyncpg
import pytest

from benchmarks.crash import kill_repeatedly
from benchmarks.postgres_job import prepare
from servers import Server

ROOT = Path(__file__).resolve().parents[2]
KILLS = 10


def start(url: str, folder: Path) -> subprocess.Popen[bytes]:
    with open(folder / "stderr", "ab") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks.postgres_job", url, str(folder)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stderr=errors,
        )


async def database(server: Server, name: str, events: int) -> str:
    """A new database ``name`` on ``server`` holding the job's tables; its URL."""
    connection = await asyncpg.connect(server.url)
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()
    url = server.url.rsplit("/", 1)[0] + f"/{name}"
    await prepare(url, events)
    return url


async def sums(url: str) -> Counter[tuple[int, int, int]]:
    connection = await asyncpg.connect(url)
    try:
        return Counter(tuple(row) for row in await connection.fetch("SELECT user_id, start, total FROM sums"))
    finally:
        await connection.close()


async def amounts(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        total: int = await connection.fetchval("SELECT sum(amount) FROM events")
        return total
    finally:
        await connection.close()


@pytest.mark.slow
def test_a_postgres_job_killed_ten_times_writes_its_output_exactly_once(
    postgres_server: Server, tmp_path: Path
) -> None:
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    clean.mkdir()
    crashed.mkdir()
    clean_url = asyncio.run(database(postgres_server, "crash_clean", 60_000))
    crashed_url = asyncio.run(database(postgres_server, "crash_killed", 60_000))
    assert start(clean_url, clean).wait(timeout=120) == 0, (clean / "stderr").read_text()
    expected = asyncio.run(sums(clean_url))
    assert len(expected) > 14_000  # a total per user and window of 10 time units (300 of them)
    assert set(expected.values()) == {1}
    assert sum(total for _, _, total in expected) == 2 * asyncio.run(amounts(clean_url))

    assert kill_repeatedly(crashed, KILLS, random.Random(2026), launch=partial(start, crashed_url)) == KILLS
    assert start(crashed_url, crashed).wait(timeout=120) == 0, (crashed / "stderr").read_text()
    found = asyncio.run(sums(crashed_url))
    assert (sum((expected - found).values()), sum((found - expected).values())) == (0, 0)  # lost, extra
    assert found == expected
