"""The PostgreSQL source: the rows of a table in the order of an increasing column, polled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import Any

import asyncpg

from sage_streams._typing import check_positive_int
from sage_streams.connectors.base import Guarantee
from sage_streams.connectors.postgres._connection import DEFAULT_BACKOFF, TRANSIENT, Link, quoted, redacted
from sage_streams.connectors.retry import Backoff

__all__ = ["PostgresSource"]


class PostgresSource:
    """Reads the rows of a table in the order of ``column``, whose last value read is the position.

    Each batch is ``SELECT ... WHERE column > $last ORDER BY column LIMIT size``; its rows go
    on as dicts (column name -> value) through ``decode``, an operator of the stream's own
    (``NAME.decode``), so a row ``decode`` raises for is an error of that row, through the
    stream's ``on_error``. ``column`` must be unique and only grow (an identity or ``serial``
    column, a sequence), and its values must be what the checkpoint codec writes (an ``int``,
    a ``str``, a ``datetime``, a ``Decimal``). See :mod:`sage_streams.connectors.postgres`
    for rows committed late.

    With ``follow=False`` the source reads the rows there are when it starts (up to the
    largest value of ``column`` then) and ends. With ``follow=True`` it goes on: once a query
    finds fewer rows than a batch holds, it waits ``poll_interval`` seconds before the next
    (it is then ``live``: the run reads it in a task of its own, so a checkpoint never waits
    for new rows). With ``notify``, it also runs ``LISTEN`` on that channel
    (on a connection of its own) and a notification ends the wait at once: a wake-up only, at most
    once (one sent while the connection was down is lost), so the poll stays the truth and a
    lost notification only delays a row by ``poll_interval``.

    Args:
        url: ``postgresql://user:password@host:port/database``.
        table: the table (or view), ``name`` or ``schema.name``.
        column: the increasing column.
        columns: the columns read (``column`` is always read); ``None``: all of them.
        decode: the item of a row's dict; ``None``: the dict itself.
        follow: whether to go on polling for new rows once the rows there were are read.
        poll_interval: seconds between two polls that find nothing, with ``follow``.
        notify: a channel whose notifications wake the poll, with ``follow``.
        backoff: how a query is retried after a transient error.
    """

    guarantee: Guarantee = "exactly_once"

    def __init__(
        self,
        url: str,
        table: str,
        column: str,
        *,
        columns: Sequence[str] | None = None,
        decode: Callable[[dict[str, Any]], Any] | None = None,
        follow: bool = False,
        poll_interval: float = 1.0,
        notify: str | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        for label, value in (("table", table), ("column", column)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{label} must be a non-empty string, got {value!r}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        if notify is not None and not follow:
            raise ValueError("notify wakes a source that follows the table: give follow=True too")
        self.url = url
        self.table = table
        self.column = column
        self.columns = None if columns is None else list(dict.fromkeys([column, *columns]))
        self.follow = follow
        self.live = follow
        self.poll_interval = poll_interval
        self.notify = notify
        self.decode: Callable[[asyncpg.Record], Any] = dict if decode is None else _then(decode)
        """The item of one row (the stream's ``NAME.decode`` operator): ``decode`` of its dict;
        plain ``dict`` without one, so that the operator calls no Python function per row."""
        self._link = Link(url, repr(self), backoff)

    def __repr__(self) -> str:
        return f"PostgresSource({redacted(self.url)!r}, {self.table!r}, {self.column!r})"

    async def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        """The rows after ``position`` (``None``: all), each batch with the last value of
        ``column`` in it; see the class docstring for the end."""
        check_positive_int("size", size)
        bound = None
        wake = asyncio.Event()
        listener: asyncpg.Connection | None = None
        try:
            if not self.follow:
                top = f"SELECT max({quoted(self.column)}) FROM {quoted(self.table)}"
                bound = await self._link.call("reading where the table ends", lambda c: c.fetchval(top))
                if bound is None:
                    return
            while True:
                query, arguments = self._query(position, bound, size)
                rows = await self._link.call("reading rows", partial(_fetch, query, arguments))
                if rows:
                    position = rows[-1][self.column]
                    yield rows, position
                    if len(rows) == size:
                        continue
                if not self.follow:
                    return
                if self.notify is not None and (listener is None or listener.is_closed()):
                    listener = await self._listen(wake)
                with contextlib.suppress(TimeoutError):  # barriers pass meanwhile: the source is live
                    await asyncio.wait_for(wake.wait(), self.poll_interval)
                wake.clear()  # before the next query: a notification during it wakes the next wait
        finally:
            await self._link.close()
            if listener is not None:
                listener.terminate()

    def _query(self, position: Any, bound: Any, size: int) -> tuple[str, tuple[Any, ...]]:
        """The query of the next batch after ``position`` (up to ``bound``), and its arguments."""
        column = quoted(self.column)
        conditions, arguments = [f"{column} IS NOT NULL"], [size]
        for value, condition in ((position, f"{column} > $"), (bound, f"{column} <= $")):
            if value is not None:
                arguments.append(value)
                conditions.append(f"{condition}{len(arguments)}")
        selected = "*" if self.columns is None else ", ".join(map(quoted, self.columns))
        query = (
            f"SELECT {selected} FROM {quoted(self.table)} WHERE {' AND '.join(conditions)}"
            f" ORDER BY {column} LIMIT $1"
        )
        return query, tuple(arguments)

    async def _listen(self, wake: asyncio.Event) -> asyncpg.Connection | None:
        """A connection of its own listening on ``notify`` and setting ``wake``; ``None`` if the
        server cannot be reached now (the poll goes on, and the next wait tries again)."""
        assert self.notify is not None
        try:
            connection = await asyncpg.connect(self.url, timeout=10)
            await connection.add_listener(self.notify, lambda *_: wake.set())
        except TRANSIENT:
            return None
        return connection


def _then(decode: Callable[[dict[str, Any]], Any]) -> Callable[[asyncpg.Record], Any]:
    """``decode`` of a row's dict."""
    return lambda record: decode(dict(record))


async def _fetch(
    query: str, arguments: tuple[Any, ...], connection: asyncpg.Connection
) -> list[asyncpg.Record]:
    return await connection.fetch(query, *arguments)
