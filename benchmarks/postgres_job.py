"""The job the PostgreSQL crash test kills: a PostgreSQL table -> map -> keyed tumbling window
-> a PostgreSQL table, exactly once.

Run as ``python -m benchmarks.postgres_job URL DIR``: it reads the table ``events`` (``id``,
``timestamp``, ``user_id``, ``amount``) of the database at ``URL`` in the order of ``id``,
doubles each amount, sums them per user in tumbling windows of 10 time units, and writes each
total to the table ``sums`` (``user_id``, ``start``, ``total``, ``_epoch``) of the same
database, checkpointing into ``DIR/store.db`` every 20 ms. Started again after a kill, it
resumes from its last checkpoint: the source after the last ``id`` committed, the sink's rows of
epochs the checkpoint lost deleted.

:func:`prepare` creates both tables and fills ``events``.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import asyncpg
import uvloop

from sage_streams import LocalEnvironment
from sage_streams.connectors.postgres import PostgresSink, PostgresSource


def build(url: str, folder: Path) -> LocalEnvironment:
    env = LocalEnvironment(
        "postgres-job", checkpoints=folder / "store.db", checkpoint_interval=0.02, batch_size=64
    )
    events = env.create_stream("events", source=PostgresSource(url, "events", "id"))
    doubled = events.map(lambda e: {**e, "amount": e["amount"] * 2}, name="double")
    windows = doubled.window("tumbling", size=10, key_func=lambda e: e["user_id"], name="window")
    sums = windows.aggregate(lambda total, e: total + e["amount"], initial=0, name="sums")
    rows = sums.map(lambda a: (a.key, a.start_time, a.value), name="rows")
    rows.sink(PostgresSink(url, "sums", columns=["user_id", "start", "total"]), name="sums_sink")
    return env


async def prepare(url: str, events: int) -> None:
    """The tables of the job in the database at ``url``: ``events`` of 50 users, 20 per time unit."""
    rng = random.Random(7)
    rows = [(i, i // 20, rng.randrange(50), rng.randrange(100)) for i in range(events)]
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "CREATE TABLE events (id bigint PRIMARY KEY, timestamp bigint, user_id int, amount bigint);"
            "CREATE TABLE sums (user_id int, start bigint, total bigint, _epoch bigint)"
        )
        await connection.copy_records_to_table("events", records=rows)
    finally:
        await connection.close()


if __name__ == "__main__":
    uvloop.run(build(sys.argv[1], Path(sys.argv[2])).execute())
