"""NATS JetStream against a real nats-server: the source reads a stream in order from the sequence
a run starts at, acknowledges only what committed, and skips what it gave; the sink's ids make a
replay's messages duplicates the stream drops; a lost server is retried, then a clear error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from sage_streams import ConnectorError, LocalEnvironment, PipelineError
from sage_streams.connectors import Backoff
from sage_streams.connectors.nats_jetstream import JetStreamSink, JetStreamSource
from servers import Server, binary, free_port, start
from tests.connectors.sinks import CRASHES, Crash, epochs_of, run

QUICK = Backoff(attempts=3, first=0.01, limit=0.05)
"""A backoff that gives up in well under a second."""


@pytest.fixture
async def client(nats_server: Server) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def new_stream(nc: Client) -> str:
    """A stream of its own for the test, taking the subjects ``NAME.>``."""
    name = f"T{uuid.uuid4().hex[:10]}"
    await nc.jetstream().add_stream(name=name, subjects=[f"{name}.>"])
    return name


async def publish(nc: Client, subject: str, items: list[Any]) -> None:
    js = nc.jetstream()
    for item in items:
        await js.publish(subject, json.dumps(item).encode())


async def stored(nc: Client, stream: str) -> list[tuple[str | None, Any]]:
    """``(Nats-Msg-Id, JSON payload)`` of each message the stream holds, in order."""
    js = nc.jetstream()
    state = (await js.stream_info(stream)).state
    sequences = range(state.first_seq, state.last_seq + 1) if state.messages else range(0)
    messages = [await js.get_msg(stream, seq) for seq in sequences]
    return [((m.headers or {}).get("Nats-Msg-Id"), json.loads(m.data or b"")) for m in messages]


async def read(source: JetStreamSource, position: Any = None, size: int = 10) -> list[tuple[list[Any], int]]:
    """Every batch of ``source`` from ``position``, decoded, with its position."""
    batches = source.batches(position, size)
    return [([source.decode(m) for m in batch], after) async for batch, after in batches]


async def test_the_source_reads_the_stream_in_order_and_ends_without_follow(
    client: Client, nats_server: Server
) -> None:
    stream = await new_stream(client)
    await publish(client, f"{stream}.a", [{"n": i} for i in range(25)])
    source = JetStreamSource(nats_server.url, stream)
    assert source.guarantee == "exactly_once"
    batches = await read(source)
    assert [item for batch, _ in batches for item in batch] == [{"n": i} for i in range(25)]
    # Each position is the stream sequence of the batch's last message.
    ends = [sum(len(batch) for batch, _ in batches[: k + 1]) for k in range(len(batches))]
    assert [after for _, after in batches] == ends
    assert ends[-1] == 25
    assert all(len(batch) <= 10 for batch, _ in batches)


async def test_a_run_reads_what_the_stream_held_when_it_started(client: Client, nats_server: Server) -> None:
    stream = await new_stream(client)
    await publish(client, f"{stream}.a", [0, 1, 2])
    source = JetStreamSource(nats_server.url, stream)
    seen = []
    async for batch, after in source.batches(None, 1):
        seen.append((source.decode(batch[0]), after))
        if after == 1:  # published while the run reads: left for the next run
            await publish(client, f"{stream}.a", [3, 4])
    assert seen == [(0, 1), (1, 2), (2, 3)]
    assert await read(source, 3) == [([3, 4], 5)]


async def test_a_subject_filter_reads_only_its_messages(client: Client, nats_server: Server) -> None:
    stream = await new_stream(client)
    for i in range(6):
        await publish(client, f"{stream}.{'ab'[i % 2]}", [i])
    batches = await read(JetStreamSource(nats_server.url, stream, subject=f"{stream}.b", durable="only_b"))
    assert batches == [([1, 3, 5], 6)]
    assert await read(JetStreamSource(nats_server.url, stream, subject=f"{stream}.x", durable="none")) == []


async def test_follow_waits_for_messages_published_later(client: Client, nats_server: Server) -> None:
    stream = await new_stream(client)
    source = JetStreamSource(nats_server.url, stream, follow=True, fetch_timeout=0.05)
    batches = source.batches(None, 100)

    async def later() -> None:
        await asyncio.sleep(0.2)
        await publish(client, f"{stream}.a", [7])

    publishing = asyncio.create_task(later())
    batch, after = await anext(batches)
    assert ([source.decode(m) for m in batch], after) == ([7], 1)
    await publishing
    await batches.aclose()  # type: ignore[attr-defined]


async def test_a_restored_position_reads_on_after_it_even_behind_the_consumer(
    client: Client, nats_server: Server
) -> None:
    stream = await new_stream(client)
    await publish(client, f"{stream}.a", list(range(1, 21)))
    source = JetStreamSource(nats_server.url, stream)
    assert [n for batch, _ in await read(source, 10) for n in batch] == list(range(11, 21))
    # The consumer delivered up to 20, none acknowledged: a run restored at 4 starts at 5.
    assert [n for batch, _ in await read(source, 4, size=100) for n in batch] == list(range(5, 21))
    with pytest.raises(ValueError, match="is not a position it gave"):
        await read(source, "10")


async def test_acks_move_the_durable_consumer_and_a_run_without_a_position_resumes_there(
    client: Client, nats_server: Server
) -> None:
    stream = await new_stream(client)
    await publish(client, f"{stream}.a", list(range(1, 11)))
    source = JetStreamSource(nats_server.url, stream, durable="acked")
    batches = source.batches(None, 4)
    assert (await anext(batches))[1] == 4
    await source.acknowledge(4)  # on the run's connection
    assert (await anext(batches))[1] == 8
    await batches.aclose()  # type: ignore[attr-defined]
    await source.acknowledge(8)  # after the run: on a connection of its own
    info = await client.jetstream().consumer_info(stream, "acked")
    assert info.ack_floor.stream_seq == 8
    assert await read(source) == [([9, 10], 10)]  # nothing given before is read again


async def test_a_durable_name_another_program_uses_otherwise_is_a_clear_error(
    client: Client, nats_server: Server
) -> None:
    stream = await new_stream(client)
    config = ConsumerConfig(durable_name="theirs", ack_policy=AckPolicy.EXPLICIT)
    await client.jetstream().add_consumer(stream, config)
    with pytest.raises(ConnectorError, match="cannot make the durable consumer 'theirs' an ack-all pull"):
        await read(JetStreamSource(nats_server.url, stream, durable="theirs"))


async def test_a_malformed_message_goes_to_the_error_path_and_the_rest_on(
    client: Client, nats_server: Server, tmp_path: Path
) -> None:
    stream = await new_stream(client)
    js = client.jetstream()
    for payload in (b'{"n": 1}', b"{not json", b'{"n": 3}'):
        await js.publish(f"{stream}.a", payload)
    env = LocalEnvironment("job", checkpoints=tmp_path / "store.db", checkpoint_interval=0.01)
    orders = env.create_stream("orders", source=JetStreamSource(nats_server.url, stream))
    orders.on_error(lambda stream_id, error, context: "continue")
    out: list[Any] = []
    letters: list[Any] = []
    orders.sink(out.append)
    orders.errors().sink(letters.append)
    await env.execute()
    assert out == [{"n": 1}, {"n": 3}]
    assert [letter.operator for letter in letters] == ["orders.decode"]
    assert isinstance(letters[0].error, ValueError)
    assert str(letters[0].error).startswith(
        f"JetStreamSource({nats_server.url!r}, {stream!r}): message 2 on '{stream}.a' is not JSON"
    )


async def test_a_wrong_url_or_a_missing_stream_fails_at_the_start(
    client: Client, nats_server: Server
) -> None:
    with start("nats") as gone:
        url = gone.url
    env = LocalEnvironment("job")
    env.create_stream("orders", source=JetStreamSource(url, "ORDERS", backoff=QUICK)).sink(print)
    with pytest.raises(PipelineError) as raised:
        await env.execute()
    cause = raised.value.__cause__
    assert isinstance(cause, ConnectorError)
    assert raised.value.operator == "orders"
    assert str(cause).startswith(
        f"JetStreamSource({url!r}, 'ORDERS'): connect to {url} failed 3 times in a row"
    )
    with pytest.raises(ConnectorError, match=f"the server at {nats_server.url} has no stream 'MISSING'"):
        await read(JetStreamSource(nats_server.url, "MISSING"))
    with pytest.raises(ConnectorError, match=r"no stream on the server at .* takes the subject 'nowhere\.x'"):
        await JetStreamSink(nats_server.url, "nowhere.x").recover(None, None)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[str]:
    """A nats-server of its own that wants a user and a password: the URL of it, without them."""
    port = free_port()
    command = [binary("nats"), "-a", "127.0.0.1", "-p", str(port), "--user", "app", "--pass", "s3cret"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.kill()  # the process this fixture started, by its PID
        server.wait()


async def test_refused_credentials_fail_at_the_start_without_showing_the_password(guarded: str) -> None:
    wrong = guarded.replace("://", "://app:wrong@")
    source = JetStreamSource(wrong, "ORDERS")
    assert repr(source) == f"JetStreamSource({guarded.replace('://', '://app:***@')!r}, 'ORDERS')"
    with pytest.raises(ConnectorError) as raised:
        await read(source)
    assert str(raised.value) == (
        f"{source!r}: the server at {guarded.replace('://', '://app:***@')} refused the connection:"
        " nats: 'Authorization Violation'"
    )
    with pytest.raises(ConnectorError, match=r"JetStreamSink\('nats://\*\*\*@.* refused the connection"):
        await JetStreamSink(guarded.replace("://", "://token@"), "orders").recover(None, None)


async def server_stream(server: Server) -> str:
    nc = await nats.connect(server.url)
    try:
        return await new_stream(nc)
    finally:
        await nc.close()


async def test_a_server_gone_mid_run_is_retried_then_a_pipeline_error_naming_the_source() -> None:
    with start("nats") as server:
        stream = await server_stream(server)
        source = JetStreamSource(server.url, stream, follow=True, fetch_timeout=0.05, backoff=QUICK)
        env = LocalEnvironment("job")
        seen: list[Any] = []

        def stop_after_first(item: Any) -> None:
            seen.append(item)
            server.stop()

        env.create_stream("orders", source=source).sink(stop_after_first)
        nc = await nats.connect(server.url)
        await publish(nc, f"{stream}.a", [1])
        await nc.close()
        with pytest.raises(PipelineError) as raised:
            await env.execute()
    assert seen == [1], repr(raised.value.__cause__)
    assert raised.value.operator == "orders"
    assert isinstance(raised.value.__cause__, ConnectorError)
    assert str(raised.value.__cause__).startswith(f"{source!r}: fetch failed 3 times in a row")


async def test_a_server_back_within_the_backoff_loses_and_repeats_nothing() -> None:
    with start("nats") as server:
        stream = await server_stream(server)
        nc = await nats.connect(server.url)
        await publish(nc, f"{stream}.a", list(range(20)))
        await nc.close()
        source = JetStreamSource(server.url, stream, backoff=Backoff(attempts=20, first=0.05, limit=0.2))
        batches = source.batches(None, 5)
        got = [source.decode(m) for m in (await anext(batches))[0]]
        restart = threading.Thread(target=server.restart)  # stops it, then starts it on its data
        restart.start()
        got += [source.decode(m) async for batch, _ in batches for m in batch]
        restart.join()
    assert got == list(range(20))


async def test_the_sink_publishes_with_ids_and_a_replay_publishes_nothing_twice(
    client: Client, nats_server: Server
) -> None:
    stream = await new_stream(client)
    subject = f"{stream}.out"
    sink = JetStreamSink(nats_server.url, subject, in_flight=2)
    assert sink.guarantee == "exactly_once"
    await sink.recover(None, None)
    await sink.write([{"n": 0}, {"n": 1}], 1)
    assert await sink.pre_commit(1) == {"count": 2}
    await sink.commit(1)
    await sink.write([{"n": 2}, {"n": 3}, {"n": 4}], 2)
    await sink.pre_commit(2)  # published, but the store never commits epoch 2: a crash
    await sink.close()
    replay = JetStreamSink(nats_server.url, subject)
    await replay.recover(1, {"count": 2})
    await replay.write([{"n": 2}, {"n": 3}], 2)  # the replay's epochs end elsewhere
    assert await replay.pre_commit(2) == {"count": 4}
    await replay.write([{"n": 4}, {"n": 5}], 3)
    assert await replay.pre_commit(3) == {"count": 6}
    await replay.close()
    assert replay.duplicates == 3
    assert await stored(client, stream) == [(f"{subject}:{n}", {"n": n}) for n in range(6)]
    with pytest.raises(ValueError, match=r"must be \{'count': n\}"):
        await replay.recover(3, {"epoch": 3})


async def test_the_sink_refuses_what_it_cannot_encode(client: Client, nats_server: Server) -> None:
    stream = await new_stream(client)
    sink = JetStreamSink(nats_server.url, f"{stream}.out", encode=lambda item: str(item))  # type: ignore[arg-type,return-value]
    await sink.recover(None, None)
    with pytest.raises(TypeError, match="encode must return bytes, gave '1' for item 0 of its batch, 1"):
        await sink.write([1], 1)
    await sink.close()
    sink = JetStreamSink(nats_server.url, f"{stream}.out")
    await sink.recover(None, None)
    with pytest.raises(TypeError, match=r"cannot encode item 1 of its batch, \{1\}: Object of type set"):
        await sink.write([1, {1}], 1)
    await sink.close()


async def test_a_server_gone_at_pre_commit_is_retried_then_an_error_naming_the_sink() -> None:
    with start("nats") as server:
        stream = await server_stream(server)
        sink = JetStreamSink(server.url, f"{stream}.out", backoff=QUICK, ack_timeout=0.5)
        await sink.recover(None, None)
        await sink.write([1, 2], 1)
        server.stop()
        await sink.write([3], 1)
        with pytest.raises(ConnectorError) as raised:
            await sink.pre_commit(1)
        await sink.close()
    assert str(raised.value).startswith(f"{sink!r}: publish failed 3 times in a row")


async def test_the_sink_publishes_an_epoch_again_after_the_server_restarts() -> None:
    with start("nats") as server:
        stream = await server_stream(server)
        sink = JetStreamSink(server.url, f"{stream}.out", backoff=Backoff(attempts=20, first=0.05, limit=0.2))
        await sink.recover(None, None)
        await sink.write([1, 2], 1)
        await sink.pre_commit(1)
        await sink.write([3, 4], 2)
        server.restart()
        await sink.write([5], 2)
        assert await sink.pre_commit(2) == {"count": 5}
        await sink.close()
        nc = await nats.connect(server.url)
        assert [item for _, item in await stored(nc, stream)] == [1, 2, 3, 4, 5]
        await nc.close()


async def test_a_sink_server_gone_mid_run_stops_the_run_naming_the_sink_and_the_next_run_completes(
    client: Client, nats_server: Server, tmp_path: Path
) -> None:
    stream = await new_stream(client)
    await publish(client, f"{stream}.in", [{"n": i} for i in range(400)])
    with start("nats") as target:
        out = await server_stream(target)

        def job(stop_at: int | None) -> LocalEnvironment:
            env = LocalEnvironment(
                "job", checkpoints=tmp_path / "store.db", checkpoint_interval=0.002, batch_size=20
            )

            def step(item: dict[str, int]) -> dict[str, int]:
                if item["n"] == stop_at:
                    target.stop()
                return item

            source = JetStreamSource(nats_server.url, stream, durable="sinking")
            sink = JetStreamSink(target.url, f"{out}.x", backoff=QUICK, ack_timeout=0.5)
            env.create_stream("orders", source=source).map(step, name="step").sink(sink, name="out")
            return env

        first = job(stop_at=250)
        with pytest.raises(PipelineError) as raised:
            await first.execute()
        assert raised.value.operator == "out"
        assert isinstance(raised.value.__cause__, ConnectorError)
        assert str(raised.value.__cause__).startswith(f"JetStreamSink({target.url!r}, '{out}.x'): ")
        target.restart()
        await job(stop_at=None).execute()
        nc = await nats.connect(target.url)
        assert [item for _, item in await stored(nc, out)] == [{"n": i} for i in range(400)]
        await nc.close()


class FailOnce:
    """A map that raises at ``item == at`` the first time it sees it: a run stopped mid-epoch."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.failed = False
        self.seen: list[int] = []

    def __call__(self, item: dict[str, int]) -> dict[str, int]:
        if item["n"] == self.at and not self.failed:
            self.failed = True
            raise RuntimeError("stopped on purpose")
        self.seen.append(item["n"])
        return {"n": item["n"], "double": 2 * item["n"]}


