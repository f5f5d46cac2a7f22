"""Files: JSON Lines and CSV sources a restored run reads again from a byte offset, and a JSON
Lines sink truncated to its committed length.

A source reads one file or a glob of files (in sorted order); its position after a batch is
``[file_index, byte_offset]``, the offset of the next record in the ``file_index``-th file, so
a restored run goes on exactly where the committed epoch ended. Files are read as UTF-8 from a
thread (:func:`asyncio.to_thread`), one open per batch, so no file stays open between batches.
The files must not change between runs, except by new files that sort after those read.

A record that cannot be read (a line that is not JSON, a CSV row that does not parse or has
more or fewer fields than the header, bytes that are not UTF-8) is a :class:`ValueError`
naming the file and the line the record starts on, the parser's error chained: bad data ends
the read rather than being skipped, so a replay never differs from the first read.

:class:`JsonLinesSink` appends one line per item; ``pre_commit`` flushes and fsyncs and gives
the file's length; ``recover`` truncates the file to the last committed length, so the replay
writes the lost epochs again, once.

Example::

    env.create_stream("orders", source=JsonLinesSource("orders/*.jsonl")).sink(JsonLinesSink("out.jsonl"))
"""

from __future__ import annotations

import asyncio
import csv
import glob
import json
import os
import reprlib
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any, BinaryIO, TypeAlias

from sage_streams._typing import check_positive_int
from sage_streams.checkpoint._worker import Worker
from sage_streams.connectors.base import Guarantee
from sage_streams.errors import CheckpointError, StreamError

__all__ = ["CsvSource", "JsonLinesSink", "JsonLinesSource"]


_Read: TypeAlias = tuple[list[Any], int, int]
"""What one read of a batch gives: its items, and the file index and offset after the last."""


def _paths(pattern: str) -> list[str]:
    """The files of ``pattern``: a glob's matches in sorted order, or the one path given (which
    must exist: a missing file is a :class:`FileNotFoundError`, not an empty stream)."""
    if any(char in pattern for char in "*?["):
        return sorted(glob.glob(pattern))
    if not os.path.isfile(pattern):
        raise FileNotFoundError(f"no file {pattern!r}")
    return [pattern]


def _start(position: Any, paths: list[str], owner: str) -> tuple[int, int]:
    """``(file_index, offset)`` of a position a batch gave (``None``: the start)."""
    if position is None:
        return 0, 0
    match position:
        case [int() as index, int() as offset] if 0 <= index < len(paths) and offset >= 0:
            if offset > os.path.getsize(paths[index]):
                raise ValueError(
                    f"{owner}: position {position!r} is beyond the end of {paths[index]!r}; has it changed?"
                )
            return index, offset
    raise ValueError(
        f"{owner}: {position!r} is not a position it gave, [file_index, byte_offset] in {len(paths)} files"
    )


def _line_number(path: str, offset: int) -> int:
    """The number (from 1) of the line that starts at ``offset``; read only for an error."""
    with open(path, "rb") as file:
        return file.read(offset).count(b"\n") + 1


def _bad(path: str, offset: int, what: str, exc: Exception) -> ValueError:
    """The error of a record that cannot be read, naming its file and line."""
    return ValueError(f"{path!r}, line {_line_number(path, offset)}: {what}: {exc}")


async def _batches(
    source: JsonLinesSource | CsvSource,
    position: Any,
    size: int,
    read: Callable[[list[str], int, int, int], _Read],
) -> AsyncIterator[tuple[list[Any], Any]]:
    """The batches of ``source`` from ``position`` on, each ``read(paths, index, offset, size)``
    on a thread, until one reads nothing."""
    check_positive_int("size", size)
    paths = await asyncio.to_thread(_paths, source.path)
    index, offset = await asyncio.to_thread(_start, position, paths, repr(source))  # a stat
    while True:
        items, index, offset = await asyncio.to_thread(read, paths, index, offset, size)
        if not items:
            return
        yield items, [index, offset]


