"""The job the NATS → PostgreSQL crash test kills: JetStream -> map -> keyed tumbling window ->
a PostgreSQL table, exactly once, checkpoints every 20 ms.

Run as ``python -m tests.connectors.nats_postgres_job NATS_URL STREAM POSTGRES_URL DIR``: it
reads ``STREAM.in`` through the durable consumer ``np`` (without ``follow``: it ends once it has
read what the stream held), doubles each ``{"n", "user", "timestamp"}``, sums the doubled ``n``
per user in tumbling windows of 10 time units, and writes each total to the table ``sums``
(``user_id``, ``start``, ``total``, ``_epoch``), checkpointing into ``DIR/store.db``. Started
again after a kill, it resumes from its last checkpoint: the consumer reset to the sequence
after the committed one, the windows as they were, the sink's rows of lost epochs deleted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvloop

from sage_streams import LocalEnvironment
from sage_streams.connectors.nats_jetstream import JetStreamSource
from sage_streams.connectors.postgres import PostgresSink


def build(nats_url: str, stream: str, postgres_url: str, folder: Path) -> LocalEnvironment:
    env = LocalEnvironment(
        "nats-postgres",
        checkpoints=folder / "store.db",
        checkpoint_interval=0.02,
        batch_size=64,
        required_guarantee="exactly_once",
    )
    source = JetStreamSource(nats_url, stream, subject=f"{stream}.in", durable="np")
    events = env.create_stream("events", source=source)
    doubled = events.map(lambda e: {**e, "n": 2 * e["n"]}, name="double")
    windows = doubled.window("tumbling", size=10, key_func=lambda e: e["user"], name="window")
    sums = windows.aggregate(lambda total, e: total + e["n"], initial=0, name="sums")
    rows = sums.map(lambda a: (a.key, a.start_time, a.value), name="rows")
    rows.sink(PostgresSink(postgres_url, "sums", columns=["user_id", "start", "total"]), name="sums_sink")
    return env


if __name__ == "__main__":
    uvloop.run(build(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])).execute())
