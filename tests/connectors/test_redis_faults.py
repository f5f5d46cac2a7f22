"""The Redis connectors' faults against real servers: a wrong URL, refused credentials or a missing
stream fail the run at its start, naming the connector; a server that goes away mid-run is
retried with backoff, then fails the run with a PipelineError naming the connector, and what
was committed before is all there is, so a run restored once it is back writes the rest once;
a server back before the retries run out does not fail the run at all."""

from __future__ import annotations

import threading
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


async def test_a_server_gone_mid_run_fails_it_and_the_restored_run_writes_the_rest_once(
    tmp_path: Path,
) -> None:
    with servers.start("redis", durable=True) as server:
        client = redis.asyncio.Redis.from_url(server.url)
        await produce(client, "in", 2000)
        await client.aclose()

        def build(stop_at: int | None) -> LocalEnvironment:
            env = LocalEnvironment(
                "gone", checkpoints=tmp_path / "store.db", checkpoint_interval=0.005, batch_size=10
            )
            source = RedisStreamSource(server.url, "in", group="g", backoff=QUICK)

            def double(fields: dict[str, str]) -> dict[str, int]:
                n = int(fields["n"])
                if n == stop_at:
                    server.stop()  # SIGTERM: Redis writes its AOF out and exits
                return {"n": n * 2}

            env.create_stream("in", source=source).map(double).sink(
                RedisStreamSink(server.url, "out", backoff=QUICK)
            )
            return env

        failure = await failure_of(build(stop_at=700))
        assert isinstance(failure.__cause__, ConnectorError)
        assert "failed 3 times in a row" in str(failure.__cause__)
        assert str(failure.__cause__).startswith(("RedisStreamSource(", "RedisStreamSink("))
        server.restart()
        client = redis.asyncio.Redis.from_url(server.url)
        written = [int(f[b"n"]) for _, f in await client.xrange("out")]
        assert written == [2 * n for n in range(len(written))]  # committed epochs only, in order
        assert 0 < len(written) <= 700
        await build(stop_at=None).execute()
        assert [int(f[b"n"]) for _, f in await client.xrange("out")] == [2 * n for n in range(2000)]
        assert (await client.xpending("in", "g"))["pending"] == 0
        await client.aclose()


async def test_a_server_back_within_the_backoff_is_retried_and_the_run_writes_each_entry_once(
    tmp_path: Path,
) -> None:
    with servers.start("redis", durable=True) as server:
        client = redis.asyncio.Redis.from_url(server.url)
        await produce(client, "in", 2000)
        await client.aclose()
        patient = Backoff(attempts=30, first=0.02, limit=0.1)
        env = LocalEnvironment(
            "back", checkpoints=tmp_path / "store.db", checkpoint_interval=0.005, batch_size=10
        )
        source = RedisStreamSource(server.url, "in", group="g", backoff=patient)
        away = threading.Timer(0.3, server.restart)  # the same port and data, 0.3 s later

        def double(fields: dict[str, str]) -> dict[str, int]:
            n = int(fields["n"])
            if n == 700:
                server.stop()
                away.start()
            return {"n": n * 2}

        stream = env.create_stream("in", source=source).map(double)
        stream.sink(RedisStreamSink(server.url, "out", backoff=patient))
        await env.execute()
        away.join()
        client = redis.asyncio.Redis.from_url(server.url)
        assert [int(f[b"n"]) for _, f in await client.xrange("out")] == [2 * n for n in range(2000)]
        assert (await client.xpending("in", "g"))["pending"] == 0
        await client.aclose()
