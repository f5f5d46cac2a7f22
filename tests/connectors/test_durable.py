"""Durable push streams: an emitted item is on disk when ``emit`` returns, and a restored run
reads on from its checkpoint's position in the log."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from sage_streams import CheckpointError, LocalEnvironment, PipelineError, StreamError, UnwritableValueError
from sage_streams.checkpoint import SageCodec
from sage_streams.connectors import JsonLinesSink, ingest
from sage_streams.connectors.ingest import IngestLog
from sage_streams.testing import leftover_tasks
from tests.connectors.sinks import open_files


def job(path: Path) -> tuple[LocalEnvironment, Any]:
    env = LocalEnvironment("durable", checkpoints=path / "store.db", checkpoint_interval=0.01)
    orders = env.create_stream("orders", durable=True)
    orders.map(lambda o: {**o, "seen": True}, name="mark").sink(JsonLinesSink(path / "out.jsonl"), name="out")
    return env, orders


def written(path: Path) -> list[int]:
    return [json.loads(line)["id"] for line in (path / "out.jsonl").read_text().splitlines()]


def log_threads() -> list[threading.Thread]:
    """The durable logs' threads alive now."""
    return [thread for thread in threading.enumerate() if thread.name.startswith("sage-log")]


def logged(path: Path) -> list[tuple[int, Any]]:
    """``(sequence number, item)`` of each item in the log file, in order."""
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT seq, item FROM items ORDER BY seq").fetchall()
    return [(seq, SageCodec().loads(data)) for seq, data in rows]


async def test_concurrent_emits_are_durable_and_a_crash_loses_none_and_repeats_none(tmp_path: Path) -> None:
    env, orders = job(tmp_path)
    run = asyncio.ensure_future(env.execute())
    await asyncio.gather(*(orders.emit({"id": i}) for i in range(500)))  # all on disk now
    for _ in range(1000):  # the store commits on its own thread: poll it
        if env.metrics().checkpoints.get("committed", 0) >= 1:
            break
        await asyncio.sleep(0.01)
    run.cancel()  # the crash: what the sink wrote after the last epoch is dropped on restore
    with pytest.raises(asyncio.CancelledError):
        await run
    env, orders = job(tmp_path)
    async with env.running():
        await orders.emit({"id": 500})
        await orders.close()
    assert sorted(written(tmp_path)) == list(range(501))
    assert not leftover_tasks()
    assert not log_threads()


async def test_leaving_running_drains_the_log_and_the_next_run_reads_on(tmp_path: Path) -> None:
    env, orders = job(tmp_path)
    async with env.running():
        for i in range(3):
            await orders.emit({"id": i})
    assert written(tmp_path) == [0, 1, 2]
    env, orders = job(tmp_path)
    async with env.running():
        await orders.emit({"id": 3})
    assert written(tmp_path) == [0, 1, 2, 3]
    assert not orders.closed
    assert not log_threads()


async def test_a_closed_durable_stream_stays_closed(tmp_path: Path) -> None:
    env, orders = job(tmp_path)
    async with env.running():
        await orders.emit({"id": 0})
        await orders.close()
        with pytest.raises(StreamError, match="closed"):
            await orders.emit({"id": 1})
    env, orders = job(tmp_path)
    await env.execute()  # the log's end mark ends the stream at once
    assert written(tmp_path) == [0]


async def test_an_item_the_codec_cannot_write_is_refused_to_its_emitter(tmp_path: Path) -> None:
    _, orders = job(tmp_path)
    with pytest.raises(UnwritableValueError):
        await orders.emit({"id": object()})


def test_a_durable_stream_needs_a_checkpoint_path(tmp_path: Path) -> None:
    with pytest.raises(StreamError, match="checkpoints=<a path>"):
        LocalEnvironment("job").create_stream("orders", durable=True)
    with pytest.raises(TypeError, match="takes no source"):
        LocalEnvironment("job", checkpoints=tmp_path / "s.db").create_stream("o", [1], durable=True)  # type: ignore[call-overload]


async def test_the_log_keeps_only_what_no_checkpoint_has_committed(tmp_path: Path) -> None:
    env, orders = job(tmp_path)
    async with env.running():
        await asyncio.gather(*(orders.emit({"id": i}) for i in range(100)))
    # Leaving the block drained the stream; the last epoch committed the log's end position,
    # and only the item at it is left (it keeps the next sequence number after it).
    with closing(sqlite3.connect(tmp_path / "store.db.orders.log")) as db:
        assert db.execute("SELECT count(*), max(seq) FROM items").fetchone() == (1, 100)
    env, orders = job(tmp_path)
    async with env.running():
        await orders.emit({"id": 100})
    assert sorted(written(tmp_path)) == list(range(101))


