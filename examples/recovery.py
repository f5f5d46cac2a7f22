"""Checkpoints and recovery: kill this script (Ctrl-C, or ``kill -9``) and start it again.

It sums the amounts of 200,000 orders per shop and per minute of event time, reading them from
a JSON Lines file and writing the totals to a SQLite table, with a checkpoint every half
second. Each order is slowed down a little, so that the run lasts a few seconds. Started again
after a kill, it resumes from its last checkpoint: the file is read on from the position it had
reached, the windows hold what they held, and the rows written after that checkpoint are
dropped and written again, so the table ends with every total exactly once. The files live in
a folder of the system's temporary directory (``SAGE_STREAMS_RECOVERY`` names another one); a
run of a job that has finished restores its end and does nothing more, and ``--fresh`` starts
over.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

from sage_streams import LocalEnvironment
from sage_streams.connectors import JsonLinesSource, SqliteSink

FOLDER = Path(os.environ.get("SAGE_STREAMS_RECOVERY", Path(tempfile.gettempdir()) / "sage_streams_recovery"))
ORDERS = 200_000


def write_orders(path: Path) -> None:
    """The input: orders of 5 shops, one per 3 ms of event time (a minute every 20,000)."""
    with open(path, "w") as out:
        for i in range(ORDERS):
            out.write(
                json.dumps({"id": i, "shop": f"shop-{i % 5}", "timestamp": i * 0.003, "amount": i % 50})
            )
            out.write("\n")


async def slow(order: dict[str, Any]) -> dict[str, Any]:
    """A stand-in for real work per order, so that there is time to kill the run."""
    if order["id"] % 2_000 == 0:
        await asyncio.sleep(0.02)
    return order


def build() -> LocalEnvironment:
    env = LocalEnvironment("recovery-demo", checkpoints=FOLDER / "checkpoints.db", checkpoint_interval=0.5)
    orders = env.create_stream("orders", source=JsonLinesSource(FOLDER / "orders.jsonl"))
    minutes = orders.map(slow, name="work").window("tumbling", size=60, key_func=lambda o: o["shop"])
    totals = minutes.aggregate(lambda total, order: total + order["amount"], initial=0, name="totals")
    rows = totals.map(
        lambda t: {"shop": t.key, "minute": int(t.start_time // 60), "total": t.value}, name="rows"
    )
    rows.sink(SqliteSink(FOLDER / "totals.db", "totals"), name="table")
    return env


def main() -> None:
    if "--fresh" in sys.argv:
        for name in ("checkpoints.db", "totals.db"):
            (FOLDER / name).unlink(missing_ok=True)
    FOLDER.mkdir(parents=True, exist_ok=True)
    if not (FOLDER / "orders.jsonl").exists():
        write_orders(FOLDER / "orders.jsonl")
    env = build()
    env.run()
    with closing(sqlite3.connect(FOLDER / "totals.db")) as db:
        rows = db.execute("SELECT count(*), sum(total) FROM totals").fetchone()
    print(f"{rows[0]} totals, {rows[1]:,} in all; the job's guarantee: {env.guarantee}")


if __name__ == "__main__":
    main()
