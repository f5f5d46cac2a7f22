"""The messages a channel carries: batches of items, and control messages between them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

if TYPE_CHECKING:
    from sage_streams.errors import SpillError

__all__ = [
    "ABORTED",
    "END",
    "Aborted",
    "Barrier",
    "Control",
    "EndOfStream",
    "Message",
    "Unreadable",
    "Watermark",
]


class Control:
    """Base of the messages that travel between batches (end of stream, watermarks)."""

    __slots__ = ()


class EndOfStream(Control):
    """The sender side has closed: nothing follows."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END: Final = EndOfStream()
"""The one end-of-stream message."""


class Aborted(Control):
    """A sender stopped because its operator failed: what came before is incomplete."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABORTED"


ABORTED: Final = Aborted()
"""Sent instead of :data:`END` by a sender whose producer failed or was cancelled."""


class Watermark(Control):
    """Event time has reached ``time`` on this stream: no item with an earlier timestamp follows
    (items that do are late). Operators downstream of a window see it in order with the data."""

    __slots__ = ("time",)

    def __init__(self, time: float) -> None:
        self.time = time

    def __repr__(self) -> str:
        return f"Watermark({self.time!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Watermark) and other.time == self.time

    def __hash__(self) -> int:
        return hash(("Watermark", self.time))


class Barrier(Control):
    """Checkpoint ``epoch`` has reached this point of the stream: what came before belongs to
    it, what follows to the next (Flink's checkpoint barrier). Sources inject it in band; an
    operator of several inputs holds each input whose barrier came until every open input's has,
    then snapshots its state and passes it on."""

    __slots__ = ("epoch",)

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def __repr__(self) -> str:
        return f"Barrier({self.epoch})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Barrier) and other.epoch == self.epoch

    def __hash__(self) -> int:
        return hash(("Barrier", self.epoch))


class Unreadable(Control):
    """An item a ``"buffer"`` channel spilled but could not read back, in the item's place.

    The item was checked to load back when it spilled, so this is rare (a file damaged since, a
    codec that fails now and then), and it must not stop the stream: the receiver puts
    ``error`` (a :class:`~sage_streams.errors.SpillError` whose ``item`` is the bytes) to its
    error policy, which may let the item go or read it again.
    """

    __slots__ = ("_read", "_reported", "error")

    def __init__(self, error: SpillError, read: Callable[[], Any]) -> None:
        self.error = error
        self._read = read
        self._reported = False

    def read(self) -> Any:
        """The item, read again; ``SpillError`` while it cannot be.

        The first call raises ``error`` without reading, so that the error policy decides
        before anything is tried again.
        """
        if not self._reported:
            self._reported = True
            raise self.error
        return self._read()

    def __repr__(self) -> str:
        return f"Unreadable({self.error})"


Message: TypeAlias = "list[Any] | Control"