class JsonLinesSource:
    """Reads one JSON value per line (:func:`json.loads`) from a file or a glob of files.

    Lines holding only whitespace are skipped; a last line without a newline is read, as the
    file is taken to be finished. Replayable: see the module docstring for the positions.

    Args:
        path_or_glob: a file, or a glob (``"logs/*.jsonl"``) whose matches are read in sorted
            order; a glob that matches nothing is an empty stream.
    """

    guarantee: Guarantee = "exactly_once"

    def __init__(self, path_or_glob: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path_or_glob)

    def __repr__(self) -> str:
        return f"JsonLinesSource({self.path!r})"

    def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        """See :meth:`~sage_streams.connectors.base.ReplayableSource.batches`."""
        return _batches(self, position, size, self._read)

    @staticmethod
    def _read(paths: list[str], index: int, offset: int, size: int) -> _Read:
        """Up to ``size`` values from ``(index, offset)`` on, and the position after the last
        (in its file, even at the file's end: the next file is opened by the next read)."""
        items: list[Any] = []
        end = index, offset
        while index < len(paths):
            with open(paths[index], "rb") as file:
                file.seek(offset)
                while len(items) < size and (line := file.readline()):
                    if line.strip():
                        try:
                            items.append(json.loads(line))
                        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                            raise _bad(paths[index], offset, "not a JSON value", exc) from exc
                        end = index, offset + len(line)
                    offset += len(line)
            if len(items) == size:
                break
            index, offset = index + 1, 0
        return items, *end


class CsvSource:
    """Reads the rows of a CSV file or a glob of files (:mod:`csv`), as dicts or lists.

    With ``header``, each file's first row names the fields and each later row is a dict of
    them; a row with more or fewer fields is an error (see the module docstring). Without it,
    each row is a list of strings. Empty lines are skipped, as :class:`csv.DictReader` does.
    Rows are parsed strictly (``strict=True``): a stray quote, or a quote still open at the end
    of the file (a file cut short), is an error rather than a guess. A quoted field may hold
    newlines: positions are always at a row's boundary. Resuming in a file reads its header
    again from its first line, so the rows keep their field names.

    Args:
        path_or_glob: a file, or a glob whose matches are read in sorted order.
        header: whether each file's first row holds the field names.
        delimiter: the one-character field separator.
    """

    guarantee: Guarantee = "exactly_once"

    def __init__(
        self, path_or_glob: str | os.PathLike[str], *, header: bool = True, delimiter: str = ","
    ) -> None:
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise ValueError(f"delimiter must be one character, got {delimiter!r}")
        self.path = os.fspath(path_or_glob)
        self.header = header
        self.delimiter = delimiter

    def __repr__(self) -> str:
        return f"CsvSource({self.path!r})"

    def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        """See :meth:`~sage_streams.connectors.base.ReplayableSource.batches`."""
        headers: dict[int, tuple[list[str] | None, int]] = {}  # read once per file and run
        return _batches(self, position, size, partial(self._read, headers=headers))

    def _read(
        self,
        paths: list[str],
        index: int,
        offset: int,
        size: int,
        *,
        headers: dict[int, tuple[list[str] | None, int]],
    ) -> _Read:
        """Up to ``size`` rows from ``(index, offset)`` on, and the position after the last."""
        items: list[Any] = []
        last = index, offset
        while index < len(paths):
            path = paths[index]
            with open(path, "rb") as file:
                names = None
                if self.header:
                    if index not in headers:
                        headers[index] = self._header(path, file)
                    names, after = headers[index]
                    offset = max(offset, after)
                for row, start, end in self._rows(path, file, offset):
                    if names is not None and len(row) != len(names):
                        error = ValueError(f"{len(row)} fields, the header has {len(names)}")
                        raise _bad(path, start, "a row that does not fit the header", error)
                    items.append(row if names is None else dict(zip(names, row, strict=True)))
                    if len(items) == size:
                        return items, index, end
                    last = index, end
            index, offset = index + 1, 0
        return items, *last

    def _header(self, path: str, file: BinaryIO) -> tuple[list[str] | None, int]:
        """The field names of the file's first row (``None``: an empty file) and the offset
        after it."""
        for row, start, end in self._rows(path, file, 0):
            if len(set(row)) != len(row):
                raise _bad(path, start, "a header that names a field twice", ValueError(row))
            return row, end
        return None, 0

    def _rows(self, path: str, file: BinaryIO, offset: int) -> Iterator[tuple[list[str], int, int]]:
        """The rows that are not empty from ``offset`` on, each with its start and end offsets.

        :func:`csv.reader` takes one line at a time from ``lines``, and only as many as the
        row needs (more than one for a quoted newline), so the offset after the last line it
        took is the row's end.
        """
        end = offset

        def lines() -> Iterator[str]:
            nonlocal end
            for line in iter(file.readline, b""):
                end += len(line)
                yield line.decode("utf-8")

        file.seek(offset)
        rows = csv.reader(lines(), delimiter=self.delimiter, strict=True)
        start = offset
        while True:
            try:
                row = next(rows, None)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise _bad(path, start, "not a CSV row", exc) from exc
            if row is None:
                return
            if row:
                yield row, start, end
            start = end


