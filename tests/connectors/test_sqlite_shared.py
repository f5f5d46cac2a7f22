"""A SQLite sink in the checkpoint store's own file: its rows commit in the store's transaction
of their epoch, so output and checkpoint are one commit, and a crash leaves no row of an epoch
that did not commit."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from sage_streams import LocalEnvironment
from sage_streams.checkpoint import SqliteStore
from sage_streams.connectors import SqliteSink
from tests.connectors.sinks import open_files, sink_threads


def rows(path: Path, table: str = "out") -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(f"SELECT id, value, _epoch FROM {table} ORDER BY id").fetchall()


def named(folder: Path, prefix: str) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith(prefix))


async def shared(path: Path) -> tuple[SqliteStore, SqliteSink]:
    store = SqliteStore(path)
    await store.open("job", "sage/1")
    sink = SqliteSink(path, "out")
    assert sink.share_store(store)
    await sink.recover(None, None)
    return store, sink


async def test_rows_commit_with_their_epoch_and_not_before(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    store, sink = await shared(path)
    await sink.write([{"id": 1, "value": "a"}, {"id": 2, "value": "b"}], 1)
    assert await sink.pre_commit(1) == {"epoch": 1}
    assert sink_threads() == []  # no connection of its own: the store's writes
    await store.commit(1, {}, {}, {"out": b"1"})
    await sink.write([{"id": 3, "value": "c"}], 2)
    await sink.pre_commit(2)
    await sink.write([{"id": 4, "value": "d"}], 3)  # not pre-committed yet
    assert rows(path) == [(1, "a", 1), (2, "b", 1)]  # epoch 2 is sealed, not committed
    await store.commit(2, {}, {}, {"out": b"2"})
    assert rows(path) == [(1, "a", 1), (2, "b", 1), (3, "c", 2)]
    await store.close()  # a crash now: epoch 3's row was never written
    await sink.close()
    assert rows(path) == [(1, "a", 1), (2, "b", 1), (3, "c", 2)]
    assert (sink_threads(), open_files(path)) == ([], [])


async def test_a_commit_that_fails_writes_none_of_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    store, sink = await shared(path)
    await sink.write([{"id": 1, "value": "a"}], 1)
    await sink.pre_commit(1)
    await store.commit(1, {}, {}, {})
    await sink.write([{"id": 2, "value": "b"}], 2)
    await sink.pre_commit(2)
    with pytest.raises(Exception, match="epochs must increase"):
        await store.commit(1, {}, {}, {})  # refused: its rows stay sealed for the next commit
    assert rows(path) == [(1, "a", 1)]
    await store.commit(2, {}, {}, {})
    assert rows(path) == [(1, "a", 1), (2, "b", 2)]
    await store.close()
    await sink.close()


async def test_a_value_the_store_could_not_bind_is_an_error_of_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    store, sink = await shared(path)
    with pytest.raises(TypeError, match=r"cannot write item 1 of its batch.*the value of 'value' is \[1\]"):
        await sink.write([{"id": 1, "value": "a"}, {"id": 2, "value": [1]}], 1)
    with pytest.raises(TypeError, match=r"item 0 of its batch.*the value of 'id' is 36893488147419103232"):
        await sink.write([{"id": 2**65, "value": "a"}], 1)
    await sink.write([{"id": 3, "value": True}], 1)
    await sink.pre_commit(1)
    await store.commit(1, {}, {}, {})
    assert rows(path) == [(3, 1, 1)]  # nothing of the refused batches
    await store.close()
    await sink.close()


async def test_another_file_or_store_is_not_shared(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "job.db")
    await store.open("job", "sage/1")
    sink = SqliteSink(tmp_path / "out.db", "out")
    assert not sink.share_store(store)
    assert not SqliteSink(tmp_path / "job.db", "out").share_store(object())
    await sink.recover(None, None)
    await sink.write([{"id": 1, "value": "a"}], 1)
    await sink.pre_commit(1)  # its own file: committed here
    assert rows(tmp_path / "out.db") == [(1, "a", 1)]
    await sink.close()
    await store.close()


def test_a_run_into_the_stores_file_writes_every_row_once_with_a_committed_epoch(tmp_path: Path) -> None:
    path = tmp_path / "job.checkpoints"

    def run(items: int) -> LocalEnvironment:
        env = LocalEnvironment("job", checkpoints=path, checkpoint_interval=0.001, batch_size=16)
        events = env.from_collection([{"id": i, "value": str(i)} for i in range(items)], name="events")
        events.map(lambda e: {**e, "value": e["value"] * 2}, name="double").sink(
            SqliteSink(path, "out"), name="out"
        )
        env.run()
        return env

    env = run(2000)
    with closing(sqlite3.connect(path)) as db:
        (committed,) = db.execute("SELECT max(epoch) FROM epochs").fetchone()
    assert rows(path) == [(i, str(i) * 2, rows(path)[i][2]) for i in range(2000)]
    assert max(epoch for _, _, epoch in rows(path)) <= committed == env.metrics().checkpoints["epoch"]
    assert sink_threads() == []
    run(2000)  # a finished run restores its end: nothing is written again
    assert len(rows(path)) == 2000


async def test_a_link_to_the_stores_file_is_shared_and_opened_by_the_stores_path(tmp_path: Path) -> None:
    path, link = tmp_path / "job.db", tmp_path / "out.db"
    link.symlink_to(path)
    store = SqliteStore(path)
    await store.open("job", "sage/1")
    sink = SqliteSink(link, "out")
    assert sink.share_store(store)
    await sink.recover(None, None)
    await sink.write([{"id": 1, "value": "a"}], 1)
    await sink.pre_commit(1)
    await store.commit(1, {}, {}, {})
    await store.close()
    await sink.close()
    assert rows(path) == [(1, "a", 1)]
    assert named(tmp_path, "out.db") == ["out.db"]  # no WAL of its own