async def test_a_run_stopped_and_restored_gives_each_message_once_downstream_and_in_the_sink(
    client: Client, nats_server: Server, tmp_path: Path
) -> None:
    stream = await new_stream(client)
    await publish(client, f"{stream}.in", [{"n": i} for i in range(3000)])
    step = FailOnce(at=2000)

    def job() -> LocalEnvironment:
        store = tmp_path / "store.db"
        env = LocalEnvironment("job", checkpoints=store, checkpoint_interval=0.002, batch_size=50)
        source = JetStreamSource(nats_server.url, stream, subject=f"{stream}.in", durable="job")
        env.create_stream("orders", source=source).map(step, name="double").sink(
            JetStreamSink(nats_server.url, f"{stream}.out"), name="out"
        )
        return env

    first = job()
    with pytest.raises(PipelineError, match="double"):
        await first.execute()
    assert first.metrics().checkpoints["committed"] >= 1
    before = len(step.seen)
    await job().execute()
    out = [item for msg_id, item in await stored(client, stream) if msg_id is not None]
    assert out == [{"n": i, "double": 2 * i} for i in range(3000)]  # each once, in order
    # The restored run read on from the committed position: past it, nothing twice.
    assert sorted(set(step.seen)) == list(range(3000))
    replayed = len(step.seen) - 3000
    assert 0 <= replayed < before
    info = await client.jetstream().consumer_info(stream, "job")
    assert info.ack_floor.stream_seq == 3000  # everything acknowledged, after the last commit