class JsonLinesSink:
    """Appends one JSON line per item (:func:`json.dumps`, ``ensure_ascii=False``) to a file.

    Exactly once with checkpoints: ``pre_commit`` flushes and fsyncs the file and gives its
    length as the record; ``recover`` truncates the file to the last committed length (to
    nothing, creating the file, if no epoch committed), so what a crashed run wrote after it is
    dropped and the replay writes it again. ``commit`` has nothing to do: the bytes are in
    place. An item :mod:`json` cannot write is a :class:`TypeError` (or :class:`ValueError`, as
    :func:`json.dumps` raised) naming it, and nothing of its batch is written. The file is
    written from a thread of the sink's own (``sage-sink``), joined by :meth:`close`.

    Args:
        path: the file.
    """

    guarantee: Guarantee = "exactly_once"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: BinaryIO | None = None
        self._worker = Worker("sage-sink", repr(self))

    def __repr__(self) -> str:
        return f"JsonLinesSink({self.path!r})"

    async def recover(self, epoch: int | None, record: Any) -> None:
        """See :meth:`~sage_streams.connectors.base.TransactionalSink.recover`; ``record`` is
        the length ``pre_commit`` gave."""
        if epoch is None:
            record = 0
        elif isinstance(record, bool) or not isinstance(record, int) or record < 0:
            raise ValueError(f"{self!r}: the record of epoch {epoch} must be a file length, got {record!r}")
        await self._worker.call(self._truncate, record)

    async def write(self, batch: list[Any], epoch: int) -> None:
        """See :meth:`~sage_streams.connectors.base.TransactionalSink.write`."""
        await self._worker.call(self._append, batch)

    async def pre_commit(self, epoch: int) -> int:
        """See :meth:`~sage_streams.connectors.base.TransactionalSink.pre_commit`; the record
        is the file's length."""
        return await self._worker.call(self._sync)

    async def commit(self, epoch: int) -> None:
        """Nothing: the epoch's bytes are already in the file."""

    async def close(self) -> None:
        """Close the file and join the sink's thread; calling it again does nothing."""
        await self._worker.close(self._close)

    def _opened(self) -> BinaryIO:
        if self._file is None:
            raise StreamError(f"{self!r}: recover must be called before the first write")
        return self._file

    def _truncate(self, length: int) -> None:
        if self._file is None:
            created = not os.path.exists(self.path)
            self._file = open(self.path, "a+b")  # noqa: SIM115 (kept open until close)
            if created:  # the new file's name is durable too, not only its bytes
                directory = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
        size = os.fstat(self._file.fileno()).st_size
        if size < length:
            raise CheckpointError(
                f"{self!r} holds {size} bytes, fewer than the {length} committed: the file was"
                " changed outside the job; restore it, or reset the checkpoints"
            )
        self._file.truncate(length)

    def _append(self, batch: list[Any]) -> None:
        file = self._opened()
        lines = []
        for index, item in enumerate(batch):
            try:
                lines.append(json.dumps(item, ensure_ascii=False).encode() + b"\n")
            except (TypeError, ValueError, RecursionError) as exc:
                kind = TypeError if isinstance(exc, TypeError) else ValueError
                raise kind(
                    f"{self!r} cannot write item {index} of its batch, {reprlib.repr(item)}: {exc}"
                ) from exc
        file.write(b"".join(lines))

    def _sync(self) -> int:
        file = self._opened()
        file.flush()
        os.fsync(file.fileno())
        return os.fstat(file.fileno()).st_size

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
