"""The PostgreSQL source against a real server: a table's rows in the order of an increasing
column, the last value as the position; read to the rows present at the start, or followed by
polling woken by NOTIFY; a row decode refuses goes to the error path; a wrong table or URL fails
at the start."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import DeadLetter, LocalEnvironment, PipelineError
from sage_streams.connectors import Backoff, DecodingSource, ReplayableSource
from sage_streams.connectors.postgres import PostgresSink, PostgresSource
from sage_streams.errors import ConnectorError
from servers import Server
from tests.connectors.postgres import Database, database, until

__all__ = ["database"]  # the fixture, used by name


async def events(db: Database, ids: range, table: str | None = None) -> str:
    """A table of events with ``ids`` (created if need be), each ``payload`` a JSON text."""
    table = table or db.table
    await db.connection.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, user_id int, payload text)"
    )
    rows = [(i, i % 3, json.dumps({"amount": i * 10})) for i in ids]
    await db.connection.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3)", rows)
    return table


async def read(source: PostgresSource, position: Any, size: int) -> list[tuple[list[Any], Any]]:
    return [
        ([source.decode(row) for row in batch], after)
        async for batch, after in source.batches(position, size)
    ]


async def test_rows_come_in_batches_in_the_columns_order_each_with_the_last_value(database: Database) -> None:
    db = database
    await events(db, range(5, 0, -1))  # inserted backwards: the order is the column's
    source = PostgresSource(db.url, db.table, "id", columns=["user_id"])
    assert source.guarantee == "exactly_once"
    assert isinstance(source, ReplayableSource)
    assert isinstance(source, DecodingSource)
    assert await read(source, None, 2) == [
        ([{"id": 1, "user_id": 1}, {"id": 2, "user_id": 2}], 2),
        ([{"id": 3, "user_id": 0}, {"id": 4, "user_id": 1}], 4),
        ([{"id": 5, "user_id": 2}], 5),
    ]
    assert await read(source, 3, 10) == [([{"id": 4, "user_id": 1}, {"id": 5, "user_id": 2}], 5)]
    assert await read(source, 5, 10) == []


async def test_without_follow_the_rows_there_are_at_the_start_are_read(database: Database) -> None:
    db = database
    await events(db, range(1, 4))
    source = PostgresSource(db.url, db.table, "id", decode=lambda row: row["id"])
    batches = source.batches(None, 1)
    assert [source.decode(row) for row in (await anext(batches))[0]] == [1]
    await events(db, range(4, 6))  # after the start: not read
    assert [source.decode(row) for batch, _ in [item async for item in batches] for row in batch] == [2, 3]
    empty = PostgresSource(db.url, await events(db, range(0), table=db.new_table()), "id")
    assert await read(empty, None, 10) == []


async def test_following_polls_for_new_rows_and_is_live(database: Database) -> None:
    db = database
    await events(db, range(1, 3))
    source = PostgresSource(db.url, db.table, "id", follow=True, poll_interval=0.01, decode=lambda r: r["id"])
    assert source.live  # waiting for rows, it lets barriers pass
    assert not PostgresSource(db.url, db.table, "id").live
    batches = source.batches(None, 10)
    assert [source.decode(r) for r in (await anext(batches))[0]] == [1, 2]
    pending = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.05)
    assert not pending.done()  # no empty batches: it waits for rows
    await events(db, range(3, 5))
    batch = await asyncio.wait_for(pending, 30)
    assert ([source.decode(r) for r in batch[0]], batch[1]) == ([3, 4], 4)
    await batches.aclose()  # type: ignore[attr-defined]


async def test_a_notification_wakes_the_poll(database: Database) -> None:
    db = database
    await events(db, range(1, 2))
    # An hour between polls: only the notification can bring the next row within the test.
    source = PostgresSource(db.url, db.table, "id", follow=True, poll_interval=3600, notify="new_events")
    batches = source.batches(None, 10)
    assert len((await anext(batches))[0]) == 1
    pending = asyncio.ensure_future(anext(batches))
    listening = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%new_events%'"
    await until(lambda: db.connection.fetchval(listening))
    await events(db, range(2, 3))
    await db.connection.execute("NOTIFY new_events")
    batch = await asyncio.wait_for(pending, 30)
    assert ([source.decode(row)["id"] for row in batch[0]], batch[1]) == ([2], 2)
    await batches.aclose()  # type: ignore[attr-defined]


async def test_notify_without_follow_and_a_bad_poll_interval_are_refused() -> None:
    with pytest.raises(
        ValueError, match="notify wakes a source that follows the table: give follow=True too"
    ):
        PostgresSource("postgresql://h/d", "t", "id", notify="c")
    with pytest.raises(ValueError, match="poll_interval must be > 0 seconds, got 0"):
        PostgresSource("postgresql://h/d", "t", "id", poll_interval=0)


async def test_a_missing_table_or_wrong_credentials_fail_at_the_first_step(database: Database) -> None:
    db = database
    source = PostgresSource(db.url, "missing", "id")
    with pytest.raises(
        ConnectorError, match=r"reading where the table ends failed: UndefinedTableError: relation"
    ):
        await read(source, None, 10)
    await events(db, range(1, 2))
    source = PostgresSource(db.url, db.table, "idd", follow=True)
    with pytest.raises(
        ConnectorError, match=r"reading rows failed: UndefinedColumnError: column \"idd\" does not exist"
    ):
        await read(source, None, 10)
    source = PostgresSource(db.url.replace("postgres@", "nobody:pw@"), db.table, "id")
    with pytest.raises(
        ConnectorError, match=r"PostgresSource\('postgresql://nobody:\*\*\*@.*role \"nobody\" does not exist"
    ):
        await read(source, None, 10)
    refused = PostgresSource(
        "postgresql://postgres@127.0.0.1:1/x", "t", "id", backoff=Backoff(attempts=2, first=0.01)
    )
    with pytest.raises(ConnectorError, match="reading where the table ends failed 2 times in a row"):
        await read(refused, None, 10)


def parse(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], **json.loads(row["payload"])}


async def test_a_row_decode_refuses_is_an_error_of_that_row_through_on_error(
    database: Database, tmp_path: Path
) -> None:
    db = database
    table = await events(db, range(1, 6))
    await db.connection.execute(f"UPDATE {table} SET payload = 'not json' WHERE id = 3")
    out = db.new_table()
    await db.connection.execute(f"CREATE TABLE {out} (id bigint, amount bigint, _epoch bigint)")
    env = LocalEnvironment("decode", checkpoints=tmp_path / "store.db")
    stream = env.create_stream("events", source=PostgresSource(db.url, table, "id", decode=parse))
    stream.on_error(lambda *_: "continue")
    letters: list[DeadLetter] = []
    stream.errors().sink(letters.append)
    stream.sink(PostgresSink(db.url, out))
    await env.execute()
    assert [row[:2] for row in await db.rows()] == [(1, 10), (2, 20), (4, 40), (5, 50)]
    assert [(letter.operator, letter.item["id"]) for letter in letters] == [("events.decode", 3)]

    env = LocalEnvironment("decode-fails")  # no policy: the row's error stops the run
    env.create_stream("events", source=PostgresSource(db.url, table, "id", decode=parse)).sink(lambda _: None)
    with pytest.raises(PipelineError, match=r"operator 'events\.decode' failed") as failed:
        await env.execute()
    assert isinstance(failed.value.__cause__, json.JSONDecodeError)


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(
    ids=st.lists(st.integers(-(2**40), 2**40), unique=True, max_size=30),
    size=st.integers(1, 7),
    cut=st.integers(0, 30),
)
def test_a_read_resumed_from_any_position_it_gave_reads_exactly_the_rest(
    postgres_server: Server, ids: list[int], size: int, cut: int
) -> None:
    async def check() -> None:
        connection = await asyncpg.connect(postgres_server.url)
        try:
            db = Database(postgres_server.url, connection, "")
            db.new_table()
            await connection.execute(f"CREATE TABLE {db.table} (id bigint PRIMARY KEY)")
            await connection.executemany(f"INSERT INTO {db.table} VALUES ($1)", [(i,) for i in ids])
            source = PostgresSource(db.url, db.table, "id", decode=lambda row: row["id"])
            batches = await read(source, None, size)
            assert [n for batch, _ in batches for n in batch] == sorted(ids)
            assert all(0 < len(batch) <= size and batch[-1] == after for batch, after in batches)
            if cut < len(batches):
                _, position = batches[cut]
                rest = await read(source, position, size)
                assert [n for batch, _ in rest for n in batch] == [n for n in sorted(ids) if n > position]
        finally:
            await connection.close()

    asyncio.run(check())


async def test_checkpoints_go_on_while_a_following_source_waits_for_rows(
    database: Database, tmp_path: Path
) -> None:
    db = database
    table = await events(db, range(1, 4))
    out = db.new_table()
    await db.connection.execute(f"CREATE TABLE {out} (id bigint, amount bigint, _epoch bigint)")
    env = LocalEnvironment("idle", checkpoints=tmp_path / "store.db", checkpoint_interval=0.01)
    # An hour between polls: the rows there are come at once, then the source only waits.
    source = PostgresSource(db.url, table, "id", follow=True, poll_interval=3600, decode=parse)
    env.create_stream("events", source=source).sink(PostgresSink(db.url, out))
    run = asyncio.ensure_future(env.execute())

    async def ten_epochs_committed() -> bool:
        return (await db.marker(out) or (0, 0))[1] >= 10

    await asyncio.wait_for(until(ten_epochs_committed), 30)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert [row[:2] for row in await db.rows()] == [(1, 10), (2, 20), (3, 30)]
