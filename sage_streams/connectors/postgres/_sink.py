"""The PostgreSQL sink: an epoch's rows copied in one transaction with the sink's epoch marker."""

from __future__ import annotations

import contextlib
import re
import reprlib
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Final

import asyncpg

from sage_streams.connectors.base import Guarantee
from sage_streams.connectors.postgres._connection import DEFAULT_BACKOFF, Link, quoted, redacted
from sage_streams.connectors.retry import Backoff
from sage_streams.errors import CheckpointError, ConnectorError, StreamError

__all__ = ["EPOCH_COLUMN", "PostgresSink"]

EPOCH_COLUMN: Final = "_epoch"
"""The column of the table that holds each row's epoch (a ``bigint``)."""

_UNENCODABLE: Final = (TypeError, ValueError, OverflowError)
"""What asyncpg raises, before sending, for a value its codec for the column cannot write."""

_COPY_LINE: Final = re.compile(r"^COPY .*, line (\d+)")
"""Where the server's error context says which row of a COPY it refused."""


class PostgresSink:
    """Writes items as rows of a PostgreSQL table, exactly once, each row tagged with its epoch.

    The table must exist, with the columns written and an ``_epoch bigint`` column (the sink
    makes no guess at types). A dict item's keys are column names (a column it lacks is
    ``NULL``; a key that is no column is an error); a tuple or list item holds the values in
    the order of ``columns``; ``encode`` turns any other item into either. Rows are held in
    memory until ``pre_commit(e)``, which copies them all (``COPY``, binary) in one
    transaction that also sets the sink's marker, a row of the ``markers`` table, to ``e``.
    ``commit(e)`` records ``e`` as committed by the checkpoint in the marker's second column.

    See :mod:`sage_streams.connectors.postgres` for what readers see, recovery and faults.

    Args:
        url: ``postgresql://user:password@host:port/database``.
        table: the table, ``name`` or ``schema.name``.
        columns: the columns written, in the order of a tuple item's values; ``None``: every
            column of the table but ``_epoch``, in the table's order.
        encode: the row of an item (a dict, a tuple or a list), called at :meth:`write`.
        name: the sink's row in the marker table (``table`` by default); one sink per table.
        markers: the marker table, created if it does not exist.
        backoff: how a call is retried after a transient error.
    """

    guarantee: Guarantee = "exactly_once"

    def __init__(
        self,
        url: str,
        table: str,
        *,
        columns: Sequence[str] | None = None,
        encode: Callable[[Any], Mapping[str, Any] | Sequence[Any]] | None = None,
        name: str | None = None,
        markers: str = "sage_streams_epochs",
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        for label, value in (("table", table), ("markers", markers), ("name", name or table)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{label} must be a non-empty string, got {value!r}")
        if columns is not None and (isinstance(columns, str) or EPOCH_COLUMN in columns or not columns):
            raise ValueError(
                f"columns must be a non-empty list of names without {EPOCH_COLUMN!r}, got {columns!r}"
            )
        self.url = url
        self.table = table
        self.name = name or table
        self.markers = markers
        self.columns: list[str] | None = None if columns is None else list(columns)
        self.encode = encode
        self._link = Link(url, repr(self), backoff)
        self._rows: list[tuple[Any, ...]] = []  # written, not yet pre-committed
        self._index: dict[str, int] = {}  # column -> its place in a row
        self._pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = None  # None: not recovered

    def __repr__(self) -> str:
        return f"PostgresSink({redacted(self.url)!r}, {self.table!r})"

    async def recover(self, epoch: int | None, record: Any) -> None:
        """Check the table, then delete the rows of epochs after the committed one (``record``,
        ``{"epoch": e}``, from its ``pre_commit``), or every row with an epoch if ``epoch`` is
        ``None``; a :class:`ConnectorError` for a server that cannot be reached, a wrong URL or
        credentials, or a table that is missing or lacks a column."""
        kept: int | None = None
        if epoch is not None:
            match record:
                case {"epoch": int() as kept} if 0 <= kept <= epoch:
                    pass
                case _:
                    raise ValueError(
                        f"{self!r}: the record of epoch {epoch} must be {{'epoch': e}} with e <= {epoch}, "
                        f"got {record!r}"
                    )
        await self._link.call("connecting and reading the table's columns", self._check_table)
        await self._link.call("recovering", lambda connection: self._recover(connection, kept))

    async def write(self, batch: list[Any], epoch: int) -> None:
        """Encode ``batch``'s rows (tagged ``epoch``) for the next ``pre_commit``; an item that
        is not a row is a :class:`TypeError` naming it, and none of the batch is kept."""
        pick = self._pick
        if pick is None or self.columns is None:
            raise StreamError(f"{self!r}: recover must be called before the first write")
        rows = []
        width, encode = len(self.columns), self.encode
        for index, item in enumerate(batch):
            row = item if encode is None else encode(item)
            if type(row) is dict and len(row) == width:
                try:  # the common case, in C: a dict of exactly the columns
                    rows.append((*pick(row), epoch))
                    continue
                except KeyError:
                    pass
            rows.append(self._row(index, item, row, epoch))
        self._rows += rows

    def _row(self, index: int, item: Any, row: Any, epoch: int) -> tuple[Any, ...]:
        """The row of any other ``item``: a mapping, a sequence of the columns' values, or an error."""
        assert self.columns is not None
        if isinstance(row, Mapping):
            return (*self._values(index, item, row), epoch)
        if isinstance(row, tuple | list) and len(row) == len(self.columns):
            return (*row, epoch)
        raise TypeError(
            f"{self!r} writes dicts or sequences of {len(self.columns)} values ({', '.join(self.columns)}); "
            f"item {index} of its batch is {reprlib.repr(item)}"
        )

    def _values(self, index: int, item: Any, row: Mapping[str, Any]) -> list[Any]:
        """The values of a dict ``row`` in the order of the columns, ``None`` for those it lacks."""
        assert self.columns is not None
        values: list[Any] = [None] * len(self.columns)
        for key, value in row.items():
            place = self._index.get(key)
            if place is None:
                raise ValueError(
                    f"{self!r}: item {index} of its batch, {reprlib.repr(item)}, has a key {key!r} "
                    f"that is no column of the table ({', '.join(self.columns)})"
                )
            values[place] = value
        return values

    async def pre_commit(self, epoch: int) -> dict[str, int]:
        """Copy the rows written since the last ``pre_commit`` and set the marker to ``epoch``,
        in one transaction; the record is ``{"epoch": epoch}``."""
        if self._pick is None:
            raise StreamError(f"{self!r}: recover must be called before pre_commit")
        tried = False

        async def attempt(connection: asyncpg.Connection) -> None:
            nonlocal tried
            retry, tried = tried, True
            try:
                async with connection.transaction():
                    written = await self._marker(connection)
                    if written == epoch and retry:
                        return  # the last try committed, and its answer was lost with the connection
                    if written >= epoch:
                        raise CheckpointError(
                            f"{self!r}: the marker {self.name!r} says epoch {written} is written, and this "
                            f"run is at epoch {epoch}: another run of the job writes to the table; stop it"
                        )
                    if self._rows:
                        await self._copy(connection, self._rows)
                    await connection.execute(
                        f"UPDATE {quoted(self.markers)} SET written = $2 WHERE sink = $1", self.name, epoch
                    )
            except _UNENCODABLE as exc:
                raise TypeError(f"{self!r} cannot write {await self._culprit(connection)}: {exc}") from exc
            except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
                line = _COPY_LINE.match(exc.as_dict().get("context", ""))
                culprit = self._describe(self._rows[int(line[1]) - 1]) if line else "a row of the epoch"
                raise ValueError(f"{self!r} cannot write {culprit}: {exc}") from exc

        await self._link.call(f"writing epoch {epoch}", attempt)
        self._rows = []
        return {"epoch": epoch}

    async def commit(self, epoch: int) -> None:
        """Record in the marker that the checkpoint has committed ``epoch``."""
        statement = f"UPDATE {quoted(self.markers)} SET committed = $2 WHERE sink = $1"
        await self._link.call(
            f"marking epoch {epoch} committed",
            lambda connection: connection.execute(statement, self.name, epoch),
        )

    async def close(self) -> None:
        """Close the connection; rows not pre-committed are dropped, as a crash would drop them."""
        self._rows = []
        await self._link.close()

    async def _check_table(self, connection: asyncpg.Connection) -> None:
        """The table's columns (the sink's ``columns`` among them) and the marker table."""
        found = await connection.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            quoted(self.table),
        )
        names = [row["attname"] for row in found]
        if not names:
            raise ConnectorError(
                f"{self!r}: no table {self.table!r} in the database; create it with the columns "
                f"written and {EPOCH_COLUMN} bigint"
            )
        if EPOCH_COLUMN not in names:
            raise ConnectorError(
                f"{self!r}: the table has no {EPOCH_COLUMN} column, in which the sink tags each row with "
                f"its epoch; add it: ALTER TABLE {quoted(self.table)} ADD COLUMN {EPOCH_COLUMN} bigint"
            )
        columns = self.columns or [name for name in names if name != EPOCH_COLUMN]
        missing = [column for column in columns if column not in names]
        if missing:
            raise ConnectorError(f"{self!r}: the table has no column {', '.join(map(repr, missing))}")
        self.columns = columns
        self._index = {column: place for place, column in enumerate(columns)}
        if len(columns) == 1:  # itemgetter of one name gives the value, not a tuple of it
            (only,) = columns
            self._pick = lambda row: (row[only],)
        else:
            self._pick = itemgetter(*columns)
        # Another sink may make it at the same moment, which IF NOT EXISTS does not see: the
        # server then reports the table's row type or the table as existing, either way made.
        with contextlib.suppress(
            asyncpg.UniqueViolationError, asyncpg.DuplicateObjectError, asyncpg.DuplicateTableError
        ):
            await connection.execute(
                f"CREATE TABLE IF NOT EXISTS {quoted(self.markers)}"
                " (sink text PRIMARY KEY, written bigint NOT NULL, committed bigint NOT NULL)"
            )

    async def _marker(self, connection: asyncpg.Connection) -> int:
        """The epoch the marker says is written, its row locked until the transaction ends."""
        written: int | None = await connection.fetchval(
            f"SELECT written FROM {quoted(self.markers)} WHERE sink = $1 FOR UPDATE", self.name
        )
        if written is None:
            raise CheckpointError(f"{self!r}: the marker table has no row {self.name!r}: was it changed?")
        return written

    async def _recover(self, connection: asyncpg.Connection, kept: int | None) -> None:
        """In one transaction: the rows of epochs after ``kept`` deleted, the marker set to it."""
        table, markers = quoted(self.table), quoted(self.markers)
        async with connection.transaction():
            if kept is None:
                await connection.execute(
                    f"INSERT INTO {markers} (sink, written, committed) VALUES ($1, 0, 0)"
                    " ON CONFLICT (sink) DO UPDATE SET written = 0, committed = 0",
                    self.name,
                )
                await connection.execute(f"DELETE FROM {table} WHERE {EPOCH_COLUMN} IS NOT NULL")
                return
            written = await connection.fetchval(
                f"SELECT written FROM {markers} WHERE sink = $1 FOR UPDATE", self.name
            )
            if written is None or written < kept:
                raise CheckpointError(
                    f"{self!r}: the checkpoint has epoch {kept} written to the table, but the marker "
                    f"{self.name!r} says {'nothing' if written is None else f'epoch {written}'}: is this the "
                    "database the job wrote to? Point the sink at it, or reset the checkpoints"
                )
            if written > kept:  # written by a run that crashed before its checkpoint committed
                await connection.execute(f"DELETE FROM {table} WHERE {EPOCH_COLUMN} > $1", kept)
            await connection.execute(
                f"UPDATE {markers} SET written = $2, committed = $2 WHERE sink = $1", self.name, kept
            )

    async def _copy(self, connection: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
        """``COPY`` ``rows`` into the table (binary: the values go as the driver encodes them)."""
        assert self.columns is not None
        schema, _, table = self.table.rpartition(".")
        await connection.copy_records_to_table(
            table, records=rows, columns=[*self.columns, EPOCH_COLUMN], schema_name=schema or None
        )

    async def _culprit(self, connection: asyncpg.Connection) -> str:
        """The first row of the epoch the driver cannot encode, found by halves, each copied in
        a transaction rolled back at once (this is the error path: the epoch fails anyway)."""
        rows = self._rows
        while len(rows) > 1:
            half = rows[: len(rows) // 2]
            try:
                async with connection.transaction():
                    await self._copy(connection, half)
                    raise _Undo
            except _Undo:
                rows = rows[len(half) :]
            except _UNENCODABLE:
                rows = half
        return self._describe(rows[0])

    def _describe(self, row: tuple[Any, ...]) -> str:
        assert self.columns is not None
        values = dict(zip(self.columns, row, strict=False))
        return f"the row {reprlib.repr(values)} of epoch {row[-1]}"


class _Undo(Exception):
    """Rolls back a savepoint that only tried whether a ``COPY`` goes through."""
