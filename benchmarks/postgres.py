"""``python -m benchmarks.postgres``: rows per second into and out of PostgreSQL, sage_streams beside
a hand-written asyncpg loop doing the same work, in the same run.

*Sink*: ``--rows`` dict rows ``{"id", "user_id", "amount"}`` from a collection through a map
into :class:`~sage_streams.connectors.postgres.PostgresSink` (exactly once: checkpoints every
second into a SQLite store, each epoch's rows COPYed in one transaction with the sink's marker);
beside it a loop that builds the same tuples and COPYs them (``copy_records_to_table``) in
transactions of 100,000 rows, about what one second of the sink's epoch holds, with no marker
and no checkpoint. *Source*: the table read back through
:class:`~sage_streams.connectors.postgres.PostgresSource` (batches of 1,000 rows, each row a
dict) into a counting sink; beside it a loop running the same keyset query (``WHERE id > $1
ORDER BY id LIMIT 1000``) and making the same dicts. Each case runs ``--repeat`` times,
alternating, and the medians are reported with their ratio.

The server is one this module starts (``servers.start("postgres")``: fsync off, on loopback),
or the one at ``--url``; the tables it creates are dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

import servers
from sage_streams import LocalEnvironment
from sage_streams.connectors.postgres import PostgresSink, PostgresSource

TABLE = "bench_rows"
BATCH = 1_000
COPY_ROWS = 100_000


def rows_of(count: int) -> list[dict[str, int]]:
    return [{"id": i, "user_id": i % 97, "amount": i % 1000} for i in range(count)]


async def fresh(url: str, name: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            f"DROP TABLE IF EXISTS {name};"
            f" CREATE TABLE {name} (id bigint PRIMARY KEY, user_id int, amount bigint, _epoch bigint)"
        )
    finally:
        await connection.close()


async def sink_sage(url: str, rows: list[dict[str, int]], folder: Path) -> None:
    env = LocalEnvironment("bench-sink", checkpoints=folder / f"store-{time.perf_counter_ns()}.db")
    stream = env.from_collection(rows, name="rows")
    stream.map(lambda row: {**row, "amount": row["amount"] + 1}, name="bump").sink(PostgresSink(url, TABLE))
    await env.execute()


async def sink_hand(url: str, rows: list[dict[str, int]], folder: Path) -> None:
    connection = await asyncpg.connect(url)
    try:
        for start in range(0, len(rows), COPY_ROWS):
            chunk = rows[start : start + COPY_ROWS]
            records = [(row["id"], row["user_id"], row["amount"] + 1, 1) for row in chunk]
            async with connection.transaction():
                await connection.copy_records_to_table(TABLE, records=records)
    finally:
        await connection.close()


async def source_sage(url: str, count: int) -> None:
    env = LocalEnvironment("bench-source", batch_size=BATCH)
    seen = [0]
    stream = env.create_stream("rows", source=PostgresSource(url, TABLE, "id"))
    stream.sink(lambda row: seen.__setitem__(0, seen[0] + 1))
    await env.execute()
    assert seen[0] == count, (seen[0], count)


async def source_hand(url: str, count: int) -> None:
    connection = await asyncpg.connect(url)
    seen, last = 0, -1
    try:
        query = f"SELECT * FROM {TABLE} WHERE id > $1 ORDER BY id LIMIT {BATCH}"
        while rows := await connection.fetch(query, last):
            seen += len([dict(row) for row in rows])
            last = rows[-1]["id"]
    finally:
        await connection.close()
    assert seen == count, (seen, count)


async def timed(step: Callable[[], Awaitable[None]]) -> float:
    begun = time.perf_counter()
    await step()
    return time.perf_counter() - begun


async def measure(url: str, count: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Rows per second, medians of ``repeat``: ``{case: (sage_streams, hand-written)}``."""
    rows = rows_of(count)
    seconds: dict[str, list[float]] = {
        name: [] for name in ("sink sage", "sink hand", "source sage", "source hand")
    }
    with tempfile.TemporaryDirectory(prefix="sage-pg-bench-") as directory:
        folder = Path(directory)
        for _ in range(repeat):
            for name, sink in (("sink hand", sink_hand), ("sink sage", sink_sage)):
                await fresh(url, TABLE)
                seconds[name].append(await timed(lambda sink=sink: sink(url, rows, folder)))  # type: ignore[misc]
            for name, source in (("source hand", source_hand), ("source sage", source_sage)):
                seconds[name].append(await timed(lambda source=source: source(url, count)))  # type: ignore[misc]
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"DROP TABLE {TABLE}; DROP TABLE IF EXISTS sage_streams_epochs")
    finally:
        await connection.close()
    rate = {name: count / statistics.median(times) for name, times in seconds.items()}
    return {case: (rate[f"{case} sage"], rate[f"{case} hand"]) for case in ("sink", "source")}


def table(count: int, repeat: int, rates: dict[str, tuple[float, float]]) -> str:
    lines = [
        f"{count:,} rows, medians of {repeat}",
        "",
        "| case | sage_streams rows/s | hand-written asyncpg rows/s | ratio |",
        "|---|---:|---:|---:|",
    ]
    labels = {"sink": "rows -> map -> PostgresSink (checkpoints 1 s)", "source": "PostgresSource -> count"}
    for case, (sage, hand) in rates.items():
        lines.append(f"| {labels[case]} | {sage:,.0f} | {hand:,.0f} | {sage / hand:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.postgres", description=__doc__)
    parser.add_argument("--rows", type=int, default=500_000, help="rows written and read (500,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (3)")
    parser.add_argument("--url", help="a PostgreSQL to use instead of one started here")
    args = parser.parse_args(argv)

    def run(url: str) -> dict[str, Any]:
        return uvloop.run(measure(url, args.rows, args.repeat))

    if args.url is not None:
        rates = run(args.url)
    else:
        with servers.start("postgres") as server:
            rates = run(server.url)
    print(table(args.rows, args.repeat, rates))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
