"""The overflow store: an on-disk FIFO holding what does not fit in a ``"buffer"`` channel.

A channel with the ``"buffer"`` strategy never makes its producer wait: what does not fit in
memory is spilled here, and moved back as the receiver makes room. Items are serialized by a
:class:`Codec` (pickle by default, or json, or your own) and kept in SQLite, in a temporary file
created on the first spill and deleted on :meth:`OverflowStore.close` (or, for a store never
closed, when it is garbage-collected or the interpreter exits). Control messages (end of stream,
watermarks) wait in memory at their place between the items: they are few and small, and the
singletons among them must come back as the same objects.

The SQLite calls are synchronous and run on the event loop thread. That is deliberate: the file
is local and throwaway, so there is no journal and no ``fsync``, and each call moves a whole
batch (one ``executemany`` in one transaction to spill, one range query to read back), so it
costs microseconds per item. A hop to a worker thread per batch would cost more than it hides.

Example::

    store = OverflowStore("numbers", "json")
    store.append([1, 2, 3])
    store.append_control(mark)  # any object, kept as it is
    store.take(10)              # [1, 2, 3]
    store.take_control()        # mark, the same object
    store.close()               # the file is gone
"""

from __future__ import annotations

import json
import math
import os
import pickle
import sqlite3
import tempfile
import weakref
from collections import deque
from contextlib import suppress
from typing import Any, Final, Literal, Protocol, TypeAlias, get_args

from sage_streams._typing import check_choice
from sage_streams.errors import SpillError, _error_text, _short_repr

__all__ = ["CODECS", "Codec", "CodecName", "OverflowStore", "resolve_codec", "same_value"]


class Codec(Protocol):
    """Turns items into bytes and back, for the overflow store.

    ``loads(dumps(item))`` must give back ``item``; spilled items come back as such copies, not
    as the objects that were sent. The store checks it as each item spills, so that results
    never depend on which items happened to spill: the copy must load, and be the same as the
    item (see :func:`same_value`), else the item is a :class:`SpillError`. A codec whose copies
    are faithful by construction may say so with a true ``exact`` attribute: then the store
    only checks that they load. The pickle codec does (below); json and your own codecs are
    compared unless they say so.
    """

    name: str

    def dumps(self, item: Any) -> bytes:
        """The bytes of ``item``; raises if it cannot be serialized."""
        ...

    def loads(self, data: bytes) -> Any:
        """The item ``data`` was made from."""
        ...


class _PickleCodec:
    """Any picklable object, at the highest pickle protocol.

    Its copies are exact: pickle rebuilds an object of the same type from its own state, the
    protocol ``copy.deepcopy`` uses too. Comparing them would be wrong, not just slow: an
    object without ``__eq__`` equals only itself, NaN not even that, and some types do not
    answer ``==`` with a bool. So a spilled item is only checked to load back (a ``__reduce__``
    whose loader raises, an item too deep to load, are refused as they spill).
    """

    name = "pickle"
    exact = True

    def dumps(self, item: Any) -> bytes:
        return pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


class _JsonCodec:
    """JSON values as UTF-8.

    What would not come back the same (a tuple comes back a list, an int dict key a string, an
    ``IntEnum`` an int) is refused as it spills.
    """

    name = "json"

    def dumps(self, item: Any) -> bytes:
        return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


CodecName: TypeAlias = Literal["pickle", "json"]
"""The built-in codecs."""

CODECS: Final[dict[str, Codec]] = {"pickle": _PickleCodec(), "json": _JsonCodec()}


def resolve_codec(codec: str | Codec) -> Codec:
    """The codec named ``codec``, or ``codec`` itself if it has ``dumps`` and ``loads``.

    An unknown name is a ``ValueError`` listing the built-in ones.
    """
    if isinstance(codec, str):
        check_choice(codec, get_args(CodecName), "overflow codec")
        return CODECS[codec]
    if not (callable(getattr(codec, "dumps", None)) and callable(getattr(codec, "loads", None))):
        raise TypeError(f"a codec needs dumps() and loads() methods, got {_short_repr(codec)}")
    return codec


