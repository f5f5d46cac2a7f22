"""What the Redis connectors' tests share: a client of the session's server, and fresh key names."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from servers import Server

_names = itertools.count()


def fresh(name: str) -> str:
    """A key no other test of the session uses (the tests share one server)."""
    return f"{name}-{next(_names)}"


@pytest.fixture
async def client(redis_server: Server) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the session's Redis server, closed after the test."""
    connection = redis.asyncio.Redis.from_url(redis_server.url)
    yield connection
    await connection.aclose()


async def produce(client: redis.asyncio.Redis, key: str, count: int, start: int = 0) -> list[bytes]:
    """``count`` entries ``{"n": i}`` appended to ``key``; their IDs."""
    pipe = client.pipeline(transaction=False)
    for n in range(start, start + count):
        pipe.xadd(key, {"n": n})
    return list(await pipe.execute())
