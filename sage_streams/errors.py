"""The exceptions sage_streams raises.

The tree, from the most general::

    Exception
    ├── TypeError                     an argument of the wrong type (builtin, raised as is)
    ├── ValueError                    an argument of the right type but a bad value (builtin)
    └── StreamError                   the call is right but the state is wrong: a running graph,
        │                             a closed stream, a name taken; or a broken stream
        ├── UnknownNameError          a name that names nothing: an unregistered function, an
        │                             unknown window, join or sync type, strategy or codec
        │                             (also a LookupError and a ValueError)
        ├── BrokenChannelError        a channel's receiving end is gone
        ├── BackpressureTimeout       a blocked producer waited longer than its timeout
        ├── SpillError                an item the ``buffer`` strategy's codec cannot spill or read back
        ├── NoDataError               reader.read() with nothing to read (also an IndexError)
        ├── CheckpointError           a checkpoint store refused, or failed, to open, commit or reset
        │   └── UnwritableValueError  a state value the checkpoint codec cannot write
        ├── ConnectorError            a connector cannot reach or use its system: a wrong URL or
        │                             credentials at start, a server gone past its retries
        └── PipelineError             a running graph stopped; ``__cause__`` is the first error
            ├── ErrorThresholdExceeded  too many errors inside the configured time window
            └── DrainTimeout          a graph cancelled after ``running(drain_timeout=...)``

Misuse is refused when the graph is built, in one family: ``TypeError`` for a wrong type,
``ValueError`` for a bad value, :class:`UnknownNameError` (``except LookupError`` catches it) for
a name that is not known, :class:`StreamError` for a call the graph's state does not allow.

User code raises its own exceptions; the runtime never swallows them. When one stops a graph,
``execute()`` raises :class:`PipelineError` chained to it, and the original exception carries a
note naming the operator and the item it failed on.

Every exception here survives ``pickle`` (to a process pool, a log shipper) with its type, its
message and its attributes.
"""

from __future__ import annotations

import reprlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any, Final

__all__ = [
    "SpillError",
    "BackpressureTimeout",
    "BrokenChannelError",
    "CheckpointError",
    "ConnectorError",
    "DrainTimeout",
    "ErrorThresholdExceeded",
    "NoDataError",
    "PipelineError",
    "StreamError",
    "UnknownNameError",
    "UnwritableValueError",
]


class StreamError(Exception):
    """Misuse of the streaming API, or a stream that can no longer be used."""


class UnknownNameError(StreamError, LookupError, ValueError):
    """A name that names nothing known: no function is registered under it, or it is not one of
    the modes a parameter takes (the message lists the valid ones).

    It is a :class:`LookupError`, as the registry is looked up by name, and a
    :class:`ValueError`, as a mode that is not one of a ``Literal``'s values is a bad value.
    """


class BrokenChannelError(StreamError):
    """Raised to a sender whose channel's receiving end has been closed."""


class NoDataError(StreamError, IndexError):
    """``reader.read()`` found nothing to read; check ``reader.has_data()`` first."""


class BackpressureTimeout(StreamError):
    """A producer blocked on a full channel for longer than the configured timeout."""


class PipelineError(StreamError):
    """A running graph stopped because of one or more errors.

    Attributes:
        errors: every error that stopped the graph, the first one first.
        operator: the name of the operator where the first error happened.
        item: the item that operator was processing, or ``None`` when there was none.
    """

    def __init__(
        self,
        message: str,
        errors: Sequence[BaseException] = (),
        *,
        operator: str | None = None,
        item: object = None,
    ) -> None:
        super().__init__(message)
        self.errors: list[BaseException] = list(errors)
        self.operator = operator
        self.item = item


class ErrorThresholdExceeded(PipelineError):
    """More errors than allowed happened inside the configured time window.

    Attributes:
        count: how many errors the window held when the graph stopped.
        max_errors: the threshold's ``max_errors``.
        time_window: the threshold's ``time_window``, in seconds.
    """

    count: int = 0
    max_errors: int = 0
    time_window: float = 0.0


