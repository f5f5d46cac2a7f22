"""A SQLite sink whose rows carry their epoch, so a restored run deletes what a crash left after
the last committed one; or, in the checkpoint store's own file, whose rows commit in the same
transaction as their epoch.

Example::

    stream.sink(SqliteSink("out.db", "totals"))  # {"key": "a", "sum": 3} -> a row (key, sum, _epoch)
    stream.sink(SqliteSink("job.checkpoints", "totals"))  # the store's file: one transaction
"""

from __future__ import annotations

import os
import reprlib
import sqlite3
import threading
from collections.abc import Mapping
from itertools import groupby
from typing import Any, Final

from sage_streams.checkpoint import SqliteStore
from sage_streams.checkpoint._worker import Worker
from sage_streams.connectors.base import Guarantee
from sage_streams.errors import CheckpointError, StreamError

__all__ = ["SqliteSink"]

_UNBINDABLE: Final = (sqlite3.ProgrammingError, sqlite3.InterfaceError, OverflowError)
"""What :mod:`sqlite3` raises for a value it cannot bind."""

EPOCH_COLUMN: Final = "_epoch"
"""The column each row's epoch is written in; an item cannot have a key of this name."""


def _quoted(name: str) -> str:
    """``name`` as an SQL identifier: any name can be a table or a column."""
    return '"' + name.replace('"', '""') + '"'


