"""The Redis Streams source against a real server: each key a split read from the checkpoint's
entry IDs, bounded or following, and in a consumer group, pending entries read again and
acknowledged only once committed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import LocalEnvironment
from sage_streams.connectors import AcknowledgingSource, DecodingSource, ReplayableSource
from sage_streams.connectors.redis_streams import RedisStreamSink, RedisStreamSource, decode_fields
from servers import Server
from tests.connectors.redis_client import client, fresh, produce

__all__ = ["client"]  # the fixture, used by name


async def read(source: RedisStreamSource, position: Any = None, size: int = 2) -> list[tuple[list[Any], Any]]:
    return [batch async for batch in source.batches(position, size)]


def numbers(batches: list[tuple[list[Any], Any]]) -> list[int]:
    return [int(fields[b"n"]) for batch, _ in batches for _, fields in batch]


async def test_a_stream_is_read_in_batches_with_the_last_entry_id_after_each(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    key = fresh("plain")
    ids = [i.decode() for i in await produce(client, key, 5)]
    source = RedisStreamSource(redis_server.url, key)
    assert isinstance(source, ReplayableSource)
    assert isinstance(source, DecodingSource)
    assert isinstance(source, AcknowledgingSource)
    assert source.guarantee == "exactly_once"
    batches = await read(source)
    assert [position for _, position in batches] == [{key: ids[1]}, {key: ids[3]}, {key: ids[4]}]
    assert numbers(batches) == [0, 1, 2, 3, 4]
    assert [source.decode(entry) for entry in batches[0][0]] == [{"n": "0"}, {"n": "1"}]
    assert numbers(await read(source, {key: ids[2]})) == [3, 4]
    assert await read(source, {key: ids[4]}) == []


async def test_a_bounded_read_ends_at_the_entries_present_when_the_run_began(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    key = fresh("bounded")
    await produce(client, key, 3)
    seen = []
    async for batch, _ in RedisStreamSource(redis_server.url, key).batches(None, 1):
        seen += numbers([(batch, None)])
        await produce(client, key, 1, start=100)  # after the run began: not read
    assert seen == [0, 1, 2]
    await client.xtrim(key, maxlen=0)
    assert await read(RedisStreamSource(redis_server.url, key)) == []  # an empty stream ends at once


async def test_several_keys_are_splits_and_the_position_holds_each(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    a, b = fresh("a"), fresh("b")
    ids_a = [i.decode() for i in await produce(client, a, 3)]
    ids_b = [i.decode() for i in await produce(client, b, 2, start=10)]
    source = RedisStreamSource(redis_server.url, [a, b])
    batches = await read(source)
    assert sorted(numbers(batches)) == [0, 1, 2, 10, 11]
    assert batches[-1][1] == {a: ids_a[2], b: ids_b[1]}
    resumed = await read(source, {a: ids_a[0], b: None})
    assert sorted(numbers(resumed)) == [1, 2, 10, 11]


async def test_following_waits_for_new_entries_and_is_live(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    for group in (None, "g"):
        key = fresh("follow")
        await produce(client, key, 2)
        source = RedisStreamSource(redis_server.url, key, group=group, follow=True, block=0.01)
        assert source.live  # barriers pass while it waits
        assert not RedisStreamSource(redis_server.url, key, group=group).live
        batches = source.batches(None, 10)
        first, _ = await anext(batches)
        assert numbers([(first, None)]) == [0, 1]
        pending = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0.05)
        assert not pending.done()  # several waits in vain: no empty batches
        await produce(client, key, 1, start=2)
        batch = await asyncio.wait_for(pending, 30)
        assert numbers([batch]) == [2]
        assert batch[1] == {key: batch[0][-1][0].decode()}
        await batches.aclose()


async def test_a_group_reads_again_its_pending_entries_after_the_checkpoint(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    key = fresh("group")
    ids = [i.decode() for i in await produce(client, key, 6)]
    source = RedisStreamSource(redis_server.url, key, group="g", consumer="c1")
    batches = source.batches(None, 2)
    assert [await anext(batches) for _ in range(2)] == [
        (await client.xrange(key, ids[0], ids[1]), {key: ids[1]}),
        (await client.xrange(key, ids[2], ids[3]), {key: ids[3]}),
    ]
    await batches.aclose()  # a crash: nothing acknowledged, four entries pending
    assert (await client.xpending(key, "g"))["pending"] == 4
    # Restored from a checkpoint at ids[1]: those are committed (acknowledged now), the next
    # two are read again from the pending entries, then the two the group had not given.
    again = RedisStreamSource(redis_server.url, key, group="g", consumer="c1")
    batches_again = await read(again, {key: ids[1]})
    assert numbers(batches_again) == [2, 3, 4, 5]
    assert (await client.xpending(key, "g"))["pending"] == 4
    assert [position for _, position in batches_again] == [{key: ids[3]}, {key: ids[5]}]
    await again.acknowledge({key: ids[3]})
    pending = await client.xpending_range(key, "g", "-", "+", 10)
    assert [entry["message_id"].decode() for entry in pending] == [ids[4], ids[5]]
    await again.acknowledge({key: ids[5]})
    assert (await client.xpending(key, "g"))["pending"] == 0
    assert await read(RedisStreamSource(redis_server.url, key, group="g", consumer="c1")) == []


async def test_a_group_is_created_at_the_first_entry_and_another_consumer_has_its_own(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    key = fresh("consumers")
    await produce(client, key, 3)
    first = await read(RedisStreamSource(redis_server.url, key, group="g", consumer="one"), size=2)
    assert numbers(first) == [0, 1, 2]
    assert await read(RedisStreamSource(redis_server.url, key, group="g", consumer="two")) == []
    await produce(client, key, 1, start=3)
    assert numbers(await read(RedisStreamSource(redis_server.url, key, group="g", consumer="two"))) == [3]
    groups = await client.xinfo_groups(key)
    assert [(g["name"], g["consumers"], g["pending"]) for g in groups] == [(b"g", 2, 4)]


async def test_in_a_run_the_group_acknowledges_what_each_epoch_committed(
    redis_server: Server, client: redis.asyncio.Redis, tmp_path: Any
) -> None:
    key = fresh("acked")
    await produce(client, key, 50)
    env = LocalEnvironment("acks", checkpoints=tmp_path / "store.db", checkpoint_interval=0.01, batch_size=5)
    stream = env.create_stream("in", source=RedisStreamSource(redis_server.url, key, group="g"))
    assert sorted(int(item["n"]) for item in await stream.collect()) == list(range(50))
    assert (await client.xpending(key, "g"))["pending"] == 0


async def test_decode_is_the_first_operator_and_a_bad_entry_is_a_dead_letter(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    key = fresh("decode")
    await client.xadd(key, {"n": "1"})
    bad = await client.xadd(key, {"n": b"\xff"})
    await client.xadd(key, {"n": "3"})
    env = LocalEnvironment("decode")
    stream = env.create_stream("in", source=RedisStreamSource(redis_server.url, key))
    stream.on_error(lambda stream_id, error, context: "continue")
    got: list[int] = []
    dead: list[tuple[str, Any, str]] = []
    stream.errors().sink(
        lambda letter: dead.append((letter.operator, letter.item, type(letter.error).__name__))
    )
    stream.map(lambda fields: int(fields["n"])).sink(got.append)
    await env.execute()
    assert got == [1, 3]
    assert dead == [("in.decode", (bad, {b"n": b"\xff"}), "UnicodeDecodeError")]
    assert decode_fields((b"1-0", {b"a": "é".encode()})) == {"a": "é"}


async def test_a_decode_of_ones_own_gets_the_entry(redis_server: Server, client: redis.asyncio.Redis) -> None:
    key = fresh("own")
    first = await client.xadd(key, {"n": "7"})
    env = LocalEnvironment("own")
    source = RedisStreamSource(redis_server.url, key, decode=lambda entry: (entry[0], int(entry[1][b"n"])))
    assert await env.create_stream("in", source=source).collect() == [(first, 7)]


def test_options_are_checked_when_the_source_is_made() -> None:
    for streams in ([], "", ["a", "a"], [1]):
        with pytest.raises(ValueError, match="streams must be one or more distinct non-empty keys"):
            RedisStreamSource("redis://x", streams)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a consumer name needs a group"):
        RedisStreamSource("redis://x", "s", consumer="c")
    with pytest.raises(ValueError, match="block must be a number of seconds > 0"):
        RedisStreamSource("redis://x", "s", block=0)
    source = RedisStreamSource("redis://u:secret@h:1/0", "s", group="g")
    assert (
        repr(source) == "RedisStreamSource('redis://u:***@h:1/0', ['s'], group='g', consumer='sage_streams')"
    )


def test_importing_the_package_does_not_import_redis() -> None:
    code = "import sys, sage_streams, sage_streams.connectors; assert 'redis' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 25),  # a stream of none does not exist: that is an error of its own
    size=st.integers(1, 6),
    read=st.integers(0, 8),
    committed=st.integers(0, 8),
    group=st.booleans(),
)
def test_a_run_restored_from_any_committed_position_gives_exactly_the_rest(
    redis_server: Server, count: int, size: int, read: int, committed: int, group: bool
) -> None:
    """A run reads ``read`` batches and dies; the last checkpoint holds the position after
    ``committed`` of them (acknowledged, in a group); the restored run gives exactly what came
    after it, and then nothing is left pending."""
    key = fresh("property")

    async def check() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            await produce(client, key, count)
            options: dict[str, Any] = {"group": "g", "consumer": "c"} if group else {}
            source = RedisStreamSource(redis_server.url, key, **options)
            first = source.batches(None, size)
            taken = [batch async for batch in first_batches(first, read)]
            await first.aclose()
            done = min(committed, len(taken))
            position = taken[done - 1][1] if done else None
            if position is not None:
                await source.acknowledge(position)
            before = numbers(taken[:done])
            again = RedisStreamSource(redis_server.url, key, **options)
            after = await read_all(again, position, size)
            assert before + numbers(after) == list(range(count))
            if group and after:
                await again.acknowledge(after[-1][1])
            if group:
                assert (await client.xpending(key, "g"))["pending"] == 0
        finally:
            await client.aclose()

    asyncio.run(check())


async def first_batches(batches: Any, limit: int) -> Any:
    """The first ``limit`` batches (with their positions) of ``batches``, or all there are."""
    taken = 0
    while taken < limit:
        try:
            yield await anext(batches)
        except StopAsyncIteration:
            return
        taken += 1


async def read_all(source: RedisStreamSource, position: Any, size: int) -> list[tuple[list[Any], Any]]:
    return [batch async for batch in source.batches(position, size)]


async def test_a_following_job_cancelled_and_restarted_writes_each_entry_once(
    redis_server: Server, client: redis.asyncio.Redis, tmp_path: Any
) -> None:
    key, out = fresh("live"), fresh("live-out")

    async def run_until(count: int) -> None:
        """Run the job until ``out`` holds ``count`` entries, then cancel it, as a stop would."""
        env = LocalEnvironment("live", checkpoints=tmp_path / "store.db", checkpoint_interval=0.005)
        source = RedisStreamSource(redis_server.url, key, group="g", follow=True, block=0.02)
        env.create_stream("in", source=source).sink(RedisStreamSink(redis_server.url, out))
        job = asyncio.ensure_future(env.execute())
        while await client.xlen(out) < count:
            assert not job.done(), job.exception()
            await asyncio.sleep(0.005)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    await produce(client, key, 30)
    await run_until(30)
    await produce(client, key, 20, start=30)  # while no job runs
    await run_until(50)
    assert [int(fields[b"n"]) for _, fields in await client.xrange(out)] == list(range(50))


async def test_checkpoints_commit_while_a_following_source_waits_for_entries(
    redis_server: Server, client: redis.asyncio.Redis, tmp_path: Any
) -> None:
    """Following, the source is live: its barriers go in while it waits, so epochs complete (and
    a group's entries are acknowledged once one commits) while the stream is idle."""
    for group in (None, "idle"):
        key = fresh("idle")
        await produce(client, key, 3)
        env = LocalEnvironment("idle", checkpoints=tmp_path / f"{group}.db", checkpoint_interval=0.01)
        out: list[int] = []
        source = RedisStreamSource(
            redis_server.url, key, group=group, follow=True, block=3600, decode=lambda e: int(e[1][b"n"])
        )
        env.create_stream("in", source=source).sink(out.append)
        run = asyncio.ensure_future(env.execute())
        for _ in range(3000):
            if env.metrics().checkpoints.get("completed", 0) >= 5:
                break
            await asyncio.sleep(0.01)
        completed = env.metrics().checkpoints["completed"]
        run.cancel()
        await asyncio.wait_for(asyncio.gather(run, return_exceptions=True), 30)  # cancelling ends the wait
        assert completed >= 5  # an hour's block: only barriers passing the wait complete these
        assert out == [0, 1, 2]
        if group is not None:
            assert (await client.xpending(key, group))["pending"] == 0
