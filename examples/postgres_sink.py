"""PostgreSQL in and out: orders read from a table, summed per shop and minute, written exactly once.

It needs a PostgreSQL server: ``DATABASE_URL`` names it (by default
``postgresql://postgres@127.0.0.1:5432/postgres``; ``python -m servers run postgres`` starts one
and prints its URL), and ``pip install 'sage-streams[postgres]'``. The script (re)creates two
tables there: ``example_orders``, 3,000 orders of 3 shops over 3 minutes, and ``example_totals``,
with an ``_epoch`` column for the sink. The job reads the orders in the order of their ``id``
(:class:`~sage_streams.connectors.postgres.PostgresSource`), sums their amounts per shop in
tumbling windows of a minute of event time, and writes each total as a row
(:class:`~sage_streams.connectors.postgres.PostgresSink`): each epoch's rows are copied in one
transaction with the sink's marker in ``sage_streams_epochs``, so a run killed and restarted
leaves every total once. Then it prints what the table holds and what the marker says.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import asyncpg

from sage_streams import LocalEnvironment
from sage_streams.connectors.postgres import PostgresSink, PostgresSource

URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def create_tables(connection: asyncpg.Connection) -> None:
    await connection.execute(
        "DROP TABLE IF EXISTS example_orders, example_totals;"
        "CREATE TABLE example_orders (id bigint PRIMARY KEY, shop text, seconds float8, amount int);"
        "CREATE TABLE example_totals (shop text, minute int, orders int, total bigint, _epoch bigint)"
    )
    orders = [(i, f"shop-{i % 3}", i * 0.06, i % 7) for i in range(3_000)]  # 3 minutes of orders
    await connection.copy_records_to_table("example_orders", records=orders)


def build(checkpoints: Path) -> LocalEnvironment:
    env = LocalEnvironment("postgres-example", checkpoints=checkpoints, checkpoint_interval=0.1)
    orders = env.create_stream("orders", source=PostgresSource(URL, "example_orders", "id"))
    minutes = orders.window("tumbling", size=60, key_func=lambda o: o["shop"], timestamp="seconds")
    totals = minutes.aggregate(lambda t, o: (t[0] + 1, t[1] + o["amount"]), initial=(0, 0), name="totals")
    rows = totals.map(
        lambda w: {
            "shop": w.key,
            "minute": int(w.start_time // 60),
            "orders": w.value[0],
            "total": w.value[1],
        },
        name="rows",
    )
    rows.sink(PostgresSink(URL, "example_totals"), name="totals_table")
    return env


async def main() -> None:
    connection = await asyncpg.connect(URL)
    try:
        await create_tables(connection)
        with tempfile.TemporaryDirectory() as folder:
            env = build(Path(folder) / "checkpoints.db")
            await env.execute()
        print(f"the job's guarantee: {env.guarantee}")
        for row in await connection.fetch("SELECT * FROM example_totals ORDER BY minute, shop"):
            print(f"minute {row['minute']}  {row['shop']}  {row['orders']:>4} orders  {row['total']:>5}")
        written, committed = await connection.fetchrow(
            "SELECT written, committed FROM sage_streams_epochs WHERE sink = 'example_totals'"
        ) or (None, None)
        print(f"epochs written: {written}, committed by the checkpoint: {committed}")
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
