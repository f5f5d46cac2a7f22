"""Checkpoint stores: where the last committed epoch of a job is kept, and read back on restart.

A store holds one job's last committed epoch: each operator's state entries (key and value as
the codec wrote them), each source's position and each sink's pre-commit record, all bytes.
:meth:`CheckpointStore.commit` writes one epoch in one transaction, with only the entries that
changed since the last one, so its cost follows what changed, not the size of the state; after
a crash, :meth:`CheckpointStore.open` gives back exactly the last epoch that committed, never a
part of a later one.

:class:`SqliteStore` is the embedded store: one SQLite file (stdlib :mod:`sqlite3`, WAL),
written from a thread of its own so that a commit never holds up the event loop. Any object with
the same methods is a store too (:class:`CheckpointStore`).

Example::

    store = SqliteStore("job.checkpoints")
    last = await store.open("orders", "sage/1")       # None: a new store
    await store.commit(1, {"sum": {b"k": b"3"}}, {"orders": b"10"}, {})
    await store.commit(2, {"sum": {b"k": None}}, {"orders": b"20"}, {})  # b"k" deleted
    await store.close()
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Protocol, TypeAlias, TypeVar

from sage_streams.checkpoint._worker import Worker
from sage_streams.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointStore",
    "Named",
    "SqliteStore",
    "StateChanges",
    "TransactionWriter",
]

R = TypeVar("R")

StateChanges: TypeAlias = Mapping[str, Mapping[bytes, bytes | None]]
"""What one commit changes in the state: operator name -> entry key -> the new value, or
``None`` for an entry deleted."""

Named: TypeAlias = Mapping[str, bytes]
"""Source positions or sink records, by source or sink name."""

TransactionWriter: TypeAlias = Callable[[sqlite3.Connection, int], None]
"""Work done in each commit's transaction, on the store's thread: ``writer(connection, epoch)``."""

FORMAT_VERSION: Final = 1
"""The layout of a :class:`SqliteStore` file; a file of a newer one is refused, not guessed at."""


@dataclass(frozen=True)
class Checkpoint:
    """One committed epoch, as a store gives it back.

    Attributes:
        epoch: the epoch's number.
        states: operator name -> entry key -> the entry's value, as the codec wrote them.
        positions: source name -> its position.
        sinks: sink name -> its pre-commit record.
    """

    epoch: int
    states: dict[str, dict[bytes, bytes]]
    positions: dict[str, bytes]
    sinks: dict[str, bytes]


class CheckpointStore(Protocol):
    """What the runtime needs of a checkpoint store; :class:`SqliteStore` is the embedded one.

    A store holds one job. The runtime calls :meth:`open` once, then :meth:`commit` once per
    epoch, one call at a time, and :meth:`close` at the end, whatever ended the run.
    """

    @property
    def committed_epoch(self) -> int | None:
        """The last epoch committed, or ``None`` while there is none."""
        ...

    async def open(self, job: str, codec: str) -> Checkpoint | None:
        """The last committed epoch of ``job``, or ``None`` for a store with none.

        ``codec`` is the label of the codec the state is written with (``"sage/1"``, see
        :func:`~sage_streams.checkpoint.codec.codec_label`). A new store records the job and
        the codec; a store of another job, of a newer format or written with another codec is
        refused with a :class:`~sage_streams.errors.CheckpointError` saying what to do.
        """
        ...

    async def commit(self, epoch: int, states: StateChanges, positions: Named, sinks: Named) -> None:
        """Commit ``epoch`` in one transaction: all of it, or (on an error) none of it.

        ``states`` holds only the entries that changed since the last commit, by operator; a
        value ``None`` deletes the entry. A position or record replaces that of the same name;
        those not given stay. ``epoch`` must be larger than the last committed one. A failure
        is a :class:`~sage_streams.errors.CheckpointError` naming the epoch, the store's own
        error chained, and the store keeps the last epoch that committed. A commit whose caller
        is cancelled may still commit, or not: :attr:`committed_epoch` says which.
        """
        ...

    async def reset(self) -> None:
        """Drop everything the store holds, so that the job starts over at its next run."""
        ...

    async def close(self) -> None:
        """Release what the store holds (files, connections, threads); calling it again does
        nothing."""
        ...


_SCHEMA: Final = (
    "CREATE TABLE meta (job TEXT NOT NULL, format INTEGER NOT NULL, codec TEXT NOT NULL)",
    "CREATE TABLE epochs (epoch INTEGER PRIMARY KEY, committed_at REAL NOT NULL)",
    "CREATE TABLE state (operator TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
    " PRIMARY KEY (operator, key)) WITHOUT ROWID",
    "CREATE TABLE positions (source TEXT PRIMARY KEY, position BLOB NOT NULL)",
    "CREATE TABLE sinks (sink TEXT PRIMARY KEY, record BLOB NOT NULL)",
)
"""A new store's tables. ``meta`` is one row, and its ``format`` column stays in every format,
so that any version can tell which format a file has; ``epochs`` holds the last committed."""

_PRAGMAS: Final = (
    "PRAGMA journal_mode = WAL",
    # In WAL mode, NORMAL already survives a killed process (a commit is in the WAL, which the
    # OS keeps), but not a power loss or an OS crash, which may lose the last commits. A sink
    # told "epoch 7 committed" may already have published epoch 7's output, so losing that
    # epoch would emit it twice: FULL syncs the WAL at each commit, one fsync per epoch.
    "PRAGMA synchronous = FULL",
)


class SqliteStore:
    """A checkpoint store in one SQLite file, written from one thread of its own.

    The connection is made, used and closed on one worker thread (a
    :class:`~concurrent.futures.ThreadPoolExecutor` of one), which runs the calls in the order
    they were made: the event loop only waits for their results. The file is in WAL mode with
    ``synchronous = FULL``, so a committed epoch survives a killed process and a power loss.
    The mappings given to :meth:`commit` are read on that thread: do not change them until it
    returns.

    Args:
        path: the file; it is created at the first :meth:`open`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._worker = Worker("sage-checkpoint", repr(self), CheckpointError)
        # Used on the worker thread only, after the loop hands the calls over in order.
        self._db: sqlite3.Connection | None = None
        self._meta: tuple[str, str] | None = None  # (job, codec) once open
        self._committed: int | None = None
        self._writers: list[TransactionWriter] = []

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    @property
    def committed_epoch(self) -> int | None:
        """The last epoch committed, or ``None`` while there is none."""
        return self._committed

    async def open(self, job: str, codec: str) -> Checkpoint | None:
        """See :meth:`CheckpointStore.open`."""
        if self._meta is not None:
            raise CheckpointError(f"{self!r} is open already")
        try:
            return await self._call(self._open, job, codec)
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot open the checkpoint store {self.path!r}: {exc}") from exc

    def add_writer(self, writer: TransactionWriter) -> None:
        """Run ``writer(connection, epoch)`` in every later commit's transaction, after the
        state is written: what it writes commits with the epoch, or not at all (a sink's rows
        in the store's own file, see :class:`~sage_streams.connectors.sqlite.SqliteSink`). An
        error it raises fails the commit, as the store's own would."""
        self._writers.append(writer)

    async def commit(self, epoch: int, states: StateChanges, positions: Named, sinks: Named) -> None:
        """See :meth:`CheckpointStore.commit`."""
        if type(epoch) is not int:
            raise TypeError(f"an epoch is an int, got {epoch!r}")
        if self._meta is None:
            raise CheckpointError(f"cannot commit epoch {epoch}: open {self!r} first")
        try:
            await self._call(self._commit, epoch, states, positions, sinks)
        except (sqlite3.Error, OSError) as exc:
            kept = "no epoch" if self._committed is None else f"epoch {self._committed}"
            raise CheckpointError(
                f"cannot commit epoch {epoch} to the checkpoint store {self.path!r}: {exc}; "
                f"the store keeps {kept}"
            ) from exc

    async def reset(self) -> None:
        """See :meth:`CheckpointStore.reset`. It works on a store :meth:`open` refused, too
        (another job's, a newer format, another codec), and on one that is open, which then
        holds no epoch."""
        try:
            await self._call(self._reset)
        except sqlite3.Error as exc:
            raise CheckpointError(f"cannot reset the checkpoint store {self.path!r}: {exc}") from exc

    async def close(self) -> None:
        """See :meth:`CheckpointStore.close`."""
        await self._worker.close(self._disconnect)

    async def _call(self, function: Callable[..., R], *args: object) -> R:
        """``function(*args)`` on the store's thread, started on the first call."""
        return await self._worker.call(function, *args)

    # What follows runs on the store's thread.

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            # Autocommit: every transaction is begun and ended here, explicitly.
            db = sqlite3.connect(self.path, isolation_level=None)
            try:
                for pragma in _PRAGMAS:
                    db.execute(pragma)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _tables(self) -> dict[str, str]:
        """Name -> type (``table`` or ``view``) of what the file holds."""
        rows = self._connection().execute(
            "SELECT name, type FROM sqlite_schema"
            " WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
        )
        return dict(rows.fetchall())

    def _open(self, job: str, codec: str) -> Checkpoint | None:
        db = self._connection()
        tables = self._tables()
        if not tables:
            with _transaction(db):
                self._create(db, job, codec)
        elif "meta" not in tables:
            raise CheckpointError(
                f"{self.path!r} is not a checkpoint store (it holds {', '.join(sorted(tables))}): "
                "give the job's checkpoints a path of their own"
            )
        else:
            self._check(db, job, codec)
        self._meta = (job, codec)
        return self._read(db)

    @staticmethod
    def _create(db: sqlite3.Connection, job: str, codec: str) -> None:
        """Make a new store's tables, for ``job`` written with ``codec``."""
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute("INSERT INTO meta VALUES (?, ?, ?)", (job, FORMAT_VERSION, codec))

    def _check(self, db: sqlite3.Connection, job: str, codec: str) -> None:
        """Refuse a store this job cannot use, saying what to do instead."""
        (version,) = db.execute("SELECT format FROM meta").fetchone()
        start_over = "or call env.reset_checkpoints() (store.reset()) to drop its checkpoints and start over"
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"the checkpoint store {self.path!r} has format version {version}, and this "
                f"version of sage_streams reads version {FORMAT_VERSION}: run it with the "
                f"sage_streams that wrote it, give this job another path, {start_over}"
            )
        (stored_job, stored_codec) = db.execute("SELECT job, codec FROM meta").fetchone()
        if stored_job != job:
            raise CheckpointError(
                f"the checkpoint store {self.path!r} belongs to job {stored_job!r}, not {job!r}: "
                f"give this job another path, {start_over}"
            )
        if stored_codec != codec:
            raise CheckpointError(
                f"the checkpoint store {self.path!r} was written with codec {stored_codec!r}, not "
                f"{codec!r}: run job {job!r} with that codec, {start_over}"
            )

    def _read(self, db: sqlite3.Connection) -> Checkpoint | None:
        row = db.execute("SELECT max(epoch) FROM epochs").fetchone()
        self._committed = row[0]
        if self._committed is None:
            return None
        # One query per operator, each row put in its dict by dict() itself: no Python code
        # runs per entry, which is what a restore of a million keys costs.
        operators = [name for (name,) in db.execute("SELECT DISTINCT operator FROM state")]
        states = {
            name: dict(db.execute("SELECT key, value FROM state WHERE operator = ?", (name,)))
            for name in operators
        }
        positions = dict(db.execute("SELECT source, position FROM positions").fetchall())
        sinks = dict(db.execute("SELECT sink, record FROM sinks").fetchall())
        return Checkpoint(self._committed, states, positions, sinks)

    def _commit(self, epoch: int, states: StateChanges, positions: Named, sinks: Named) -> None:
        # Checked here, not on the loop: this thread runs the commits one after the other, so
        # it is the one that knows which epoch is the last.
        if self._committed is not None and epoch <= self._committed:
            raise CheckpointError(
                f"cannot commit epoch {epoch}: epochs must increase, and epoch {self._committed} "
                f"is committed in {self.path!r}"
            )
        db = self._connection()
        with _transaction(db):
            for operator, entries in states.items():
                db.executemany(
                    "INSERT OR REPLACE INTO state VALUES (?, ?, ?)",
                    ((operator, key, value) for key, value in entries.items() if value is not None),
                )
                db.executemany(
                    "DELETE FROM state WHERE operator = ? AND key = ?",
                    ((operator, key) for key, value in entries.items() if value is None),
                )
            db.executemany("INSERT OR REPLACE INTO positions VALUES (?, ?)", positions.items())
            db.executemany("INSERT OR REPLACE INTO sinks VALUES (?, ?)", sinks.items())
            db.execute("DELETE FROM epochs")
            db.execute("INSERT INTO epochs VALUES (?, ?)", (epoch, time.time()))
            for writer in self._writers:
                writer(db, epoch)
        self._committed = epoch

    def _reset(self) -> None:
        db = self._connection()
        tables = self._tables()
        if tables and "meta" not in tables:
            raise CheckpointError(
                f"will not reset {self.path!r}: it is not a checkpoint store "
                f"(it holds {', '.join(sorted(tables))})"
            )
        with _transaction(db):
            for name, kind in tables.items():
                db.execute(f'DROP {kind.upper()} "{name.replace(chr(34), chr(34) * 2)}"')
            if self._meta is not None:
                self._create(db, *self._meta)
        self._committed = None

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction around a block: committed at its end, rolled back if it raises
    (unless SQLite rolled it back itself, as it may on a full disk)."""
    db.execute("BEGIN IMMEDIATE")  # takes the write lock now: a busy file fails here, not half-way
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