class DrainTimeout(PipelineError):
    """A graph that had not drained ``drain_timeout`` seconds after its ``running()`` block
    exited, and was cancelled.

    Attributes:
        undelivered: the items still queued when it was cancelled, by channel name (a push
            stream's inbox is ``"<stream>.inbox"``, an edge ``"producer->consumer"``); only
            channels that held some are listed. Items inside an operator at that moment (one
            being processed by a slow sink, an open window) are not in it.
    """

    def __init__(self, message: str, undelivered: dict[str, int]) -> None:
        super().__init__(message)
        self.undelivered = dict(undelivered)

    @property
    def total(self) -> int:
        """How many items were undelivered in all."""
        return sum(self.undelivered.values())

    def __reduce__(self) -> tuple[type[DrainTimeout], tuple[str, dict[str, int]], dict[str, Any]]:
        """Pickle with every argument ``__init__`` needs (``args`` holds only the message)."""
        return type(self), (str(self), self.undelivered), self.__dict__


class _BoundedRepr(reprlib.Repr):
    """``reprlib``'s limits on sizes and depth, plus a limit on the parts rendered at all.

    Builtin containers, strings, bytes and ints (and subclasses that keep their repr) are cut
    before they are rendered, so the cost of a description does not grow with the item: a
    container shows its first parts in its own order (never sorted), and past ``maxlevel`` levels
    or ``budget`` parts the rest is ``...``. Other objects are rendered once by their own
    ``__repr__`` and cut; one that raises is described by its type and address. Make a new one
    for every description: it counts the parts it rendered.
    """

    def __init__(self, budget: int = 64) -> None:
        super().__init__()
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = 20
        self.maxdict = 20
        self.maxstring = self.maxother = 160
        self.maxlong = 60
        self.budget = budget

    def repr1(self, x: Any, level: int) -> str:
        if self.budget <= 0:
            return self.fillvalue
        self.budget -= 1
        for base, method in _BY_TYPE.items():
            if isinstance(x, base) and type(x).__repr__ is vars(base)["__repr__"]:
                return method(self, x, level)
        return self.repr_instance(x, level)

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        pairs = (f"{self.repr1(key, level - 1)}: {self.repr1(value, level - 1)}" for key, value in x.items())
        return "{" + self._first(pairs, len(x), self.maxdict, level) + "}" if x else "{}"

    def repr_set(self, x: set[Any], level: int) -> str:
        parts = (self.repr1(item, level - 1) for item in x)
        return "{" + self._first(parts, len(x), self.maxset, level) + "}" if x else "set()"

    def repr_frozenset(self, x: frozenset[Any], level: int) -> str:
        parts = (self.repr1(item, level - 1) for item in x)
        shown = self._first(parts, len(x), self.maxfrozenset, level)
        return "frozenset({" + shown + "})" if x else "frozenset()"

    def _first(self, parts: Iterator[str], count: int, most: int, level: int) -> str:
        """The first ``most`` of ``count`` parts, in iteration order (``reprlib`` sorts them,
        which costs as much as the whole container)."""
        if level <= 0:
            return self.fillvalue
        shown = list(islice(parts, most))
        return ", ".join([*shown, self.fillvalue] if count > most else shown)

    def repr_bytes(self, x: bytes | bytearray, level: int) -> str:
        text = repr(x[: self.maxstring])
        return text if len(x) <= self.maxstring else text + self.fillvalue

    def repr_int(self, x: int, level: int) -> str:
        # Past 4300 digits repr() refuses (by default), and its cost grows with the square of
        # the digits: a longer int is described by its size.
        if x.bit_length() > 10_000:
            return f"<int of {x.bit_length()} bits>"
        return super().repr_int(x, level)

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            text = repr(x)
        except Exception as exc:
            return f"<{type(x).__name__} object at {id(x):#x} (its repr raised {type(exc).__name__})>"
        return text if len(text) <= self.maxother else text[: self.maxother - 3] + self.fillvalue