@pytest.mark.slow
@settings(max_examples=50, deadline=None)
@given(epochs=epochs_of(st.integers(-5, 5) | st.text(max_size=3)), crashes=CRASHES)
def test_crashes_at_any_point_leave_each_published_item_once(
    nats_server: Server, epochs: list[list[list[Any]]], crashes: list[Crash]
) -> None:
    async def check() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            stream = await new_stream(nc)
            await run(lambda: JetStreamSink(nats_server.url, f"{stream}.out"), epochs, crashes)
            expected = [item for epoch in epochs for batch in epoch for item in batch]
            assert [item for _, item in await stored(nc, stream)] == expected
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()

    asyncio.run(check())


async def test_checkpoints_go_on_and_acks_go_out_while_a_following_source_waits(
    client: Client, nats_server: Server, tmp_path: Path
) -> None:
    """Following, the source is live: barriers pass its waits, so epochs complete and the
    messages it gave are acknowledged while the stream is idle."""
    stream = await new_stream(client)
    await publish(client, f"{stream}.a", [1, 2, 3])
    env = LocalEnvironment("idle", checkpoints=tmp_path / "idle.db", checkpoint_interval=0.01)
    out: list[int] = []
    source = JetStreamSource(nats_server.url, stream, follow=True, fetch_timeout=3600)
    env.create_stream("in", source=source).sink(out.append)
    run = asyncio.ensure_future(env.execute())
    for _ in range(3000):
        if env.metrics().checkpoints.get("completed", 0) >= 5:
            break
        await asyncio.sleep(0.01)
    completed = env.metrics().checkpoints["completed"]
    acked = (await client.jetstream().consumer_info(stream, "sage_streams")).ack_floor.stream_seq
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert completed >= 5  # an hour per fetch: only barriers passing the wait complete these
    assert out == [1, 2, 3]
    assert acked == 3
