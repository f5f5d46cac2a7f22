"""The log of a durable push stream: each emitted item on disk before ``emit`` returns.

``env.create_stream(name, durable=True)`` makes a push stream whose ``await emit(item)`` returns
only once the item is committed to this log (one SQLite file per stream, WAL,
``synchronous = FULL``), and whose graph reads the log as a
:class:`~sage_streams.connectors.ReplayableSource`: its position is the sequence number of the
last item read, so a run restored from a checkpoint reads on from there, and no item emitted
before a crash is lost or read twice.

Writes are group-committed: while one commit is on its way (on a worker thread, never on the
loop), the items emitted meanwhile wait for the next, which takes them all, so many concurrent
emitters share one ``fsync``. Nothing here is an asyncio task: a commit is an executor future
whose callback wakes its emitters and starts the next commit. An ``emit`` cancelled while its
commit runs may still have written its item. ``close()`` writes an end mark after every item
emitted before it; a log that has one ends its stream, in this run and in every later one.
Leaving ``env.running()`` only drains it: the run ends once it has read what was committed, and
the next run reads on.
Once a checkpoint has committed a position in the log, the items before it are never read
again, and are deleted (:meth:`IngestLog.trim`, called after each commit).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, Final

from sage_streams.checkpoint import StateCodec
from sage_streams.connectors.base import Guarantee
from sage_streams.errors import StreamError

__all__ = ["IngestLog"]

_END: Final = object()
"""The entry of the pending list that asks for the end mark."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS items (seq INTEGER PRIMARY KEY, item BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ended (flag INTEGER NOT NULL)",
)
"""Made once per log object, by one thread (a commit and a read may open it at once); WAL mode
stays with the file. Each connection then only sets ``synchronous = FULL``."""


class IngestLog:
    """The durable log of one push stream (see the module docstring)."""

    guarantee: Guarantee = "exactly_once"

    def __init__(self, path: str | os.PathLike[str], codec: StateCodec) -> None:
        self.path = os.fspath(path)
        self.codec = codec
        self._pending: list[tuple[Any, asyncio.Future[None]]] = []
        self._committing = False
        self._ended = False
        self._draining = False
        self._bell: asyncio.Event | None = None
        self._made = False
        self._making = threading.Lock()

    def __repr__(self) -> str:
        return f"IngestLog({self.path!r})"

    @property
    def closed(self) -> bool:
        return self._ended

    async def append(self, item: Any) -> None:
        """Write ``item``; returns once it is committed.

        Raises:
            StreamError: the stream is closed.
            UnwritableValueError: the codec cannot write the item.
        """
        if self._ended:
            raise StreamError(f"cannot emit into the durable stream of {self.path!r}: it is closed")
        await self._commit(self.codec.dumps(item))

    async def end(self) -> None:
        """Write the end mark, after every item emitted before."""
        if not self._ended:
            self._ended = True
            await self._commit(_END)

    def drain(self) -> None:
        """End this run's stream once it has read what is committed, writing no end mark: the
        log goes on in the next run (``env.running()`` left, the service stopping)."""
        self._draining = True
        if self._bell is not None:
            self._bell.set()

    async def _commit(self, entry: Any) -> None:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        if not self._committing:
            self._start()
        await future

    def _start(self) -> None:
        """Commit everything pending, on a worker thread."""
        batch, self._pending = self._pending, []
        self._committing = True
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(None, self._write, [entry for entry, _ in batch])
        done.add_done_callback(partial(self._written, batch))

    def _written(self, batch: list[tuple[Any, asyncio.Future[None]]], done: asyncio.Future[None]) -> None:
        self._committing = False
        error = None if done.cancelled() else done.exception()
        for _, future in batch:
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
        if self._bell is not None:
            self._bell.set()
        if self._pending:
            self._start()

    def _write(self, entries: list[Any]) -> None:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO items (item) VALUES (?)", [(e,) for e in entries if e is not _END])
            if any(entry is _END for entry in entries):
                db.execute("INSERT INTO ended (flag) VALUES (1)")
            db.execute("COMMIT")
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous = FULL")
            if not self._made:
                with self._making:
                    if not self._made:
                        # Switching a file to WAL needs it to itself: only when it is not WAL yet.
                        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                            db.execute("PRAGMA journal_mode = WAL")
                        for statement in _SCHEMA:
                            db.execute(statement)
                        self._made = True
        except BaseException:
            db.close()
            raise
        return db

    async def trim(self, position: Any) -> None:
        """Delete the items before ``position``, which a checkpoint has committed. The item at
        it stays, so that the largest sequence number never falls and none is given twice
        (SQLite numbers a new row after the largest one there)."""
        if position is not None:
            await asyncio.to_thread(self._delete, int(position))

    def _delete(self, upto: int) -> None:
        db = self._connect()
        try:
            db.execute("DELETE FROM items WHERE seq < ?", (upto,))
        finally:
            db.close()

    def _read(self, after: int, size: int) -> tuple[list[tuple[int, bytes]], bool]:
        db = self._connect()
        try:
            rows = db.execute(
                "SELECT seq, item FROM items WHERE seq > ? ORDER BY seq LIMIT ?", (after, size)
            ).fetchall()
            ended = db.execute("SELECT count(*) FROM ended").fetchone()[0] > 0
        finally:
            db.close()
        return rows, ended

    async def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        """The items after sequence number ``position`` (``None``: all), as they are committed,
        until the end mark."""
        after = 0 if position is None else int(position)
        self._bell = bell = asyncio.Event()
        loads = self.codec.loads
        while True:
            bell.clear()  # before looking: a commit meanwhile rings again
            rows, ended = await asyncio.to_thread(self._read, after, size)
            if rows:
                after = rows[-1][0]
                yield [loads(data) for _, data in rows], after
            elif ended:
                self._ended = True
                return
            elif self._draining and not self._pending and not self._committing:
                self._draining = False  # the next run reads on
                return
            else:
                await bell.wait()