_BY_TYPE: Final[dict[type, Callable[[_BoundedRepr, Any, int], str]]] = {
    list: _BoundedRepr.repr_list,
    tuple: _BoundedRepr.repr_tuple,
    dict: _BoundedRepr.repr_dict,
    set: _BoundedRepr.repr_set,
    frozenset: _BoundedRepr.repr_frozenset,
    deque: _BoundedRepr.repr_deque,
    str: _BoundedRepr.repr_str,
    bytes: _BoundedRepr.repr_bytes,
    bytearray: _BoundedRepr.repr_bytes,
    int: _BoundedRepr.repr_int,
}
"""The types whose repr is cut before it is rendered; bool, an int with a repr of its own,
is rendered as an instance."""


def _short_repr(value: object, limit: int = 200) -> str:
    """A description of ``value`` for messages: its ``repr``, at most ``limit`` characters.

    It costs the same for a 100 MB item as for a small one, never recurses deeper than a few
    levels (a deeply nested item is ``[[[[[[...]]]]]]``), and never raises: an item's bad
    ``__repr__`` must not break the error path that describes it. See :class:`_BoundedRepr`.
    """
    try:
        text = _BoundedRepr().repr(value)
    except Exception as exc:  # a container whose len() or iteration raises
        text = f"<{type(value).__name__} object at {id(value):#x} (its repr raised {type(exc).__name__})>"
    return _cut(text, limit)


def _error_text(error: BaseException, limit: int = 1000) -> str:
    """``Type: message`` of ``error`` for messages, its message cut to ``limit`` characters.

    Like :func:`_short_repr` it never raises: ``str(KeyError(item))`` is ``repr(item)``, which
    may recurse too deep or raise.
    """
    try:
        text = str(error)
    except Exception as exc:
        text = f"<its message raised {type(exc).__name__}>"
    return f"{type(error).__name__}: {_cut(text, limit)}"


def _cut(text: str, limit: int) -> str:
    """``text``, or its start and ``...`` in at most ``max(limit, 3)`` characters."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


class SpillError(StreamError):
    """An item could not be spilled: its codec cannot write it, or the copy it wrote would not
    load back as the same item; or, later, a spilled item could not be read back.

    When it spills, nothing of the batch is stored, so the sender may send it again without
    the bad item. When it is read back (a file damaged after it was written, a codec whose
    ``loads`` fails only sometimes), the receiver gets it in the item's place in the stream.

    Attributes:
        item: the item the codec refused; for an item that cannot be read back, its bytes.
        index: its position in the batch that was being spilled; ``None`` when read back.
    """

    def __init__(self, message: str, item: object, index: int | None) -> None:
        super().__init__(message)
        self.item = item
        self.index = index

    def __reduce__(self) -> tuple[type[SpillError], tuple[str, object, int | None], dict[str, Any]]:
        """Pickle with every argument ``__init__`` needs (``args`` holds only the message)."""
        return type(self), (str(self), self.item, self.index), self.__dict__


class CheckpointError(StreamError):
    """A checkpoint store could not be used: it belongs to another job, has a newer format or
    another codec, a commit failed (a full or read-only disk) or its epoch did not increase.

    The message says what to do (another path, or starting over with a reset); a failure of
    the store itself is chained as ``__cause__``. A failed commit leaves the store at the last
    epoch that committed.
    """


class ConnectorError(StreamError):
    """A connector could not reach or use the system it reads or writes.

    Raised at the start of a run for a wrong URL, refused credentials or a missing stream or
    table, and mid-run when a server stays away past the connector's retries (see
    :class:`~sage_streams.connectors.Backoff`). The message names the connector and what it
    tried; the client library's error is chained as ``__cause__``. Inside a run it stops the
    graph as the cause of a :class:`PipelineError` naming the source or sink.
    """


class UnwritableValueError(CheckpointError):
    """A state value holds something the checkpoint codec cannot write.

    The message names the place inside the value and its type (``value['a'][2]: Foo``); the
    checkpoint adds the operator and the key as notes.

    Attributes:
        path: where the unwritable part is, written as Python would reach it from ``value``.
        type: the qualified name of its type.
    """

    def __init__(self, message: str, path: str, type: str) -> None:
        super().__init__(message)
        self.path = path
        self.type = type

    def __reduce__(self) -> tuple[type[UnwritableValueError], tuple[str, str, str], dict[str, Any]]:
        """Pickle with every argument ``__init__`` needs (``args`` holds only the message)."""
        return type(self), (str(self), self.path, self.type), self.__dict__
