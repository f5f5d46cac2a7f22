"""Heads: what feeds a chain its batches (a synchronous iterable, or a channel)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from sage_streams._codegen import Step
from sage_streams._graph.node import Node
from sage_streams._runtime.failures import OperatorFailure
from sage_streams._runtime.sources import is_factory
from sage_streams.channel import (
    ABORTED,
    END,
    Barrier,
    Control,
    Receiver,
)

if TYPE_CHECKING:
    from sage_streams._runtime.checkpoints import Checkpointer

__all__ = ["ChannelHead", "Head", "IterableHead", "Prefix", "Prefixed", "SourceBarriers"]


@dataclass(frozen=True, slots=True)
class Prefix:
    """The stateless step an operator has come down to for its one open input (a lookup, see
    :class:`~sage_streams.operators.base.SteppingOperator`): the chain runs it as its first step.

    Errors of the step are the operator's (``node``), on items of ``stream_id``; ``record``
    takes the items that passed the step and the items it emitted.
    """

    step: Step
    node: Node
    stream_id: str
    record: Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Prefixed:
    """A batch of the input that ``prefix`` handles, as it arrived: the chain joins it itself."""

    items: list[Any]
    prefix: Prefix


class Head(Protocol):
    async def next_batch(self) -> Sequence[Any] | Prefixed | Control | None:
        """The next non-empty batch, a batch for the chain to join (:class:`Prefixed`), a
        control message to pass on (a watermark), or ``None`` at the end of the stream."""

    async def close(self, completed: bool) -> None:
        """Release the inputs and end what the head still runs (a call head cancels and awaits
        its calls); ``completed`` says whether the stream ended normally. Called by the chain's
        task however it ends, cancelled included, so it awaits nothing else."""


class SourceBarriers:
    """A source's side of the checkpoints: the barriers it owes, and where it stands.

    The checkpointer rings it when an epoch starts; the source head then puts the barrier in
    band before its next batch and reports its position: what it had given out before.
    """

    def __init__(self, name: str, checkpointer: Checkpointer) -> None:
        self.name = name
        self.checkpointer = checkpointer
        self.owed: deque[int] = deque()
        self.bell: Callable[[], None] | None = None
        """Wakes a head waiting for input, so that a barrier does not wait for data."""
        checkpointer.add_source(self)

    def ring(self) -> None:
        self.owed.append(self.checkpointer.epoch)
        if self.bell is not None:
            self.bell()

    def take(self, position: Any) -> Barrier | None:
        """The next barrier owed, its position reported; ``None`` if none is owed."""
        if not self.owed:
            return None
        epoch = self.owed.popleft()
        self.checkpointer.report_position(epoch, self.name, position)
        return Barrier(epoch)


class IterableHead:
    """Reads a synchronous iterable in batches, yielding to the loop once per batch.

    A ``list``, ``tuple`` or ``range`` is read in slices: a range slice stays lazy, so its numbers
    are made one at a time inside the fused loop instead of all at once. Such a source is
    replayable: its position is the number of items given out, and a run restored from a
    checkpoint starts there.
    """

    def __init__(
        self, node: Node, batch_size: int, barriers: SourceBarriers | None = None, start: int = 0
    ) -> None:
        self.node = node
        self.batch_size = batch_size
        self.barriers = barriers
        self._next: Callable[[], Any] | None = None
        self._given = start
        self._replayable = False

    def start_at(self, position: int) -> None:
        """Start from item ``position`` (a restored checkpoint's), if the source is replayable."""
        self._given = position

    @property
    def position(self) -> int | None:
        """Items given out so far, for a replayable source; else ``None``."""
        return self._given if self._replayable else None

    async def next_batch(self) -> Sequence[Any] | Barrier | None:
        try:
            if self._next is None:
                source: Any = self.node.source
                items = source() if is_factory(source) else source
                self._replayable = type(items) in (list, tuple, range)
                self._next = _batcher(items, self.batch_size, self._given if self._replayable else 0)
            else:
                # Once per batch, never per item: let the other tasks (and cancellation) in.
                await asyncio.sleep(0)
            if self.barriers is not None and (barrier := self.barriers.take(self.position)) is not None:
                return barrier
            batch = self._next() or None
            if batch:
                self._given += len(batch)
            return batch
        except Exception as exc:
            exc.add_note(f"sage_streams: raised while reading source {self.node.name!r}")
            raise OperatorFailure(self.node.name, exc) from exc

    async def close(self, completed: bool) -> None:
        self._next = None


def _batcher(source: Iterable[Any], size: int, start: int) -> Callable[[], Sequence[Any]]:
    """A function returning the next batch of ``source`` (empty at the end), from ``start`` on
    (a sequence only)."""
    if type(source) in (list, tuple, range):
        sequence: Sequence[Any] = source  # type: ignore[assignment]
        position = start

        def next_slice() -> Sequence[Any]:
            nonlocal position
            batch = sequence[position : position + size]
            position += size
            return batch

        return next_slice
    iterator = iter(source)
    return lambda: list(islice(iterator, size))


class ChannelHead:
    """Reads the batches of a channel until it ends.

    At a source that is a channel (a push stream's inbox, an async source's feed, a dead-letter
    stream) it also puts the checkpoints' barriers in band, waking up for them when no data
    comes; such a source is not replayable (its position is ``None``).
    """

    def __init__(self, receiver: Receiver, barriers: SourceBarriers | None = None) -> None:
        self.receiver = receiver
        self.barriers = barriers
        self._bell = asyncio.Event()
        if barriers is not None:
            barriers.bell = self._bell.set
            receiver.watch(self._bell.set)

    async def next_batch(self) -> list[Any] | Control | None:
        barriers = self.barriers
        if barriers is None:
            message = await self.receiver.receive()
        else:
            while True:
                self._bell.clear()
                if (barrier := barriers.take(None)) is not None:
                    return barrier
                if (ready := self.receiver.receive_nowait()) is not None:
                    message = ready
                    break
                await self._bell.wait()
        if message is END:
            return None
        if message is ABORTED:
            # The producer failed, so the task group is cancelling us; what came so far is
            # incomplete and must not be passed on as a finished stream.
            await anyio.sleep_forever()
        return message

    async def close(self, completed: bool) -> None:
        self.receiver.close()
