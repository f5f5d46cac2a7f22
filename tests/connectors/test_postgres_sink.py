"""The PostgreSQL sink against a real server: an epoch's rows copied in one transaction with the
sink's marker, the rows of epochs the checkpoint lost deleted at recovery, so crashed runs and
their replays leave each row once; bad rows named, a wrong table or URL refused at the start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.connectors import Backoff, TransactionalSink
from sage_streams.connectors.postgres import PostgresSink
from sage_streams.errors import CheckpointError, ConnectorError, StreamError
from servers import Server
from tests.connectors.postgres import Database, database
from tests.connectors.sinks import CRASHES, Crash, epochs_of, run

__all__ = ["database"]  # the fixture, used by name

QUICK = Backoff(attempts=2, first=0.01)


async def create(db: Database, columns: str = "id bigint, name text", table: str | None = None) -> str:
    table = table or db.table
    await db.connection.execute(f"CREATE TABLE {table} ({columns}, _epoch bigint)")
    return table


async def test_an_epochs_rows_commit_with_the_marker_at_pre_commit(database: Database) -> None:
    db = database
    await create(db)
    sink = PostgresSink(db.url, db.table)
    assert sink.guarantee == "exactly_once"
    assert isinstance(sink, TransactionalSink)
    await sink.recover(None, None)
    assert await db.marker() == (0, 0)
    await sink.write([{"id": 1, "name": "a"}, {"name": "b", "id": 2}], 1)
    await sink.write([(3, "c"), {"id": 4}], 1)
    assert await db.rows() == []  # held until the barrier
    assert await sink.pre_commit(1) == {"epoch": 1}
    assert await db.rows() == [(1, "a", 1), (2, "b", 1), (3, "c", 1), (4, None, 1)]
    assert await db.marker() == (1, 0)
    await sink.commit(1)
    assert await db.marker() == (1, 1)
    assert await sink.pre_commit(2) == {"epoch": 2}  # an epoch with no rows moves the marker
    assert await db.marker() == (2, 1)
    await sink.close()


async def test_columns_and_encode_choose_what_a_row_holds(database: Database) -> None:
    db = database
    await create(db, "id bigint, name text, note text DEFAULT 'none'")
    sink = PostgresSink(db.url, db.table, columns=["name", "id"], encode=lambda n: (f"n{n}", n))
    await sink.recover(None, None)
    await sink.write([1, 2], 1)
    await sink.pre_commit(1)
    await sink.close()
    sink = PostgresSink(db.url, db.table, columns=["id"])
    await sink.recover(1, {"epoch": 1})
    await sink.write([{"id": 3}], 2)  # a dict of the one column
    with pytest.raises(ValueError, match=r"has a key 'name' that is no column of the table \(id\)"):
        await sink.write([{"id": 4, "name": "x"}], 2)
    await sink.write([{"id": 4}], 2)
    await sink.pre_commit(2)
    await sink.close()
    assert await db.rows() == [
        (1, "n1", "none", 1),
        (2, "n2", "none", 1),
        (3, None, "none", 2),
        (4, None, "none", 2),
    ]


async def test_recover_deletes_the_rows_of_later_epochs_or_every_row_with_an_epoch(
    database: Database,
) -> None:
    db = database
    await create(db)
    sink = PostgresSink(db.url, db.table)
    await sink.recover(None, None)
    for epoch in (1, 2, 3):
        await sink.write([(epoch, "x")], epoch)
        await sink.pre_commit(epoch)
    await sink.commit(1)
    await sink.close()
    await db.connection.execute(f"INSERT INTO {db.table} VALUES (0, 'by hand', NULL)")
    sink = PostgresSink(db.url, db.table)
    await sink.recover(1, {"epoch": 1})  # epochs 2 and 3 were written, never checkpointed
    assert await db.rows() == [(0, "by hand", None), (1, "x", 1)]
    assert await db.marker() == (1, 1)
    await sink.write([(2, "again")], 2)
    await sink.pre_commit(2)
    await sink.close()
    assert await db.rows() == [(0, "by hand", None), (1, "x", 1), (2, "again", 2)]
    sink = PostgresSink(db.url, db.table)
    await sink.recover(None, None)  # no epoch committed: a new job, or reset checkpoints
    await sink.close()
    assert await db.rows() == [(0, "by hand", None)]
    assert await db.marker() == (0, 0)


async def test_two_sinks_recovering_at_once_share_a_new_marker_table(database: Database) -> None:
    db = database
    first, second = await create(db), await create(db, table=db.new_table())
    sinks = [PostgresSink(db.url, table, markers=f"markers_{first}") for table in (first, second)]
    await asyncio.gather(*(sink.recover(None, None) for sink in sinks))
    for sink in sinks:
        await sink.close()
    found = await db.connection.fetch(f"SELECT sink, written FROM markers_{first} ORDER BY sink")
    assert sorted(tuple(row) for row in found) == sorted([(first, 0), (second, 0)])


async def test_a_sink_that_ended_before_the_last_epoch_keeps_its_rows(database: Database) -> None:
    db = database
    await create(db)
    sink = PostgresSink(db.url, db.table)
    await sink.recover(None, None)
    await sink.write([(1, "x")], 1)
    await sink.pre_commit(1)
    await sink.close()
    sink = PostgresSink(db.url, db.table)
    await sink.recover(4, {"epoch": 1})  # the job went on to epoch 4 after the sink's end
    await sink.close()
    assert await db.rows() == [(1, "x", 1)]


async def test_a_run_that_crashed_after_a_pre_commit_the_store_lost_is_replayed_once(
    database: Database,
) -> None:
    db = database
    await create(db, "id bigint")
    epochs = [[[(1,), (2,)]], [[(3,)], [(4,)]], [[(5,)]]]
    crashes = [Crash(1, False, 0), Crash(0, True, 1), Crash(1, True, 1)]
    starts = await run(lambda: PostgresSink(db.url, db.table), epochs, crashes)
    assert starts == [0, 0, 0, 1]
    assert await db.rows() == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3)]


def expected_rows(epochs: list[list[list[Any]]]) -> list[tuple[Any, ...]]:
    return [(*row, epoch) for epoch, batches in enumerate(epochs, 1) for batch in batches for row in batch]


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(epochs=epochs_of(st.integers(-(2**63), 2**63 - 1).map(lambda n: (n,))), crashes=CRASHES)
def test_crashes_at_any_point_leave_each_epochs_rows_once(
    postgres_server: Server, epochs: list[list[list[Any]]], crashes: list[Crash]
) -> None:
    async def check() -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(postgres_server.url)
        try:
            db = Database(postgres_server.url, connection, "")
            db.new_table()
            await create(db, "n bigint, id bigserial")
            await run(lambda: PostgresSink(db.url, db.table, columns=["n"]), epochs, crashes)
            return [(n, epoch) for n, _, epoch in await db.rows()]
        finally:
            await connection.close()

    assert asyncio.run(check()) == expected_rows(epochs)


async def test_an_item_that_is_no_row_is_named_at_its_write_and_none_of_its_batch_is_kept(
    database: Database,
) -> None:
    db = database
    await create(db)
    sink = PostgresSink(db.url, db.table)
    await sink.recover(None, None)
    with pytest.raises(
        ValueError, match=r"item 1 of its batch, \{'id': 2, 'nmae': 'b'\}, has a key 'nmae' that is no column"
    ):
        await sink.write([{"id": 1}, {"id": 2, "nmae": "b"}], 1)
    with pytest.raises(
        TypeError, match=r"writes dicts or sequences of 2 values \(id, name\); item 0 of its batch is \(1,\)"
    ):
        await sink.write([(1,)], 1)
    with pytest.raises(TypeError, match="item 0 of its batch is 'ab'"):
        await sink.write(["ab"], 1)
    await sink.write([(9, "kept")], 1)
    await sink.pre_commit(1)
    await sink.close()
    assert await db.rows() == [(9, "kept", 1)]


async def test_a_value_the_column_cannot_take_fails_the_epoch_naming_its_row(database: Database) -> None:
    db = database
    await create(db, "id bigint NOT NULL, name text")
    sink = PostgresSink(db.url, db.table)
    await sink.recover(None, None)
    await sink.write([(n, "ok") for n in range(100)] + [("seven", "bad")] + [(n, "ok") for n in range(5)], 1)
    with pytest.raises(
        TypeError, match=r"cannot write the row \{'id': 'seven', 'name': 'bad'\} of epoch 1: "
    ):
        await sink.pre_commit(1)
    await sink.close()
    sink = PostgresSink(db.url, db.table)
    await sink.recover(None, None)
    await sink.write([(1, "a"), (None, "b")], 1)
    with pytest.raises(
        ValueError, match=r"cannot write the row \{'id': None, 'name': 'b'\} of epoch 1: null value in column"
    ):
        await sink.pre_commit(1)
    await sink.close()
    assert await db.rows() == []
    assert await db.marker() == (0, 0)


async def test_a_missing_table_or_column_is_refused_at_recover(database: Database) -> None:
    db = database
    sink = PostgresSink(db.url, db.table)
    with pytest.raises(
        ConnectorError, match=rf"PostgresSink\(.*\): no table '{db.table}' in the database; create it"
    ):
        await sink.recover(None, None)
    await sink.close()
    await db.connection.execute(f"CREATE TABLE {db.table} (id bigint)")
    sink = PostgresSink(db.url, db.table)
    with pytest.raises(
        ConnectorError, match=rf'has no _epoch column.*ALTER TABLE "{db.table}" ADD COLUMN _epoch bigint'
    ):
        await sink.recover(None, None)
    await sink.close()
    await db.connection.execute(f"ALTER TABLE {db.table} ADD COLUMN _epoch bigint")
    sink = PostgresSink(db.url, db.table, columns=["id", "total"])
    with pytest.raises(ConnectorError, match="the table has no column 'total'"):
        await sink.recover(None, None)
    await sink.close()
    sink = PostgresSink(db.url, db.table)
    with pytest.raises(StreamError, match="recover must be called before the first write"):
        await sink.write([(1,)], 1)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (
            "postgresql://nobody@127.0.0.1:{port}/postgres",
            'InvalidAuthorizationSpecificationError: role "nobody" does not exist',
        ),
        (
            "postgresql://postgres@127.0.0.1:{port}/nodb",
            'InvalidCatalogNameError: database "nodb" does not exist',
        ),
        ("mysql://127.0.0.1:{port}/db", "not a PostgreSQL URL: invalid DSN"),
        (
            "postgresql://postgres:secret@127.0.0.1:1/postgres",
            r"connecting and reading the table.s columns failed 2 times in a row .* ConnectionRefusedError",
        ),
    ],
)
async def test_a_wrong_url_or_credentials_fail_at_recover(database: Database, url: str, error: str) -> None:
    port = db_port(database)
    sink = PostgresSink(url.format(port=port), "t", backoff=QUICK)
    with pytest.raises(ConnectorError, match=error) as failed:
        await sink.recover(None, None)
    assert "secret" not in str(failed.value)
    await sink.close()


def db_port(db: Database) -> int:
    return int(db.url.rsplit(":", 1)[1].split("/")[0])


async def test_a_marker_ahead_of_the_run_or_missing_is_refused(database: Database) -> None:
    db = database
    await create(db)
    sink = PostgresSink(db.url, db.table)
    await sink.recover(None, None)
    await db.connection.execute("UPDATE sage_streams_epochs SET written = 5 WHERE sink = $1", db.table)
    with pytest.raises(
        CheckpointError, match="says epoch 5 is written, and this run is at epoch 2: another run"
    ):
        await sink.pre_commit(2)
    await sink.close()
    sink = PostgresSink(db.url, db.table, name="elsewhere")
    with pytest.raises(
        CheckpointError,
        match="the checkpoint has epoch 3 written to the table, but the marker 'elsewhere' says nothing",
    ):
        await sink.recover(3, {"epoch": 3})
    await sink.close()
    with pytest.raises(ValueError, match=r"the record of epoch 3 must be \{'epoch': e\} with e <= 3, got 7"):
        await PostgresSink(db.url, db.table).recover(3, 7)


def test_the_package_imports_without_asyncpg() -> None:
    """``sage_streams.connectors.postgres`` is imported by its users only: asyncpg is an extra."""
    code = "import sys, sage_streams, sage_streams.connectors; assert 'asyncpg' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