async def test_concurrent_emitters_share_commits_and_each_item_is_logged_once(tmp_path: Path) -> None:
    log = IngestLog(tmp_path / "orders.log", SageCodec())

    async def emitter(number: int) -> None:
        for i in range(20):
            await log.append([number, i])

    await asyncio.gather(*(emitter(n) for n in range(100)))
    # The emitters a commit wakes all emit again before the next commit starts: one per round.
    assert log.commits == 20
    await log.end()
    rows = logged(tmp_path / "orders.log")
    assert [seq for seq, _ in rows] == list(range(1, 2001))
    assert sorted(item for _, item in rows) == sorted([n, i] for n in range(100) for i in range(20))
    for number in range(100):
        assert [i for _, (n, i) in rows if n == number] == list(range(20))


async def test_a_run_reads_and_writes_the_log_on_one_thread_gone_when_it_ends(tmp_path: Path) -> None:
    env, orders = job(tmp_path)
    async with env.running():
        await asyncio.gather(*(orders.emit({"id": i}) for i in range(50)))
        assert len(log_threads()) == 1
        await asyncio.gather(*(orders.emit({"id": i}) for i in range(50, 100)))
        assert len(log_threads()) == 1
    assert not log_threads()
    assert sorted(written(tmp_path)) == list(range(100))


async def test_emits_outside_a_run_leave_no_thread_once_the_log_is_closed(tmp_path: Path) -> None:
    log = IngestLog(tmp_path / "orders.log", SageCodec())
    await asyncio.gather(*(log.append(i) for i in range(10)))
    await asyncio.sleep(0)  # the commits rest: the thread is told to end
    await log.append(10)  # on a thread of its own, the one before ending
    await log.end()  # joins both
    assert not log_threads()
    assert [item for _, item in logged(tmp_path / "orders.log")] == list(range(11))


async def test_a_failing_commit_fails_every_emit_waiting_for_it_and_the_next_works(tmp_path: Path) -> None:
    log = IngestLog(tmp_path / "orders.log", SageCodec())
    await log.append("first")  # makes the file and its tables
    with closing(sqlite3.connect(tmp_path / "orders.log")) as db, db:  # a disk that refuses, for a while
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON items BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    results = await asyncio.gather(*(log.append(i) for i in range(10)), return_exceptions=True)
    for result in results:
        assert isinstance(result, CheckpointError)
        assert str(result).startswith(f"cannot append to the durable stream log {log.path!r}: disk full")
        assert isinstance(result.__cause__, sqlite3.IntegrityError)
    with closing(sqlite3.connect(tmp_path / "orders.log")) as db, db:
        db.execute("DROP TRIGGER refuse")
    await log.append("after")  # the failed commit was rolled back: the connection goes on
    await log.end()
    assert logged(tmp_path / "orders.log") == [(1, "first"), (2, "after")]
    assert log.commits == 3
    assert not log_threads()


async def test_a_reader_takes_what_is_committed_from_memory_and_what_it_lags_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []  # the sequence number after which each read of the file starts
    read = ingest._read

    def counted(db: sqlite3.Connection, after: int, size: int) -> tuple[list[tuple[int, bytes]], bool]:
        reads.append(after)
        return read(db, after, size)

    monkeypatch.setattr(ingest, "_read", counted)
    log = IngestLog(tmp_path / "orders.log", SageCodec())
    await log.append(0)  # before the reader: in the file only
    reader = log.batches(None, 1000)
    assert await anext(reader) == ([0], 1)
    for start in range(1, 101, 10):  # read as they come: from memory
        await asyncio.gather(*(log.append(i) for i in range(start, start + 10)))
        assert await anext(reader) == (list(range(start, start + 10)), start + 10)
    assert reads == [0]  # the first item (and the file's end) only
    for start in range(101, 15101, 1000):  # a lagging reader: more than memory keeps
        await asyncio.gather(*(log.append(i) for i in range(start, start + 1000)))
    await log.end()
    items = [item async for batch, _ in reader for item in batch]
    assert items == list(range(101, 15101))
    # Memory let go of the first 11 commits (11,000 items): the reader read them from the
    # file, 1,000 at a time, then took the last 4 from memory.
    assert reads == [0, *range(101, 11101, 1000)]
    assert not log_threads()


async def test_a_failing_run_leaves_no_thread_and_no_open_log_file(tmp_path: Path) -> None:
    env = LocalEnvironment("durable", checkpoints=tmp_path / "store.db", checkpoint_interval=0.01)
    orders = env.create_stream("orders", durable=True)

    def check(order: dict[str, int]) -> dict[str, int]:
        if order["id"] == 7:
            raise ValueError("a bad order")
        return order

    orders.map(check, name="check").sink(JsonLinesSink(tmp_path / "out.jsonl"), name="out")
    with pytest.raises(PipelineError) as failed:
        async with env.running():
            await asyncio.gather(*(orders.emit({"id": i}) for i in range(10)))
            await orders.close()
    assert isinstance(failed.value.__cause__, ValueError)
    assert not log_threads()
    assert not open_files(tmp_path / "store.db.orders.log")
    assert not leftover_tasks()
