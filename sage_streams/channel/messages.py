"""The messages a channel carries: batches of items, and control messages between them."""

from __future__ import annotations

from typing import Any, Final, TypeAlias

__all__ = ["ABORTED", "END", "Aborted", "Control", "EndOfStream", "Message", "Watermark"]


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


Message: TypeAlias = "list[Any] | Control"
