"""The SQLite sink: dict items as rows tagged with their epoch, committed at pre_commit, the rows
of later epochs deleted at recovery, so that crashed runs and their replays leave each row once."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.connectors import SqliteSink, TransactionalSink
from sage_streams.errors import CheckpointError, StreamError
from tests.connectors.sinks import CRASHES, Crash, epochs_of, open_files, run, sink_threads


def rows(path: Path, table: str = "out") -> list[tuple[Any, ...]]:
    """The table's rows in the order they were inserted, read as another program would."""
    db = sqlite3.connect(path)
    try:
        return db.execute(f'SELECT * FROM "{table.replace(chr(34), chr(34) * 2)}" ORDER BY rowid').fetchall()
    finally:
        db.close()


def columns(path: Path, table: str = "out") -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[1] for row in db.execute(f'PRAGMA table_info("{table.replace(chr(34), chr(34) * 2)}")')]
    finally:
        db.close()


async def test_rows_are_created_with_their_epoch_and_committed_at_pre_commit(tmp_path: Path) -> None:
    path = tmp_path / "out.db"
    sink = SqliteSink(path, "out")
    assert sink.guarantee == "exactly_once"
    assert isinstance(sink, TransactionalSink)
    await sink.recover(None, None)
    await sink.write([{"k": "a", "n": 1}, {"n": 2, "k": "b"}], 1)
    assert columns(path) == []  # the table is not committed yet
    assert await sink.pre_commit(1) == {"epoch": 1}
    await sink.commit(1)
    await sink.write([{"k": "c", "x y": b"\x00"}, {}], 2)
    assert await sink.pre_commit(2) == {"epoch": 2}
    assert await sink.pre_commit(3) == {"epoch": 3}  # an epoch with no rows
    await sink.close()
    assert columns(path) == ["k", "n", "_epoch", "x y"]
    assert rows(path) == [
        ("a", 1, 1, None),
        ("b", 2, 1, None),
        ("c", None, 2, b"\x00"),
        (None, None, 2, None),
    ]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


async def test_recover_deletes_the_rows_of_later_epochs_or_all_of_them(tmp_path: Path) -> None:
    path = tmp_path / "out.db"
    sink = SqliteSink(path, "out")
    await sink.recover(None, None)
    for epoch in (1, 2, 3):
        await sink.write([{"e": epoch}], epoch)
        await sink.pre_commit(epoch)
    await sink.close()
    sink = SqliteSink(path, "out")
    await sink.recover(1, {"epoch": 1})
    await sink.write([{"e": 2, "new": True}], 2)  # the columns are known again after recover
    await sink.pre_commit(2)
    await sink.close()
    assert rows(path) == [(1, 1, None), (2, 2, 1)]
    sink = SqliteSink(path, "out")
    await sink.recover(None, None)
    await sink.close()
    assert rows(path) == []


async def test_a_table_not_written_by_the_sink_and_a_bad_record_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.db"
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE mine (a)")
        db.execute("INSERT INTO mine VALUES (1)")
    db.close()
    sink = SqliteSink(path, "mine")
    with pytest.raises(
        CheckpointError, match=r"the table exists without an _epoch column, so it was not written"
    ):
        await sink.recover(None, None)
    for bad in [{"epoch": 3}, {"epoch": -1}, {"epoch": "1"}, {"epoch": 1, "more": 2}, None]:
        with pytest.raises(
            ValueError, match=r"the record of epoch 2 must be \{'epoch': e\} with e <= 2, got"
        ):
            await sink.recover(2, bad)
    await sink.close()
    assert rows(path, "mine") == [(1,)]
    with pytest.raises(ValueError, match="table must be a non-empty string, got ''"):
        SqliteSink(path, "")


