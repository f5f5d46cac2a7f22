"""Readers: the caller's end of a stream read with ``collect()`` or ``async for``.

A reader gets the stream's batches through a channel of its own, so it is a consumer like any
other: while it is not read, its channel fills and holds the whole graph back. A reader that
will never be read must therefore let go of its channel (*detach*): then what it would have got
is discarded, as for any consumer that went away. That happens when its iteration ends, however
it ends, when it is dropped unread, and when its ``collect()`` is cancelled or closed before it
first ran (which a plain coroutine could not notice: its body, ``finally`` included, never runs).
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from typing import Any, Literal

from sage_streams._typing import T
from sage_streams.channel import ABORTED, END, Receiver

__all__ = ["LiveCollect", "Outcome", "Reader"]

Outcome = Literal["ended", "aborted", "left"]
"""How a reading ended: the stream ended, its producer failed, or the reader left early."""


class Reader:
    """Reads one stream through ``receiver``: ``begin()`` runs when the reading starts (it may
    start the run that feeds the channel), ``finish(outcome)`` once it is over (it raises the
    run's error after ``"aborted"``)."""

    __slots__ = ("_begin", "_finish", "receiver")

    def __init__(
        self,
        receiver: Receiver,
        finish: Callable[[Outcome], Awaitable[None]],
        begin: Callable[[], None] | None = None,
    ) -> None:
        self.receiver = receiver
        self._finish = finish
        self._begin = begin

    async def items(self) -> AsyncIterator[Any]:
        """The stream's items until it ends; control messages (watermarks) carry none."""
        if self._begin is not None:
            self._begin()
        outcome: Outcome = "left"
        try:
            while True:
                message = await self.receiver.receive()
                if type(message) is list:
                    for item in message:
                        yield item
                elif message is END:
                    outcome = "ended"
                    break
                elif message is ABORTED:
                    outcome = "aborted"
                    break
        finally:
            self.receiver.close()
            await self._finish(outcome)

    async def collect(self) -> list[Any]:
        """Every item until the stream ends."""
        return [item async for item in self.items()]

    def detach(self) -> None:
        """Stop taking the stream's batches: its producer discards them from now on."""
        self.receiver.close()

    def __del__(self) -> None:
        # Dropped unread (an async iterator never iterated): nobody will read the channel.
        self.receiver.close()


class LiveCollect(Coroutine[Any, Any, list[T]]):
    """The coroutine ``collect()`` returns inside ``env.running()``, its reader attached already.

    It runs ``reader.collect()`` once started, and detaches the reader when it is closed,
    thrown into (a task cancelled before its first step) or dropped before it started; dropped
    unawaited, it also warns, as Python does of a coroutine never awaited.
    """

    __slots__ = ("_coroutine", "_reader", "_stream")

    def __init__(self, reader: Reader, stream: str) -> None:
        self._reader: Reader | None = reader
        self._stream = stream
        self._coroutine: Coroutine[Any, Any, list[T]] | None = None

    @property
    def __name__(self) -> str:
        """How a task running it is shown: ``collect('stream')``."""
        return f"collect({self._stream!r})"

    def _started(self) -> Coroutine[Any, Any, list[T]]:
        if self._coroutine is None:
            if self._reader is None:
                raise RuntimeError(f"collect() of stream {self._stream!r} was closed before it ran")
            self._coroutine = self._reader.collect()
            self._reader = None
        return self._coroutine

    def _detach(self) -> None:
        if self._reader is not None:
            self._reader.detach()
            self._reader = None

    def send(self, value: Any) -> Any:
        return self._started().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None, /) -> Any:
        if self._coroutine is None:
            self._detach()
            error = typ if val is None else val
            raise error.with_traceback(tb) if tb is not None else error
        return self._coroutine.throw(typ, val, tb)

    def close(self) -> None:
        if self._coroutine is None:
            self._detach()
        else:
            self._coroutine.close()

    def __await__(self) -> Generator[Any, None, list[T]]:
        return self._started().__await__()

    def __del__(self) -> None:
        if self._reader is not None:
            self._detach()
            warnings.warn(
                f"collect() of stream {self._stream!r} was never awaited; its reader was detached",
                RuntimeWarning,
                stacklevel=1,
            )
