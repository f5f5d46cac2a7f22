"""The log of a durable push stream: each emitted item on disk before ``emit`` returns.

``env.create_stream(name, durable=True)`` makes a push stream whose ``await emit(item)`` returns
only once the item is committed to this log (one SQLite file per stream, WAL,
``synchronous = FULL``), and whose graph reads the log as a
:class:`~sage_streams.connectors.ReplayableSource`: its position is the sequence number of the
last item read, so a run restored from a checkpoint reads on from there, and no item emitted
before a crash is lost or read twice.

Writes are group-committed: one commit at a time is on its way, and every item emitted
meanwhile waits for the next, which takes them all, so many concurrent emitters share one
``fsync``. The log's commits, reads and trims run in order on one thread of its own
(``sage-log``), over one connection, never on the loop; a run reading the log takes what is
committed meanwhile from memory, not back from the file. The thread lives while the log is in
use (read by a run, or written) and ends when it is not: when the run stops reading, or after
the last commit of emits made outside a run. Nothing here is an asyncio task: a commit is a
future whose callback wakes its emitters and starts the next commit. A cancelled ``emit``
waits for the commit its item is in, which may have written it; a commit that fails fails
every emit waiting for it with a :class:`~sage_streams.CheckpointError`.

``close()`` writes an end mark after every item emitted before it; a log that has one ends its
stream, in this run and in every later one. Leaving ``env.running()`` only drains it: the run
ends once it has read what was committed, and the next run reads on. Once a checkpoint has
committed a position in the log, the items before it are never read again, and are deleted
(:meth:`IngestLog.trim`, called after each commit).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, Final, TypeVar

import anyio

from sage_streams.checkpoint import StateCodec
from sage_streams.checkpoint._worker import Worker
from sage_streams.connectors.base import Guarantee
from sage_streams.errors import CheckpointError, StreamError

__all__ = ["IngestLog"]

R = TypeVar("R")

_END: Final = object()
"""The entry of the pending list that asks for the end mark."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS items (seq INTEGER PRIMARY KEY, item BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ended (flag INTEGER NOT NULL)",
)

_ROWS: Final = 500
"""The most items one ``INSERT`` writes."""

_FRESH: Final = 10_000
"""The most committed items kept in memory for a reader that has not taken them yet."""


