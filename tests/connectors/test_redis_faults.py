"""The Redis connectors' faults against real servers: a wrong URL, refused credentials or a missing
stream fail the run at its start, naming the connector; a server that goes away mid-run is
retried with backoff, then fails the run with a PipelineError naming the connector, and what
was committed before is all there is, so a run restored once it is back writes the rest once;
a server back before the retries run out does not fail the run at all."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio

import servers
from sage_streams import LocalEnvironment, PipelineError
from sage_streams.connectors import Backoff
from sage_streams.connectors.redis_streams import RedisHashSink, RedisStreamSink, RedisStreamSource
from sage_streams.errors import ConnectorError
from servers import Server
from tests.connectors.redis_client import client, fresh, produce

__all__ = ["client"]  # the fixture, used by name

QUICK = Backoff(attempts=3, first=0.01, limit=0.05)


async def failure_of(env: LocalEnvironment) -> PipelineError:
    with pytest.raises(PipelineError) as caught:
        await env.execute()
    return caught.value


def read_job(url: str, key: str) -> LocalEnvironment:
    env = LocalEnvironment("read")
    env.create_stream("in", source=RedisStreamSource(url, key, backoff=QUICK)).sink(lambda item: None)
    return env


async def test_a_url_that_is_not_redis_fails_at_the_start() -> None:
    failure = await failure_of(read_job("http://127.0.0.1/0", "k"))
    assert isinstance(failure.__cause__, ConnectorError)
    assert str(failure.__cause__) == (
        "RedisStreamSource('http://127.0.0.1/0', ['k']): 'http://127.0.0.1/0' is not a Redis URL: "
        "Redis URL must specify one of the following schemes (redis://, rediss://, unix://)"
    )


async def test_a_server_that_does_not_answer_fails_at_the_start_after_its_retries() -> None:
    url = f"redis://127.0.0.1:{servers.free_port()}/0"
    failure = await failure_of(read_job(url, "k"))
    assert isinstance(failure.__cause__, ConnectorError)
    assert str(failure.__cause__).startswith(
        f"RedisStreamSource('{url}', ['k']): TYPE k failed 3 times in a row (over 0.0 s of backoff); "
        f"last error: network:ConnectionError: Error 111 connecting to 127.0.0.1:{url.split(':')[2][:-2]}. "
    )
    sink = RedisStreamSink(url, "out", backoff=QUICK)
    sink.share_store(object())
    with pytest.raises(ConnectorError, match=r"RedisStreamSink\(.*\): DEL out.sage-staging failed 3 times"):
        await sink.recover(None, None)
    await sink.close()


async def test_refused_credentials_fail_at_once_naming_the_connector() -> None:
    with servers.start("redis") as server:
        admin = redis.asyncio.Redis.from_url(server.url)
        await admin.config_set("requirepass", "right")
        await admin.aclose()
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        failure = await failure_of(read_job(url, "k"))
        assert isinstance(failure.__cause__, ConnectorError)
        assert str(failure.__cause__) == (
            f"RedisStreamSource('redis://:***@127.0.0.1:{server.port}/0', ['k']): TYPE k was refused: "
            "invalid username-password pair or user is disabled."
        )
        sink = RedisHashSink(url, "h", backoff=Backoff(attempts=10))
        with pytest.raises(
            ConnectorError, match=r"RedisHashSink\('redis://:\*\*\*@.*\): DEL h.sage-staging was refused"
        ):
            sink.share_store(object())
            await sink.recover(None, None)
        await sink.close()


async def test_a_missing_stream_or_a_key_of_another_type_fails_at_the_start(
    redis_server: Server, client: redis.asyncio.Redis
) -> None:
    key, other = fresh("missing"), fresh("string")
    await client.set(other, "x")
    failure = await failure_of(read_job(redis_server.url, key))
    assert (
        str(failure.__cause__)
        == f"RedisStreamSource('{redis_server.url}', ['{key}']): the key '{key}' does not exist"
    )
    failure = await failure_of(read_job(redis_server.url, other))
    assert str(failure.__cause__).endswith(f"the key '{other}' holds a string, not a stream")
    assert "pipeline 'read' failed: operator 'in' failed" in str(failure)


async def fill(server: Server) -> None:
    """2,000 entries ``{"n": i}`` in ``in``."""
    client = redis.asyncio.Redis.from_url(server.url)
    await produce(client, "in", 2000)
    await client.aclose()


def doubling(
    server: Server, folder: Path, backoff: Backoff, outage: Callable[[], None] | None
) -> LocalEnvironment:
    """A job reading ``in`` as group ``g``, writing each ``n`` doubled to ``out``; ``outage()``
    is called as entry 700 goes by (in the map, so the run is mid-flight)."""
    env = LocalEnvironment(
        "outage", checkpoints=folder / "store.db", checkpoint_interval=0.005, batch_size=10
    )
    source = RedisStreamSource(server.url, "in", group="g", backoff=backoff)

    def double(fields: dict[str, str]) -> dict[str, int]:
        n = int(fields["n"])
        if n == 700 and outage is not None:
            outage()
        return {"n": n * 2}

    env.create_stream("in", source=source).map(double).sink(
        RedisStreamSink(server.url, "out", backoff=backoff)
    )
    return env


async def doubled(server: Server) -> tuple[list[int], int]:
    """The numbers in ``out``, in order, and the entries of ``in`` still pending in ``g``."""
    client = redis.asyncio.Redis.from_url(server.url)
    try:
        numbers = [int(fields[b"n"]) for _, fields in await client.xrange("out")]
        return numbers, (await client.xpending("in", "g"))["pending"]
    finally:
        await client.aclose()


async def test_a_server_gone_mid_run_fails_it_and_the_restored_run_writes_the_rest_once(
    tmp_path: Path,
) -> None:
    with servers.start("redis", durable=True) as server:
        await fill(server)
        # SIGTERM: Redis writes its AOF out and exits; three quick tries find it away.
        failure = await failure_of(doubling(server, tmp_path, QUICK, outage=server.stop))
        assert isinstance(failure.__cause__, ConnectorError)
        assert "failed 3 times in a row" in str(failure.__cause__)
        assert str(failure.__cause__).startswith(("RedisStreamSource(", "RedisStreamSink("))
        server.restart()
        written, _ = await doubled(server)
        assert written == [2 * n for n in range(len(written))]  # committed epochs only, in order
        assert 0 < len(written) <= 700
        await doubling(server, tmp_path, QUICK, outage=None).execute()
        assert await doubled(server) == ([2 * n for n in range(2000)], 0)


async def test_a_server_back_within_the_backoff_is_retried_and_the_run_writes_each_entry_once(
    tmp_path: Path,
) -> None:
    with servers.start("redis", durable=True) as server:
        await fill(server)
        back = threading.Timer(0.3, server.restart)  # the same port and data, 0.3 s later

        def outage() -> None:
            server.stop()
            back.start()

        await doubling(server, tmp_path, Backoff(attempts=30, first=0.02, limit=0.1), outage).execute()
        back.join()
        assert await doubled(server) == ([2 * n for n in range(2000)], 0)