_PRAGMAS: Final = (
    # A throwaway file read by one connection: no journal, no fsync, no locking per transaction.
    "PRAGMA journal_mode = OFF",
    "PRAGMA synchronous = OFF",
    "PRAGMA locking_mode = EXCLUSIVE",
)


class OverflowStore:
    """A FIFO of items, spilled to a temporary SQLite file, with control messages in between.

    Items are numbered in the order they were appended; a control message remembers how many
    items came before it, so it comes back at exactly that place. :meth:`take` stops before a
    control message, which :meth:`take_control` then hands back.
    """

    def __init__(self, name: str, codec: str | Codec = "pickle") -> None:
        self.name = name
        self.codec = resolve_codec(codec)
        self._db: sqlite3.Connection | None = None
        self._path: str | None = None
        self._remove: weakref.finalize[Any, OverflowStore] | None = None
        self._appended = 0  # items ever appended: the number of the next one
        self._taken = 0  # items taken: the number of the oldest one held
        self._controls: deque[tuple[int, Any]] = deque()  # (items before it, message)
        self._unreadable: SpillError | None = None  # the error of the oldest item, when known
        self._closed = False

    def __len__(self) -> int:
        """Items held now (control messages are not counted)."""
        return self._appended - self._taken

    @property
    def spilled(self) -> int:
        """Items ever appended."""
        return self._appended

    @property
    def empty(self) -> bool:
        """Whether nothing is held, neither items nor control messages."""
        return self._appended == self._taken and not self._controls

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def path(self) -> str | None:
        """The temporary file, or ``None`` before the first append and after :meth:`close`."""
        return self._path

    def append(self, items: list[Any], *, start: int = 0) -> None:
        """Append ``items[start:]``, in order.

        The whole batch is serialized, and each copy checked (see :class:`Codec`), before
        anything is stored, so when the codec refuses an item nothing is appended and
        :class:`SpillError` says which item, by its index in ``items``.
        """
        self._check_open()
        first = self._appended - start
        rows = [(first + index, self._dump(items[index], index)) for index in range(start, len(items))]
        if not rows:
            return
        db = self._db or self._open()
        with db:
            db.executemany("INSERT INTO overflow (seq, data) VALUES (?, ?)", rows)
        self._appended += len(rows)

    def append_control(self, message: Any) -> None:
        """Append a control message after the items appended so far; it is kept as it is."""
        self._check_open()
        self._controls.append((self._appended, message))

    def take(self, max_items: int) -> list[Any]:
        """Remove and return up to ``max_items`` of the oldest items.

        It returns fewer when fewer are held, or when a control message comes first: none
        when the oldest message is one (see :meth:`take_control`). It stops before an item the
        codec cannot read back; when that item is the oldest, it is removed and raised as a
        :class:`SpillError` whose ``item`` is its bytes (:meth:`read_back` tries them again).
        """
        end = self._appended
        if self._controls:
            end = min(end, self._controls[0][0])
        end = min(end, self._taken + max_items)
        if end <= self._taken:
            return []
        db = self._db
        assert db is not None  # items were appended
        if self._unreadable is not None:  # found by the last take, right after what it returned
            failure, self._unreadable = self._unreadable, None
            self._delete_to(db, self._taken + 1)
            raise failure
        rows = db.execute(
            "SELECT data FROM overflow WHERE seq >= ? AND seq < ? ORDER BY seq", (self._taken, end)
        ).fetchall()
        items: list[Any] = []
        for (data,) in rows:
            try:
                items.append(self.read_back(data))
            except SpillError as failure:
                if not items:
                    self._delete_to(db, self._taken + 1)
                    raise
                self._unreadable = failure  # raised by the next take, without reading it again
                break
        self._delete_to(db, self._taken + len(items))
        return items

    def _delete_to(self, db: sqlite3.Connection, end: int) -> None:
        """Remove the items before number ``end``: they have been taken."""
        with db:
            db.execute("DELETE FROM overflow WHERE seq < ?", (end,))
        self._taken = end

    def read_back(self, data: bytes) -> Any:
        """The item that was written as ``data``; :class:`SpillError` if the codec cannot read it."""
        try:
            return self.codec.loads(data)
        except Exception as exc:
            raise SpillError(
                f"cannot read back an item spilled by channel {self.name!r} with codec "
                f"{self._codec_name()!r}: {_error_text(exc)}",
                data,
                None,
            ) from exc

    def take_control(self) -> Any:
        """Remove and return the control message that comes before any item, else ``None``."""
        if self._controls and self._controls[0][0] == self._taken:
            return self._controls.popleft()[1]
        return None

    def close(self) -> None:
        """Discard what is held and delete the file. Closing again does nothing."""
        self._closed = True
        self._taken = self._appended
        self._controls.clear()
        self._unreadable = None
        if self._remove is not None:
            self._remove()
        self._db = self._path = None

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"the overflow store of channel {self.name!r} is closed")

    def _dump(self, item: Any, index: int) -> bytes:
        """The bytes of ``item``, checked to load back as ``item`` (see :class:`Codec`)."""
        codec = self.codec
        try:
            data = codec.dumps(item)
        except Exception as exc:
            raise self._spill_error(item, index, _error_text(exc)) from exc
        try:
            copy = codec.loads(data)
        except Exception as exc:
            raise self._spill_error(item, index, f"it would not load back: {_error_text(exc)}") from exc
        if getattr(codec, "exact", False):
            return data
        try:
            same = same_value(item, copy)
        except Exception as exc:  # an __eq__ that raises, an item too deep to compare
            raise self._spill_error(item, index, f"it cannot be compared: {_error_text(exc)}") from exc
        if not same:
            why = f"it would come back as {_short_repr(copy)}, which is not the same"
            raise self._spill_error(item, index, why)
        return data

    def _spill_error(self, item: object, index: int, why: str) -> SpillError:
        return SpillError(
            f"cannot spill item {_short_repr(item)} of channel {self.name!r} with codec "
            f"{self._codec_name()!r}: {why}",
            item,
            index,
        )

    def _codec_name(self) -> str:
        return str(getattr(self.codec, "name", type(self.codec).__name__))

    def _open(self) -> sqlite3.Connection:
        """Create the temporary file, set up to be deleted however this store ends."""
        fd, path = tempfile.mkstemp(prefix="sage_streams-overflow-", suffix=".sqlite3")
        os.close(fd)
        db: sqlite3.Connection | None = None
        try:
            # Any thread may run the finalizer that closes it, so SQLite must allow that.
            db = sqlite3.connect(path, check_same_thread=False)
            for pragma in _PRAGMAS:
                db.execute(pragma)
            db.execute("CREATE TABLE overflow (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        except BaseException:
            _delete(db, path)
            raise
        self._db, self._path = db, path
        self._remove = weakref.finalize(self, _delete, db, path)
        return db


def same_value(sent: Any, back: Any) -> bool:
    """Whether ``back`` is ``sent`` again, as far as a stream can tell: equal, and of the same
    type all the way down.

    ``==`` alone is not enough: a tuple equals no list, but ``1 == 1.0 == True`` and an
    ``IntEnum`` equals its int. So lists, tuples and dicts are compared part by part (dict keys
    too, and in order, as iteration shows it), each part of exactly the same type; floats
    also by sign, with NaN the same as NaN; anything else by ``==``. Deeper than the recursion
    limit allows, it raises ``RecursionError``.
    """
    kind = type(sent)
    if type(back) is not kind:
        return False
    if kind is list or kind is tuple:
        return len(sent) == len(back) and all(map(same_value, sent, back))
    if kind is dict:
        return len(sent) == len(back) and all(
            same_value(key, key_back) and same_value(value, value_back)
            for (key, value), (key_back, value_back) in zip(sent.items(), back.items(), strict=True)
        )
    if kind is float:
        return (sent == back and math.copysign(1.0, sent) == math.copysign(1.0, back)) or (
            sent != sent and back != back
        )
    return bool(sent == back)


def _delete(db: sqlite3.Connection | None, path: str) -> None:
    """Close the connection and remove its file (it lives on only while it is open)."""
    try:
        if db is not None:
            db.close()
    finally:
        with suppress(FileNotFoundError):
            os.remove(path)
