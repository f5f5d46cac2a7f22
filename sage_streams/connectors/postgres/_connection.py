"""One asyncpg connection per connector, made again after a transient error, and the calls made on
it retried with :class:`~sage_streams.connectors.Backoff`.

Transient: the connection refused, reset or timed out, closed under a call or by the server
while idle, the server shutting down or starting up (SQLSTATE classes 08 and 57), a transaction
rolled back by a deadlock or a serialization failure (class 40). Anything else the server says
(a wrong password, a database, table or column that does not exist, a missing privilege) is a
:class:`~sage_streams.errors.ConnectorError` at once, naming the connector and what it tried.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import asyncpg

from sage_streams.connectors.retry import Backoff
from sage_streams.errors import ConnectorError

__all__ = ["DEFAULT_BACKOFF", "TRANSIENT", "Link", "quoted", "redacted"]

T = TypeVar("T")

TRANSIENT: Final[tuple[type[BaseException], ...]] = (
    OSError,  # refused, reset, timed out (TimeoutError is an OSError)
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,  # 08: closed in the middle of a call, failure to connect
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutting down, not yet accepting connections
    asyncpg.exceptions.TransactionRollbackError,  # 40: deadlock, serialization failure
    # A connection the server terminated while it was idle, before asyncpg saw the socket close:
    # the termination's error left it waiting for an answer that never comes.
    asyncpg.exceptions.InternalClientError,
)

DEFAULT_BACKOFF: Final = Backoff()
"""5 tries over about 1.5 s."""


def quoted(name: str) -> str:
    """``name`` as a PostgreSQL identifier (any name can be a table or a column), or a
    ``schema.table`` pair given as ``"schema.table"`` quoted part by part."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def redacted(url: str) -> str:
    """``url`` with its password left out, for messages and reprs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class Link:
    """A connector's connection to PostgreSQL: made on first use, dropped after a transient error
    (the next try makes a new one), closed by :meth:`close`; calls take turns on it.

    Args:
        url: a ``postgresql://`` URL, as :func:`asyncpg.connect` takes it.
        owner: the connector, as its messages name it.
        backoff: how calls are retried.
    """

    def __init__(self, url: str, owner: str, backoff: Backoff) -> None:
        self.url = url
        self.owner = owner
        self.backoff = backoff
        self._connection: asyncpg.Connection | None = None
        # A sink's commit comes from the checkpoints' task, maybe while its own task is in the
        # next epoch's pre_commit: one call at a time on the connection.
        self._lock = asyncio.Lock()

    async def connection(self) -> asyncpg.Connection:
        """The open connection, made now if there is none (or the last one was closed)."""
        if self._connection is None or self._connection.is_closed():
            try:
                self._connection = await asyncpg.connect(self.url, timeout=10)
            except asyncpg.exceptions.ClientConfigurationError as exc:
                raise ConnectorError(f"{self.owner}: not a PostgreSQL URL: {exc}") from exc
        return self._connection

    async def call(self, what: str, attempt: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``await attempt(connection)``, retried after a transient error on a new connection;
        a :class:`ConnectorError` for any other error of the server or the driver."""

        async def once() -> T:
            return await attempt(await self.connection())

        try:
            async with self._lock:
                return await self.backoff.call(self.owner, what, once, transient=TRANSIENT, reset=self.drop)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ConnectorError(f"{self.owner}: {what} failed: {type(exc).__name__}: {exc}") from exc

    async def drop(self) -> None:
        """Drop the connection at once (it is broken, or its server gone): the next call makes one."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    async def close(self) -> None:
        """Close the connection politely, or drop it if the server does not answer."""
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                await connection.close(timeout=5)
            except TRANSIENT:
                connection.terminate()
