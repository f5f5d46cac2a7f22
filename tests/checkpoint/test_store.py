"""The SQLite checkpoint store: one transaction per epoch, exactly the last committed epoch back
after a close, refusals that say what to do, failed writes that keep the last epoch, and every
SQLite call on the store's own thread."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from sage_streams.checkpoint import Checkpoint, SqliteStore
from sage_streams.errors import CheckpointError

START_OVER = "or call env.reset_checkpoints() (store.reset()) to drop its checkpoints and start over"


def open_files(path: Path) -> list[str]:
    """The files of this process that are ``path`` or its WAL and shared-memory files."""
    links = (os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if fd.is_symlink())
    return [link for link in links if link.startswith(str(path))]


def execute(path: Path, statement: str) -> None:
    """Run ``statement`` on the file with a connection of its own, as another program would."""
    db = sqlite3.connect(path)
    with db:
        db.execute(statement)
    db.close()


def files_beside(path: Path) -> list[str]:
    """The names of the files in ``path``'s folder."""
    return sorted(p.name for p in path.parent.iterdir())


def store_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("sage-checkpoint")]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "job.checkpoints"


async def opened(path: Path, job: str = "orders", codec: str = "sage/1") -> SqliteStore:
    store = SqliteStore(path)
    assert await store.open(job, codec) is None
    return store


async def test_a_new_store_holds_no_epoch(path: Path) -> None:
    store = SqliteStore(path)
    assert store.committed_epoch is None
    assert await store.open("orders", "sage/1") is None
    assert store.committed_epoch is None
    await store.close()
    assert files_beside(path) == ["job.checkpoints"]


async def test_epochs_commit_changed_and_deleted_entries_and_read_back_exactly(path: Path) -> None:
    store = await opened(path)
    await store.commit(
        1, {"sum": {b"a": b"1", b"b": b"2"}, "join": {b"x": b"[]"}}, {"src": b"10"}, {"out": b"r1"}
    )
    await store.commit(2, {"sum": {b"a": b"5", b"b": None}}, {"src": b"20"}, {})
    await store.commit(5, {"sum": {b"c": b"7"}, "join": {b"x": None}}, {"other": b"3"}, {"out": b"r5"})
    assert store.committed_epoch == 5
    await store.close()

    again = SqliteStore(path)
    assert await again.open("orders", "sage/1") == Checkpoint(
        epoch=5,
        states={"sum": {b"a": b"5", b"c": b"7"}},
        positions={"src": b"20", "other": b"3"},
        sinks={"out": b"r5"},
    )
    assert again.committed_epoch == 5
    await again.commit(6, {}, {}, {})
    await again.close()


async def test_epochs_must_increase(path: Path) -> None:
    store = await opened(path)
    await store.commit(3, {"sum": {b"a": b"1"}}, {}, {})
    for epoch in (3, 2):
        with pytest.raises(CheckpointError) as caught:
            await store.commit(epoch, {"sum": {b"a": b"2"}}, {}, {})
        assert str(caught.value) == (
            f"cannot commit epoch {epoch}: epochs must increase, and epoch 3 is committed in {str(path)!r}"
        )
    with pytest.raises(TypeError, match=r"^an epoch is an int, got 4.0$"):
        await store.commit(4.0, {}, {}, {})  # type: ignore[arg-type]
    await store.close()
    again = SqliteStore(path)
    assert await again.open("orders", "sage/1") == Checkpoint(3, {"sum": {b"a": b"1"}}, {}, {})
    await again.close()


async def test_commit_needs_an_open_store_and_nothing_works_after_close(path: Path) -> None:
    store = SqliteStore(path)
    with pytest.raises(
        CheckpointError, match=rf"^cannot commit epoch 1: open SqliteStore\({str(path)!r}\) first$"
    ):
        await store.commit(1, {}, {}, {})
    await store.open("orders", "sage/1")
    with pytest.raises(CheckpointError, match=r"is open already$"):
        await store.open("orders", "sage/1")
    await store.close()
    await store.close()
    with pytest.raises(CheckpointError, match=r"\) is closed$"):
        await store.reset()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
async def test_close_leaves_no_thread_and_no_open_file(path: Path) -> None:
    store = await opened(path)
    await store.commit(1, {"sum": {b"a": b"1"}}, {}, {})
    assert len(store_threads()) == 1
    assert open_files(path) != []
    await store.close()
    assert store_threads() == []
    assert open_files(path) == []
    assert files_beside(path) == ["job.checkpoints"]  # no -wal, no -shm
    os.remove(path)
    store = await opened(path)  # a new store in its place
    await store.close()
    assert store_threads() == []


def refusal_cases(path: Path) -> list[tuple[str, str, str]]:
    return [
        (
            "payments",
            "sage/1",
            f"the checkpoint store {str(path)!r} belongs to job 'orders', not 'payments': "
            f"give this job another path, {START_OVER}",
        ),
        (
            "orders",
            "pickle/1",
            f"the checkpoint store {str(path)!r} was written with codec 'sage/1', not 'pickle/1': "
            f"run job 'orders' with that codec, {START_OVER}",
        ),
    ]


@pytest.mark.parametrize("case", [0, 1], ids=["other job", "other codec"])
async def test_a_store_of_another_job_or_codec_is_refused_until_reset(path: Path, case: int) -> None:
    store = await opened(path)
    await store.commit(1, {"sum": {b"a": b"1"}}, {}, {})
    await store.close()
    job, codec, message = refusal_cases(path)[case]
    other = SqliteStore(path)
    with pytest.raises(CheckpointError) as caught:
        await other.open(job, codec)
    assert str(caught.value) == message
    await other.reset()
    assert await other.open(job, codec) is None
    await other.commit(1, {"new": {b"k": b"v"}}, {}, {})
    await other.close()
    last = SqliteStore(path)
    assert await last.open(job, codec) == Checkpoint(1, {"new": {b"k": b"v"}}, {}, {})
    await last.close()