async def test_a_bad_item_is_named_and_none_of_its_batch_is_written(tmp_path: Path) -> None:
    path = tmp_path / "out.db"
    sink = SqliteSink(path, 'a "quoted" table')
    await sink.recover(None, None)
    await sink.write([{"a": 1}], 1)
    with pytest.raises(TypeError, match=r"SqliteSink\(.*\) writes dicts, item 1 of its batch is \[2\]$"):
        await sink.write([{"a": 2}, [2]], 1)
    with pytest.raises(TypeError, match=r"item 0 of its batch has a key 1 that is not a str$"):
        await sink.write([{1: 2}], 1)
    with pytest.raises(ValueError, match=r"item 0 of its batch has the key _epoch, the sink's own$"):
        await sink.write([{"_epoch": 2}], 1)
    with pytest.raises(
        TypeError, match=r"cannot write item 1 of its batch, \{'a': 3, 'b': \{\}\}: .*"
    ) as caught:
        await sink.write(
            [{"a": 3, "c": 3}, {"a": 3, "b": {}}], 1
        )  # refused by SQLite, after a row and a column
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    with pytest.raises(TypeError, match=r"cannot write item 2 of its batch, \{'a': \[\]\}: .*"):
        await sink.write([{"a": 5}, {"a": 6}, {"a": []}, {"a": 7}], 1)  # one statement for the four
    await sink.write([{"a": 4, "d": 4}], 1)
    await sink.pre_commit(1)
    await sink.close()
    assert columns(path, 'a "quoted" table') == ["a", "_epoch", "d"]
    assert rows(path, 'a "quoted" table') == [(1, 1, None), (4, 1, 4)]


async def test_a_write_before_recover_or_after_close_is_refused(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "out.db", "out")
    with pytest.raises(StreamError, match=r"recover must be called before the first write"):
        await sink.write([{}], 1)
    with pytest.raises(StreamError, match=r"recover must be called before pre_commit"):
        await sink.pre_commit(1)
    await sink.close()
    with pytest.raises(StreamError, match=r"^SqliteSink\('.*out.db', 'out'\) is closed$"):
        await sink.write([{}], 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
async def test_close_leaves_no_thread_and_no_open_file(tmp_path: Path) -> None:
    path = tmp_path / "out.db"
    sink = SqliteSink(path, "out")
    await sink.recover(None, None)
    await sink.write([{"a": 1}], 1)
    assert len(sink_threads()) == 1
    assert open_files(path) != []
    await sink.close()
    assert sink_threads() == []
    assert open_files(path) == []
    assert columns(path) == []  # closed before pre_commit: rolled back, as a crash would


async def test_a_run_that_crashed_after_a_pre_commit_the_store_lost_is_replayed_once(tmp_path: Path) -> None:
    path = tmp_path / "out.db"
    epochs = [[[{"v": 1}], [{"v": 2}]], [[{"v": 3}]], [[{"v": 4}]]]
    assert await run(lambda: SqliteSink(path, "out"), epochs, [Crash(2, False, 1)]) == [0, 1]
    assert rows(path) == [(1, 1), (2, 1), (3, 2), (4, 3)]


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    epochs=epochs_of(st.builds(dict, v=st.integers(-(2**63), 2**63 - 1), w=st.text(max_size=2))),
    crashes=CRASHES,
)
def test_crashes_at_any_point_leave_each_epochs_rows_once(
    epochs: list[list[list[Any]]], crashes: list[Crash]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "out.db")
        asyncio.run(run(lambda: SqliteSink(path, "out"), epochs, crashes))
        expected = [
            (row["v"], row["w"], epoch)
            for epoch, batches in enumerate(epochs, 1)
            for b in batches
            for row in b
        ]
        assert (rows(path) if path.exists() and columns(path) else []) == expected


async def test_a_sink_that_ended_before_the_crash_is_restored_with_its_last_record(tmp_path: Path) -> None:
    """A sink whose input ended keeps its last record in every later epoch; restored at a later
    epoch, it is given that record, and its rows stay once."""
    from sage_streams import LocalEnvironment, PipelineError

    async def run(crash: bool) -> None:
        env = LocalEnvironment(
            "two", checkpoints=tmp_path / "store.db", checkpoint_interval=0.01, batch_size=4
        )

        async def gate(n: int) -> int:
            await asyncio.sleep(0.001)
            if crash and n >= 100 and env.metrics().checkpoints["committed"] >= 3:
                raise RuntimeError("crash")
            return n

        env.from_collection(range(5), name="short").map(lambda n: {"n": n}).sink(
            SqliteSink(tmp_path / "a.db", "a")
        )
        env.from_collection(range(400), name="long").map(gate, name="gate").map(lambda n: {"n": n}).sink(
            SqliteSink(tmp_path / "b.db", "b")
        )
        await env.execute()

    with pytest.raises(PipelineError, match="gate"):
        await run(crash=True)
    await run(crash=False)
    assert sorted(row[0] for row in rows(tmp_path / "a.db", "a")) == list(range(5))
    assert sorted(row[0] for row in rows(tmp_path / "b.db", "b")) == list(range(400))