class IngestLog:
    """The durable log of one push stream (see the module docstring)."""

    guarantee: Guarantee = "exactly_once"

    def __init__(self, path: str | os.PathLike[str], codec: StateCodec) -> None:
        self.path = os.fspath(path)
        self.codec = codec
        self._pending: list[tuple[Any, asyncio.Future[None]]] = []
        self._committing = False
        """A commit is due (it starts in the next loop turn) or on its way."""
        self._pending_end: asyncio.Future[None] | None = None
        """Done when the commit of what is pending now has ended, written or not."""
        self._commits = 0
        self._ended = False
        self._draining = False
        self._reading = False
        self._trims = 0
        self._bell: asyncio.Event | None = None
        self._fresh: deque[tuple[int, list[bytes]]] = deque()
        """``(first sequence number, items)`` of each commit made while a run reads the log,
        which it takes from here instead of reading them back from the file."""
        self._fresh_items = 0
        self._known_end: int | None = None
        """The largest sequence number in the file, as this log knows it (``None``: unknown)."""
        self._end_known = False
        self._thread: _Thread | None = None
        self._stopping: list[_Thread] = []
        """Threads told to end from a loop callback, which a task joins later."""

    def __repr__(self) -> str:
        return f"IngestLog({self.path!r})"

    @property
    def closed(self) -> bool:
        return self._ended

    @property
    def commits(self) -> int:
        """How many commits this log object has made: emits divided by this are the emits that
        shared each ``fsync``."""
        return self._commits

    async def append(self, item: Any) -> None:
        """Write ``item``; returns once it is committed.

        Raises:
            StreamError: the stream is closed.
            UnwritableValueError: the codec cannot write the item.
            CheckpointError: the commit failed.
        """
        if self._ended:
            raise StreamError(f"cannot emit into the durable stream of {self.path!r}: it is closed")
        await self._commit(self.codec.dumps(item))

    async def end(self) -> None:
        """Write the end mark, after every item emitted before."""
        if not self._ended:
            self._ended = True
            await self._commit(_END)
            await self._release()

    def drain(self) -> None:
        """End this run's stream once it has read what is committed, writing no end mark: the
        log goes on in the next run (``env.running()`` left, the service stopping)."""
        self._draining = True
        if self._bell is not None:
            self._bell.set()

    async def _commit(self, entry: Any) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._pending_end is None:
            self._pending_end = loop.create_future()
        end = self._pending_end
        self._pending.append((entry, future))
        if not self._committing:
            self._committing = True
            loop.call_soon(self._next)
        try:
            await future
        except asyncio.CancelledError:
            # A failing run cancels the emits it stops (and goes on cancelling each await in
            # its cancel scope). The commit goes on; waiting for its end lets the last emit
            # join the thread, which nothing else might do.
            with anyio.CancelScope(shield=True):
                await asyncio.wait({end})
            await self._release()
            raise

    def _next(self) -> None:
        """Commit everything pending, on the log's thread.

        It runs a loop turn after the first emit came, or after the commit before it ended:
        the emitters that commit woke have run by then, each emitting its next item, so this
        commit takes them all instead of the first alone (the others then waiting for one
        more)."""
        batch, end = self._pending, self._pending_end
        self._pending, self._pending_end = [], None
        assert end is not None
        done = self._use().submit(_write, [entry for entry, _ in batch])
        done.add_done_callback(partial(self._written, batch, end))

    def _written(
        self,
        batch: list[tuple[Any, asyncio.Future[None]]],
        end: asyncio.Future[None],
        done: asyncio.Future[int],
    ) -> None:
        error = done.exception()
        if error is None:
            self._commits += 1
            self._keep([entry for entry, _ in batch], done.result())
        for _, future in batch:
            if future.done():
                continue  # its emit was cancelled
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(_failed("append to", self.path, error))
        if self._bell is not None:
            self._bell.set()
        loop = asyncio.get_running_loop()
        if self._pending:
            loop.call_soon(self._next)
        else:
            self._committing = False
            loop.call_soon(self._rest)
        end.set_result(None)

    def _keep(self, entries: list[Any], last: int) -> None:
        """Note what a commit wrote: its items for the reader, the file's end, the end mark."""
        items = [entry for entry in entries if entry is not _END]
        if items:
            self._known_end = last
            if self._reading:
                self._fresh.append((last - len(items) + 1, items))
                self._fresh_items += len(items)
                if self._fresh_items > _FRESH:  # the reader lags: it reads them from the file
                    self._fresh.clear()
                    self._fresh_items = 0
        if len(items) < len(entries):
            self._end_known = True

    def _take(self, after: int, size: int) -> list[bytes]:
        """Up to ``size`` items following sequence number ``after`` from the commits kept for
        the reader, stopping at a gap (items only the file holds)."""
        taken: list[bytes] = []
        while self._fresh and len(taken) < size:
            first, items = self._fresh[0]
            start = after + len(taken) + 1 - first
            if start < 0:
                break
            part = items[start : start + size - len(taken)]
            taken += part
            if start + len(part) >= len(items):
                self._fresh.popleft()
                self._fresh_items -= len(items)
        return taken

    def _rest(self) -> None:
        """End the log's thread if, a loop turn after the last commit, nothing uses it: the
        emitters it woke have emitted again by then, if they do."""
        if not self._reading and not self._committing and not self._trims:
            self._stop()

    async def trim(self, position: Any) -> None:
        """Delete the items before ``position``, which a checkpoint has committed. The item at
        it stays, so that the largest sequence number never falls and none is given twice
        (SQLite numbers a new row after the largest one there)."""
        if position is None:
            return
        self._trims += 1
        try:
            await self._use().call(_delete, int(position))
        except sqlite3.Error as exc:
            raise _failed("trim", self.path, exc) from exc
        finally:
            self._trims -= 1
            await self._release()

    async def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        """The items after sequence number ``position`` (``None``: all), as they are committed,
        until the end mark.

        What this log commits while it is read comes from memory; the file is read for the
        rest (what earlier runs or emits wrote, what a lagging reader let go) until the reader
        reaches its end."""
        after = 0 if position is None else int(position)
        self._bell = bell = asyncio.Event()
        loads = self.codec.loads
        self._reading = True
        try:
            while True:
                bell.clear()  # before looking: a commit meanwhile rings again
                items = self._take(after, size)
                last = after + len(items)
                if not items and (self._known_end is None or after < self._known_end):
                    items, last = await self._read(after, size)
                if items:
                    after = last
                    yield [loads(data) for data in items], after
                elif self._end_known:
                    self._ended = True
                    return
                elif self._draining and not self._committing:
                    self._draining = False  # the next run reads on
                    return
                else:
                    await bell.wait()
        finally:
            self._reading = False
            self._fresh.clear()
            self._fresh_items = 0
            await self._release()

    async def _read(self, after: int, size: int) -> tuple[list[bytes], int]:
        """Up to ``size`` items after sequence number ``after`` from the file, and the sequence
        number of the last; what it finds of the file's end and the end mark is noted."""
        try:
            rows, ended = await self._use().call(_read, after, size)
        except sqlite3.Error as exc:
            raise _failed("read", self.path, exc) from exc
        last = rows[-1][0] if rows else after
        if len(rows) < size:  # the file's end, unless a commit meanwhile moved it on
            self._known_end = max(last, self._known_end or 0)
        self._end_known = self._end_known or ended
        return [data for _, data in rows], last

    def _use(self) -> _Thread:
        """The log's thread, started again if it had ended."""
        if self._thread is None:
            self._thread = _Thread(self.path, repr(self))
        return self._thread

    def _stop(self) -> None:
        """End the log's thread without waiting (from a loop callback); :meth:`_release` joins it."""
        if self._thread is not None:
            self._thread.close_nowait()
            self._stopping.append(self._thread)
            self._thread = None

    async def _release(self) -> None:
        """End and join the log's thread if nothing uses it now: no reader, commit or trim."""
        if self._reading or self._committing or self._trims:
            return
        self._stop()
        stopping, self._stopping = self._stopping, []
        with anyio.CancelScope(shield=True):  # a cancelled task still joins what it ends
            for thread in stopping:
                await thread.close()