class SqliteSink:
    """Writes dict items as rows of one table of a SQLite file, each tagged with its epoch.

    A dict's keys are the row's columns. The table is created at the first write, with the
    first row's keys as columns (no declared type: SQLite keeps each value's own) and an
    ``_epoch INTEGER`` column; a later row with a key the table lacks adds it (``ALTER TABLE
    ADD COLUMN``: the rows before hold ``NULL`` there), and a row without a column holds
    ``NULL`` in it. Values are those :mod:`sqlite3` binds: ``None``, ``int``, ``float``,
    ``str``, ``bytes``.

    An epoch's rows are inserted in one open transaction, which ``pre_commit`` commits (WAL,
    ``synchronous = FULL``: durable when it returns); ``recover(E, ...)`` deletes the rows of
    epochs after ``E``, which a crash left committed here but not in the checkpoint store, and
    ``recover(None, None)`` deletes every row of the table, as no epoch of the job committed.
    A table that exists without an ``_epoch`` column is refused, not emptied. ``commit`` has
    nothing to do. A batch with an item that is not a dict, or that SQLite cannot bind, is a
    :class:`TypeError` naming the item, and none of the batch is written. The connection is
    made, used and closed on a thread of the sink's own (``sage-sink``), joined by :meth:`close`.

    The open transaction holds the file's write lock from an epoch's first write to its
    ``pre_commit``: give the sink a file no other writer uses, or the checkpoint store's own.
    In the store's file (a :class:`~sage_streams.checkpoint.SqliteStore` of the same path), the
    sink holds an epoch's rows in memory and the store writes them in its commit of that epoch:
    output and checkpoint commit as one, with one ``fsync``, and a crash leaves no row of an
    epoch that did not commit. There a value must be ``None``, an ``int`` of 64 bits, a
    ``float``, a ``str`` or ``bytes`` (checked at the write, so that a bad item is an error of
    its batch, not of the commit), and ``env.reset_checkpoints()`` drops the table with the rest.

    Args:
        path: the SQLite file; created at :meth:`recover` if it does not exist.
        table: the table's name.
    """

    guarantee: Guarantee = "exactly_once"

    def __init__(self, path: str | os.PathLike[str], table: str) -> None:
        if not isinstance(table, str) or not table:
            raise ValueError(f"table must be a non-empty string, got {table!r}")
        self.path = os.fspath(path)
        self.table = table
        self._db: sqlite3.Connection | None = None
        self._columns: list[str] | None = None  # None: no table yet
        self._worker = Worker("sage-sink", repr(self))
        self._shared = False
        self._pending: list[tuple[list[Any], int]] = []  # shared: this epoch's batches
        self._sealed: list[tuple[list[Any], int]] = []  # shared: batches pre-committed, for the store
        self._sealed_lock = threading.Lock()  # the loop seals, the store's thread takes

    def __repr__(self) -> str:
        return f"SqliteSink({self.path!r}, {self.table!r})"

    def share_store(self, store: object) -> bool:
        """See :class:`~sage_streams.connectors.base.StoreSharing`: yes, with a
        :class:`~sage_streams.checkpoint.SqliteStore` of this sink's file."""
        if not isinstance(store, SqliteStore) or os.path.realpath(store.path) != os.path.realpath(self.path):
            return False
        store.add_writer(self._write_sealed)
        self._shared = True
        return True

    async def recover(self, epoch: int | None, record: Any) -> None:
        """See :meth:`~sage_streams.connectors.base.TransactionalSink.recover`; ``record`` is
        the one ``pre_commit`` gave, ``{"epoch": e}``: ``e`` is ``epoch``, or an earlier one for a
        sink whose input ended before the job's last epoch (its last record stays in every later
        checkpoint), which then keeps its rows up to ``e``."""
        if epoch is not None:
            match record:
                case {"epoch": int() as last} if len(record) == 1 and 0 <= last <= epoch:
                    epoch = last
                case _:
                    raise ValueError(
                        f"{self!r}: the record of epoch {epoch} must be {{'epoch': e}} with e <= {epoch}, "
                        f"got {record!r}"
                    )
        await self._worker.call(self._recover, epoch)
        if self._shared:
            await self._worker.close(self._close)  # the store's connection writes from now on

    async def write(self, batch: list[Any], epoch: int) -> None:
        """See :meth:`~sage_streams.connectors.base.TransactionalSink.write`."""
        if not self._shared:
            await self._worker.call(self._insert, batch, epoch)
            return
        for index, item in enumerate(batch):
            self._check(index, item)
            self._check_values(index, item)
        self._pending.append((list(batch), epoch))

    async def pre_commit(self, epoch: int) -> dict[str, int]:
        """Commit the open transaction (in the store's file: hand the epoch's rows to the
        store's next commit); the record is ``{"epoch": epoch}``."""
        if self._shared:
            with self._sealed_lock:
                self._sealed += self._pending
            self._pending = []
        else:
            await self._worker.call(self._commit)
        return {"epoch": epoch}

    async def commit(self, epoch: int) -> None:
        """Nothing: the epoch's rows committed at ``pre_commit``."""

    async def close(self) -> None:
        """Close the connection (rows not yet pre-committed are rolled back, as a crash would
        lose them) and join the sink's thread; calling it again does nothing."""
        await self._worker.close(self._close)

    def _recover(self, epoch: int | None) -> None:
        if self._db is None:
            # Transactions are begun and ended here, not by the sqlite3 module.
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
        columns = [row[1] for row in self._db.execute(f"PRAGMA table_info({_quoted(self.table)})")]
        if not columns:
            return
        if EPOCH_COLUMN not in columns:
            raise CheckpointError(
                f"{self!r}: the table exists without an {EPOCH_COLUMN} column, so it was not written"
                " by a SqliteSink; name another table"
            )
        self._columns = [column for column in columns if column != EPOCH_COLUMN]
        where = "" if epoch is None else f" WHERE {EPOCH_COLUMN} > ?"
        self._db.execute(f"DELETE FROM {_quoted(self.table)}{where}", () if epoch is None else (epoch,))

    def _insert(self, batch: list[Any], epoch: int) -> None:
        if self._db is None:
            raise StreamError(f"{self!r}: recover must be called before the first write")
        for index, item in enumerate(batch):
            self._check(index, item)
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")  # the write lock now: a busy file fails here
        self._insert_batch(self._db, batch, epoch)

    def _write_sealed(self, db: sqlite3.Connection, epoch: int) -> None:
        """In the store's commit of ``epoch``, on its thread: the rows sealed for it and before."""
        with self._sealed_lock:
            taken = [(batch, of) for batch, of in self._sealed if of <= epoch]
            self._sealed = [(batch, of) for batch, of in self._sealed if of > epoch]
        for batch, of in taken:
            self._insert_batch(db, batch, of)

    def _insert_batch(self, db: sqlite3.Connection, batch: list[Any], epoch: int) -> None:
        """Insert ``batch``'s rows in ``db``'s open transaction: all of them, or none."""
        columns = None if self._columns is None else list(self._columns)
        # A savepoint per batch: a row SQLite refuses undoes the batch, not the epoch's others.
        db.execute("SAVEPOINT batch")
        try:
            # Consecutive rows of the same keys share one statement and one executemany.
            for keys, run in groupby(enumerate(batch), key=lambda pair: tuple(pair[1])):
                self._insert_run(db, keys, list(run), epoch)
        except BaseException:
            if db.in_transaction:  # unless SQLite rolled it all back, as on a full disk
                db.execute("ROLLBACK TO batch")
                db.execute("RELEASE batch")
            self._columns = columns  # the batch's CREATE and ALTER are undone too
            raise
        db.execute("RELEASE batch")

    def _check(self, index: int, item: Any) -> None:
        if not isinstance(item, Mapping):
            raise TypeError(f"{self!r} writes dicts, item {index} of its batch is {reprlib.repr(item)}")
        for key in item:
            if not isinstance(key, str):
                raise TypeError(f"{self!r}: item {index} of its batch has a key {key!r} that is not a str")
            if key == EPOCH_COLUMN:
                raise ValueError(
                    f"{self!r}: item {index} of its batch has the key {EPOCH_COLUMN}, the sink's own"
                )

    def _check_values(self, index: int, item: Mapping[str, Any]) -> None:
        """Refuse a value the store's commit could not bind, before it gets there."""
        for key, value in item.items():
            kind = type(value)
            if value is None or kind is float or kind is str or kind is bytes or kind is bool:
                continue
            if kind is int and -(2**63) <= value < 2**63:
                continue
            raise TypeError(
                f"{self!r} cannot write item {index} of its batch, {reprlib.repr(item)}: the value of "
                f"{key!r} is {reprlib.repr(value)}; in the checkpoint store's file a value is None, "
                "an int of 64 bits, a float, a str or bytes"
            )

    def _insert_run(
        self,
        db: sqlite3.Connection,
        keys: tuple[str, ...],
        run: list[tuple[int, Mapping[str, Any]]],
        epoch: int,
    ) -> None:
        """Insert the rows of ``run`` (each with its index in the batch), which all have ``keys``."""
        table = _quoted(self.table)
        if self._columns is None:
            self._columns = list(keys)
            declared = [*map(_quoted, self._columns), f"{EPOCH_COLUMN} INTEGER"]
            db.execute(f"CREATE TABLE {table} ({', '.join(declared)})")
        for key in keys:
            if key not in self._columns:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {_quoted(key)}")
                self._columns.append(key)
        names = ", ".join([*map(_quoted, keys), EPOCH_COLUMN])
        statement = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * (len(keys) + 1))})"
        try:
            db.executemany(statement, [(*item.values(), epoch) for _, item in run])
        except _UNBINDABLE:
            # Which item it was: the batch is rolled back, whatever these inserts leave.
            for index, item in run:
                try:
                    db.execute(statement, (*item.values(), epoch))
                except _UNBINDABLE as exc:
                    raise TypeError(
                        f"{self!r} cannot write item {index} of its batch, {reprlib.repr(item)}: {exc}"
                    ) from exc
            raise

    def _commit(self) -> None:
        if self._db is None:
            raise StreamError(f"{self!r}: recover must be called before pre_commit")
        if self._db.in_transaction:
            self._db.execute("COMMIT")

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
