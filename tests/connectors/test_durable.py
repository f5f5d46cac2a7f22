"""Durable push streams: an emitted item is on disk when ``emit`` returns, and a restored run
reads on from its checkpoint's position in the log."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sage_streams import LocalEnvironment, StreamError, UnwritableValueError
from sage_streams.connectors import JsonLinesSink
from sage_streams.testing import leftover_tasks


def job(path: Path) -> tuple[LocalEnvironment, Any]:
    env = LocalEnvironment("durable", checkpoints=path / "store.db", checkpoint_interval=0.01)
    orders = env.create_stream("orders", durable=True)
    orders.map(lambda o: {**o, "seen": True}, name="mark").sink(JsonLinesSink(path / "out.jsonl"), name="out")
    return env, orders


def written(path: Path) -> list[int]:
    return [json.loads(line)["id"] for line in (path / "out.jsonl").read_text().splitlines()]


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
    with sqlite3.connect(tmp_path / "store.db.orders.log") as db:
        assert db.execute("SELECT count(*), max(seq) FROM items").fetchone() == (1, 100)
    env, orders = job(tmp_path)
    async with env.running():
        await orders.emit({"id": 100})
    assert sorted(written(tmp_path)) == list(range(101))