async def test_a_store_of_a_newer_format_is_refused(path: Path) -> None:
    await (await opened(path)).close()
    execute(path, "UPDATE meta SET format = 2")
    store = SqliteStore(path)
    with pytest.raises(CheckpointError) as caught:
        await store.open("orders", "sage/1")
    assert str(caught.value) == (
        f"the checkpoint store {str(path)!r} has format version 2, and this version of sage_streams "
        "reads version 1: run it with the sage_streams that wrote it, give this job another path, "
        f"{START_OVER}"
    )
    await store.reset()
    assert await store.open("orders", "sage/1") is None
    await store.close()


async def test_a_file_that_is_not_a_store_is_neither_used_nor_reset(path: Path) -> None:
    execute(path, "CREATE TABLE users (name TEXT)")
    store = SqliteStore(path)
    with pytest.raises(CheckpointError) as caught:
        await store.open("orders", "sage/1")
    assert str(caught.value) == (
        f"{str(path)!r} is not a checkpoint store (it holds users): "
        "give the job's checkpoints a path of their own"
    )
    with pytest.raises(
        CheckpointError, match=r"will not reset .*: it is not a checkpoint store \(it holds users\)$"
    ):
        await store.reset()
    await store.close()
    path.write_bytes(b"not a database at all, just text")  # noqa: ASYNC240
    text = SqliteStore(path)
    with pytest.raises(
        CheckpointError, match=r"^cannot open the checkpoint store .*: file is not a database$"
    ) as bad:
        await text.open("orders", "sage/1")
    assert isinstance(bad.value.__cause__, sqlite3.DatabaseError)
    await text.close()


async def test_reset_of_an_open_store_starts_the_job_over(path: Path) -> None:
    store = await opened(path)
    await store.commit(4, {"sum": {b"a": b"1"}}, {"src": b"9"}, {"out": b"r"})
    await store.reset()
    assert store.committed_epoch is None
    await store.commit(1, {"sum": {b"b": b"2"}}, {}, {})
    await store.close()
    again = SqliteStore(path)
    assert await again.open("orders", "sage/1") == Checkpoint(1, {"sum": {b"b": b"2"}}, {}, {})
    await again.close()


@pytest.mark.parametrize(
    ("pragma", "cause"),
    [
        ("max_page_count = {pages}", "database or disk is full"),
        ("query_only = ON", "attempt to write a readonly database"),
    ],
    ids=["disk full", "read-only"],
)
async def test_a_failed_write_names_the_epoch_and_keeps_the_last_one(
    path: Path, pragma: str, cause: str
) -> None:
    store = await opened(path)
    await store.commit(1, {"sum": {b"a": b"1"}}, {"src": b"1"}, {})

    def limit() -> None:  # on the store's thread, where its connection lives
        assert store._db is not None
        (pages,) = store._db.execute("PRAGMA page_count").fetchone()
        store._db.execute(f"PRAGMA {pragma.format(pages=pages)}")

    await store._call(limit)
    big = {"sum": {str(i).encode(): bytes(1000) for i in range(100)}}
    with pytest.raises(CheckpointError) as caught:
        await store.commit(2, big, {"src": b"2"}, {})
    assert str(caught.value) == (
        f"cannot commit epoch 2 to the checkpoint store {str(path)!r}: {cause}; the store keeps epoch 1"
    )
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert store.committed_epoch == 1
    await store.close()
    again = SqliteStore(path)
    assert await again.open("orders", "sage/1") == Checkpoint(1, {"sum": {b"a": b"1"}}, {"src": b"1"}, {})
    await again.commit(2, big, {"src": b"2"}, {})  # the same epoch commits once there is room
    await again.close()


async def test_every_sqlite_call_runs_on_the_stores_thread(path: Path) -> None:
    store = SqliteStore(path)
    await store.open("orders", "sage/1")
    calls: list[tuple[int, str]] = []

    def trace() -> None:
        assert store._db is not None
        store._db.set_trace_callback(lambda statement: calls.append((threading.get_ident(), statement)))

    await store._call(trace)
    await store.commit(1, {"sum": {b"a": b"1", b"b": None}}, {"src": b"1"}, {"out": b"r"})
    await store.reset()
    (worker,) = store_threads()
    await store.close()
    assert [statement.split()[0] for _, statement in calls][:3] == ["BEGIN", "INSERT", "DELETE"]
    assert {thread for thread, _ in calls} == {worker.ident}
    assert worker.ident != threading.get_ident()


async def test_a_cancelled_commit_commits_all_or_nothing_and_says_which(path: Path) -> None:
    store = await opened(path)
    await store.commit(1, {"sum": {b"a": b"1"}}, {}, {})
    task = asyncio.create_task(store.commit(2, {"sum": {b"a": b"2", b"b": b"3"}}, {}, {}))
    await asyncio.sleep(0)  # the commit is handed to the store's thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()  # waits for the store's thread to finish whatever it was doing
    assert store_threads() == []
    expected = {
        1: Checkpoint(1, {"sum": {b"a": b"1"}}, {}, {}),
        2: Checkpoint(2, {"sum": {b"a": b"2", b"b": b"3"}}, {}, {}),
    }
    assert store.committed_epoch in expected
    again = SqliteStore(path)
    assert await again.open("orders", "sage/1") == expected[store.committed_epoch]
    await again.close()
