"""The PostgreSQL benchmark keeps working: a tiny run against a database of its own on the
session's server prints both cases beside their hand-written loops, with a ratio."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import asyncpg

from servers import Server

ROOT = Path(__file__).resolve().parents[2]


async def new_database(server: Server, name: str) -> str:
    connection = await asyncpg.connect(server.url)
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()
    return server.url.rsplit("/", 1)[0] + f"/{name}"


def test_a_tiny_postgres_benchmark_prints_both_cases_with_a_ratio(postgres_server: Server) -> None:
    url = asyncio.run(new_database(postgres_server, "bench_smoke"))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.postgres", "--rows", "3000", "--repeat", "1", "--url", url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == [
        "3,000 rows, medians of 1",
        "",
        "| case | sage_streams rows/s | hand-written asyncpg rows/s | ratio |",
        "|---|---:|---:|---:|",
    ]
    row = r"\| {} \| [\d,]+ \| [\d,]+ \| \d+\.\d\d \|"
    assert re.fullmatch(row.format(re.escape("rows -> map -> PostgresSink (checkpoints 1 s)")), lines[4])
    assert re.fullmatch(row.format(re.escape("PostgresSource -> count")), lines[5])
    assert len(lines) == 6