class _Thread:
    """One run of the log's thread, and its one connection, made there by the first job."""

    def __init__(self, path: str, owner: str) -> None:
        self._path = path
        self._worker = Worker("sage-log", owner, CheckpointError)
        self._db: sqlite3.Connection | None = None
        """Used on the thread only."""

    def submit(self, job: Callable[..., R], *args: object) -> asyncio.Future[R]:
        """``job(connection, *args)`` on the thread."""
        return self._worker.submit(self._run, job, *args)

    async def call(self, job: Callable[..., R], *args: object) -> R:
        return await self.submit(job, *args)

    def close_nowait(self) -> None:
        self._worker.close_nowait(self._disconnect)

    async def close(self) -> None:
        await self._worker.close(self._disconnect)

    # What follows runs on the thread.

    def _run(self, job: Callable[..., R], *args: object) -> R:
        if self._db is None:
            self._db = _connect(self._path)
        return job(self._db, *args)

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _connect(path: str) -> sqlite3.Connection:
    """A connection that commits only when told (``BEGIN``/``COMMIT`` here), each commit
    durable (WAL, ``synchronous = FULL``); the tables made if they are not there."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = FULL")
        # Copy the WAL into the file every 100 pages (not 1,000): the WAL then starts over
        # sooner, and a commit that overwrites its blocks syncs faster than one that grows it
        # (~20% more emits/s in benchmarks/durable.py).
        db.execute("PRAGMA wal_autocheckpoint = 100")
        # Switching a file to WAL needs it to itself: only when it is not WAL yet.
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        for statement in _SCHEMA:
            db.execute(statement)
    except BaseException:
        db.close()
        raise
    return db


def _write(db: sqlite3.Connection, entries: list[Any]) -> int:
    """Commit ``entries``; return the sequence number of the last item. The items are numbered
    one after the other: each row is numbered after the largest one there, and the
    transaction holds the file's write lock."""
    items = [entry for entry in entries if entry is not _END]
    last = 0
    db.execute("BEGIN IMMEDIATE")
    try:
        # Many rows per statement, so that the thread takes the GIL back once per statement,
        # not once per row (``executemany``); and ``lastrowid`` is set, which it is not.
        for start in range(0, len(items), _ROWS):
            rows = items[start : start + _ROWS]
            values = ", ".join(["(?)"] * len(rows))
            last = db.execute(f"INSERT INTO items (item) VALUES {values}", rows).lastrowid or 0
        if len(items) < len(entries):
            db.execute("INSERT INTO ended (flag) VALUES (1)")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return last


def _delete(db: sqlite3.Connection, upto: int) -> None:
    db.execute("DELETE FROM items WHERE seq < ?", (upto,))


def _read(db: sqlite3.Connection, after: int, size: int) -> tuple[list[tuple[int, bytes]], bool]:
    query = "SELECT seq, item FROM items WHERE seq > ? ORDER BY seq LIMIT ?"
    rows = db.execute(query, (after, size)).fetchall()
    ended = db.execute("SELECT count(*) FROM ended").fetchone()[0] > 0
    return rows, ended


def _failed(what: str, path: str, error: BaseException) -> CheckpointError:
    """The error of a log that could not ``what`` its file, chained to the cause."""
    failure = CheckpointError(f"cannot {what} the durable stream log {path!r}: {error}")
    failure.__cause__ = error
    return failure
