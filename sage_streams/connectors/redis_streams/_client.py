"""What the Redis connectors share: the client they open, and every call made through it.

Each call goes through :func:`call`: a refused or dropped connection or a timeout is retried
with the connector's :class:`~sage_streams.connectors.Backoff` (redis-py's own retries are
turned off, so the two do not multiply), and a server gone past its retries, refused
credentials or an error reply (a key of the wrong type, say) is a
:class:`~sage_streams.errors.ConnectorError` naming the connector and the command. The
client library is imported here and in the connectors' modules only, so ``import
sage_streams`` needs no Redis extra.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError

from sage_streams.connectors.retry import Backoff
from sage_streams.errors import ConnectorError

__all__ = ["TRANSIENT", "call", "entry_id", "open_client", "redacted"]

T = TypeVar("T")

TRANSIENT: Final = (redis.ConnectionError, redis.TimeoutError)
"""What a retry may get past: the server is away for now (refused credentials are not)."""


CONNECT_TIMEOUT: Final = 5.0
"""Seconds a connection may take to open: a host that does not answer fails, it does not hang."""


def open_client(owner: str, url: str) -> redis.asyncio.Redis:
    """A client of ``url`` (no connection yet: the first command opens one); a URL redis-py
    cannot read is a :class:`ConnectorError`."""
    try:
        return redis.asyncio.Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=CONNECT_TIMEOUT
        )
    except ValueError as exc:
        raise ConnectorError(f"{owner}: {url!r} is not a Redis URL: {exc}") from exc


async def call(
    owner: str,
    backoff: Backoff,
    what: str,
    attempt: Callable[[], Awaitable[T]],
    reset: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """``await attempt()``, retried while the server is away (``reset`` before each retry);
    a :class:`ConnectorError` naming ``owner`` and ``what`` once it cannot be done."""

    async def once() -> T:
        try:
            return await attempt()
        except AuthenticationError as exc:  # a ConnectionError to redis-py, not one to retry
            raise ConnectorError(f"{owner}: {what} was refused: {exc}") from exc

    try:
        return await backoff.call(owner, what, once, transient=TRANSIENT, reset=reset)
    except ConnectorError as exc:
        cause = exc.__cause__
        if not isinstance(cause, TRANSIENT) or isinstance(cause, AuthenticationError):
            raise
        # redis-py's errors have a repr that says little ("network:ConnectionError"): add their text.
        raise ConnectorError(f"{exc}: {cause}") from cause
    except RedisError as exc:
        raise ConnectorError(f"{owner}: {what} failed: {exc}") from exc


def entry_id(raw: Any) -> tuple[int, int]:
    """A stream entry ID (``b"1700000000000-3"`` or ``"5-0"``) as the pair it is ordered by."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


def redacted(url: str) -> str:
    """``url`` with its password, if it holds one, shown as ``***`` (for reprs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
