"""Heads: what feeds a chain its batches (a synchronous iterable, or a channel)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

import anyio

from sage_streams._codegen import Step
from sage_streams._graph.node import Node
from sage_streams._runtime.failures import OperatorFailure
from sage_streams._runtime.sources import is_factory
from sage_streams.channel import (
    ABORTED,
    END,
    Control,
    Receiver,
)

__all__ = ["ChannelHead", "Head", "IterableHead", "Prefix", "Prefixed"]


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


class IterableHead:
    """Reads a synchronous iterable in batches, yielding to the loop once per batch.

    A ``list``, ``tuple`` or ``range`` is read in slices: a range slice stays lazy, so its numbers
    are made one at a time inside the fused loop instead of all at once.
    """

    def __init__(self, node: Node, batch_size: int) -> None:
        self.node = node
        self.batch_size = batch_size
        self._next: Callable[[], Any] | None = None

    async def next_batch(self) -> Sequence[Any] | None:
        try:
            if self._next is None:
                source: Any = self.node.source
                self._next = _batcher(source() if is_factory(source) else source, self.batch_size)
            else:
                # Once per batch, never per item: let the other tasks (and cancellation) in.
                await asyncio.sleep(0)
            return self._next() or None
        except Exception as exc:
            exc.add_note(f"sage_streams: raised while reading source {self.node.name!r}")
            raise OperatorFailure(self.node.name, exc) from exc

    async def close(self, completed: bool) -> None:
        self._next = None


def _batcher(source: Iterable[Any], size: int) -> Callable[[], Sequence[Any]]:
    """A function returning the next batch of ``source`` (empty at the end)."""
    if type(source) in (list, tuple, range):
        sequence: Sequence[Any] = source  # type: ignore[assignment]
        position = 0

        def next_slice() -> Sequence[Any]:
            nonlocal position
            batch = sequence[position : position + size]
            position += size
            return batch

        return next_slice
    iterator = iter(source)
    return lambda: list(islice(iterator, size))


class ChannelHead:
    """Reads the batches of a channel until it ends."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    async def next_batch(self) -> list[Any] | Control | None:
        message = await self.receiver.receive()
        if message is END:
            return None
        if message is ABORTED:
            # The producer failed, so the task group is cancelling us; what came so far is
            # incomplete and must not be passed on as a finished stream.
            await anyio.sleep_forever()
        return message

    async def close(self, completed: bool) -> None:
        self.receiver.close()
