"""What the PostgreSQL connectors' tests share: a table of the session's server per test, read as
another program would."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from servers import Server

_numbers = itertools.count()


@dataclass
class Database:
    """The session's server, a connection of the test's own, and a table name no other test uses."""

    url: str
    connection: asyncpg.Connection
    table: str

    def new_table(self) -> str:
        """Another table name no other test uses (for each example of a property)."""
        self.table = f"t{next(_numbers)}"
        return self.table

    async def rows(self, order: str = "id", table: str | None = None) -> list[tuple[Any, ...]]:
        """Every row of the table (the test's by default), as tuples, ordered by ``order``."""
        return [
            tuple(row)
            for row in await self.connection.fetch(f"SELECT * FROM {table or self.table} ORDER BY {order}")
        ]

    async def marker(self, sink: str | None = None) -> tuple[int, int] | None:
        """The sink's ``(written, committed)`` marker (the table's sink by default); ``None``
        before it has one (or before any sink has made the marker table)."""
        try:
            row = await self.connection.fetchrow(
                "SELECT written, committed FROM sage_streams_epochs WHERE sink = $1", sink or self.table
            )
        except asyncpg.UndefinedTableError:
            return None
        return None if row is None else (row["written"], row["committed"])


@pytest.fixture
async def database(postgres_server: Server) -> AsyncIterator[Database]:
    connection = await asyncpg.connect(postgres_server.url)
    try:
        yield Database(postgres_server.url, connection, f"t{next(_numbers)}")
    finally:
        await connection.close()


async def until(holds: Callable[[], Awaitable[Any]]) -> None:
    """Poll ``holds`` until it is true: what a server holds changes under another task or process."""
    for _ in itertools.count():
        if await holds():
            return
        await asyncio.sleep(0.01)
