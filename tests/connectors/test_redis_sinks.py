"""The Redis sinks against a real server: an epoch's output is staged, moved into place once it
commits, and a restored run moves what was committed and drops the rest, so that crashed runs
and their replays leave each entry (or hash field) once, and a reader never sees an uncommitted
one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import LocalEnvironment
from sage_streams.connectors import StoreSharing, TransactionalSink
from sage_streams.connectors.redis_streams import RedisHashSink, RedisStreamSink
from sage_streams.connectors.redis_streams._sinks import FLUSH_AT, MOVE_CHUNK
from sage_streams.errors import StreamError
from servers import Server
from tests.connectors.redis_client import client, fresh
from tests.connectors.sinks import CRASHES, Crash, epochs_of, run

__all__ = ["client"]  # the fixture, used by name

Sink = RedisStreamSink | RedisHashSink


def staged(sink: Sink) -> Sink:
    """``sink`` as a run with checkpoints has it: offered the store (it declines) before recover."""
    assert sink.share_store(object()) is False
    return sink


async def entries(client: redis.asyncio.Redis, key: str) -> list[dict[str, str]]:
    """The stream's entries as a reader sees them, fields decoded."""
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in await client.xrange(key)]


async def test_an_epoch_is_staged_at_pre_commit_and_appears_at_commit(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    key = fresh("out")
    sink = staged(RedisStreamSink(redis_server.url, key))
    assert isinstance(sink, TransactionalSink)
    assert isinstance(sink, StoreSharing)
    assert sink.guarantee == "exactly_once"
    await sink.recover(None, None)
    await sink.write([{"a": 1, "b": "x"}, {"a": 2.5, "c": [1, {"d": None}]}], 1)
    assert await sink.pre_commit(1) == {"epoch": 1}
    await sink.write([{b"raw": b"\x00"}], 2)
    assert await sink.pre_commit(2) == {"epoch": 2}
    assert await client.xlen(key) == 0  # nothing a reader could see yet
    assert [i for i, _ in await client.xrange(sink.staging)] == [b"1-0", b"1-1", b"2-0"]
    await sink.commit(1)
    assert await entries(client, key) == [{"a": "1", "b": "x"}, {"a": "2.5", "c": '[1, {"d": null}]'}]
    await sink.commit(2)
    await sink.close()
    assert (await client.xrange(key))[2][1] == {b"raw": b"\x00"}
    assert not await client.exists(sink.staging)


async def test_recover_moves_the_committed_epochs_and_drops_the_later_ones(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    key = fresh("out")
    sink = staged(RedisStreamSink(redis_server.url, key))
    await sink.recover(None, None)
    for epoch in (1, 2, 3):
        await sink.write([{"e": epoch}], epoch)
        await sink.pre_commit(epoch)
    await sink.write([{"e": 4}] * (FLUSH_AT + 1), 4)  # written out before its pre-commit
    await sink.close()  # the store committed epoch 2, the run died before its commit
    assert await client.xlen(sink.staging) == FLUSH_AT + 4
    again = staged(RedisStreamSink(redis_server.url, key))
    await again.recover(2, {"epoch": 2})
    assert await entries(client, key) == [{"e": "1"}, {"e": "2"}]
    assert not await client.exists(again.staging)
    await again.write([{"e": 3}], 3)  # the replay of epoch 3 stages it again, with its IDs
    await again.pre_commit(3)
    await again.commit(3)
    await again.close()
    assert await entries(client, key) == [{"e": "1"}, {"e": "2"}, {"e": "3"}]
    with pytest.raises(ValueError, match=r"the record of epoch 3 must be \{'epoch': 3\}, got None"):
        await staged(RedisStreamSink(redis_server.url, key)).recover(3, None)


async def test_an_epoch_larger_than_a_move_chunk_moves_whole(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    key = fresh("big")
    sink = staged(RedisStreamSink(redis_server.url, key, encode=lambda n: {"n": n}))
    await sink.recover(None, None)
    count = 2 * MOVE_CHUNK + 1
    await sink.write(list(range(count)), 1)
    await sink.pre_commit(1)
    await sink.commit(1)
    await sink.close()
    assert [int(f[b"n"]) for _, f in await client.xrange(key)] == list(range(count))


async def test_without_checkpoints_the_sink_writes_through(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    key = fresh("through")
    env = LocalEnvironment("through")
    env.create_stream("in", source=range(5)).map(lambda n: {"n": n}).sink(
        RedisStreamSink(redis_server.url, key)
    )
    await env.execute()
    assert await entries(client, key) == [{"n": str(n)} for n in range(5)]
    assert not await client.exists(f"{key}.sage-staging")
    sink = RedisHashSink(redis_server.url, fresh("through"))  # not offered a store: no checkpoints
    await sink.recover(None, None)
    await sink.write([("a", 1), ("b", 2)], 1)
    assert await client.hgetall(sink.key) == {b"a": b"1", b"b": b"2"}  # each batch as it comes
    await sink.close()


async def test_a_checkpointed_run_writes_each_item_once(
    redis_server: Server, client: redis.asyncio.Redis, tmp_path: Path
) -> None:
    key, table = fresh("run"), fresh("table")
    env = LocalEnvironment("run", checkpoints=tmp_path / "store.db", checkpoint_interval=0.005, batch_size=7)
    numbers = env.create_stream("in", source=range(1000))
    numbers.map(lambda n: {"n": n}).sink(RedisStreamSink(redis_server.url, key))
    numbers.map(lambda n: (n % 10, n)).sink(RedisHashSink(redis_server.url, table))
    await env.execute()
    assert await entries(client, key) == [{"n": str(n)} for n in range(1000)]
    assert await client.hgetall(table) == {str(k).encode(): str(990 + k).encode() for k in range(10)}
    assert not await client.exists(f"{key}.sage-staging", f"{table}.sage-staging")


async def test_an_item_that_cannot_be_an_entry_is_refused_with_its_batch(redis_server: Server) -> None:
    sink = staged(RedisStreamSink(redis_server.url, fresh("bad")))
    with pytest.raises(StreamError, match="recover must be called before the first write"):
        await sink.pre_commit(1) if await sink.write([{"a": 1}], 1) is None else None
    sink = staged(RedisStreamSink(redis_server.url, fresh("bad")))
    await sink.recover(None, None)
    for item, message in [
        ([1, 2], r"item 1 of its batch is \[1, 2\]"),
        ({}, r"a non-empty mapping; item 1 of its batch is \{\}"),
        ({3: "x"}, "item 1 of its batch has a field name 3 that is not a str"),
    ]:
        with pytest.raises(TypeError, match=message):
            await sink.write([{"ok": 1}, item], 1)
    assert sink._pending == []
    await sink.close()
    encoded = RedisStreamSink(redis_server.url, "k", encode=lambda item: item)
    with pytest.raises(TypeError, match="item 0 of its batch was encoded as 5"):
        encoded._fields(0, 5)


async def test_the_hash_sink_sets_each_items_field_when_its_epoch_commits(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    key = fresh("hash")
    sink = staged(RedisHashSink(redis_server.url, key, field=lambda r: r["user"], value=lambda r: r))
    await sink.recover(None, None)
    await sink.write([{"user": "ana", "total": 1}, {"user": 7, "total": 2}, {"user": "ana", "total": 3}], 1)
    await sink.pre_commit(1)
    assert await client.hgetall(key) == {}
    await sink.commit(1)
    await sink.close()
    assert await client.hgetall(key) == {
        b"ana": b'{"user": "ana", "total": 3}',
        b"7": b'{"user": 7, "total": 2}',
    }
    assert repr(RedisHashSink("redis://:pw@h:1/0", "k")) == "RedisHashSink('redis://:***@h:1/0', 'k')"


def test_a_sink_needs_a_key() -> None:
    with pytest.raises(ValueError, match="key must be a non-empty string, got ''"):
        RedisStreamSink("redis://x", "")


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(epochs=epochs_of(st.integers(0, 10**6)), crashes=CRASHES)
def test_crashes_at_any_point_leave_each_epochs_entries_once(
    redis_server: Server, epochs: list[list[list[Any]]], crashes: list[Crash]
) -> None:
    key, table = fresh("crash"), fresh("crash-hash")

    async def check() -> None:
        await run(
            lambda: staged(RedisStreamSink(redis_server.url, key, encode=lambda n: {"n": n})), epochs, crashes
        )
        await run(
            lambda: staged(RedisHashSink(redis_server.url, table, field=str, value=lambda n: n)),
            epochs,
            crashes,
        )
        expected = [n for batches in epochs for batch in batches for n in batch]
        reader = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            assert [int(f[b"n"]) for _, f in await reader.xrange(key)] == expected
            assert await reader.hgetall(table) == {str(n).encode(): str(n).encode() for n in expected}
            assert not await reader.exists(f"{key}.sage-staging", f"{table}.sage-staging")
        finally:
            await reader.aclose()

    asyncio.run(check())
