"""Outlets: where a chain hands the batches it produced (a channel, or a collector's list)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sage_streams._graph.node import Node
from sage_streams._runtime.policy import PolicyRun
from sage_streams.channel import (
    Control,
    Sender,
)
from sage_streams.errors import BackpressureTimeout, BrokenChannelError, SpillError

__all__ = ["ChannelOutlet", "ListOutlet", "Outlet"]


class Outlet(Protocol):
    """Where a chain hands a batch it produced at one emission point."""

    async def send(self, batch: list[Any]) -> None: ...
    def send_control(self, message: Control) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class ListOutlet:
    """Appends every item to a list: what ``collect()`` reads; ``ended()`` is called when the
    stream has ended."""

    __slots__ = ("ended", "target")

    def __init__(self, target: list[Any], ended: Callable[[], None]) -> None:
        self.target = target
        self.ended = ended

    async def send(self, batch: list[Any]) -> None:
        self.target.extend(batch)

    def send_control(self, message: Control) -> None:
        """Nothing to do: a list holds items only."""

    def close(self) -> None:
        """The list is complete."""
        self.ended()

    def abort(self) -> None:
        """Nothing to do: the run's error tells the reader the list is incomplete."""


class ChannelOutlet:
    """Sends batches into a channel; a consumer that went away stops receiving, nothing else.

    A batch that times out under ``block``, or an item that cannot spill under ``buffer``, goes
    to the error policy of the consuming operator (``guard``): ``"continue"`` drops it (counted
    in the channel's ``dropped``), ``"retry"`` tries again.
    """

    __slots__ = ("guard", "sender")

    def __init__(self, sender: Sender, guard: tuple[PolicyRun, Node, str] | None = None) -> None:
        self.sender = sender
        self.guard = guard

    async def send(self, batch: list[Any]) -> None:
        attempt = 1
        while not self.sender.receiver_closed:  # else the reader left: its outputs are discarded
            try:
                await self.sender.send(batch)
                return
            except BrokenChannelError:
                return  # it left while we waited for room
            except (BackpressureTimeout, SpillError) as error:
                if self.guard is None:
                    raise
                # A timeout fails the whole batch; an item the overflow codec cannot write, itself.
                index = error.index if isinstance(error, SpillError) else None
                policy, node, stream_id = self.guard
                failed = batch if index is None else batch[index]
                if await policy.decide(node, stream_id, error, failed, attempt) == "retry":
                    attempt += 1
                    continue
                self.sender.discard(len(batch) if index is None else 1)
                if index is None:
                    return
                batch, attempt = batch[:index] + batch[index + 1 :], 1

    def send_control(self, message: Control) -> None:
        self.sender.send_control(message)

    def close(self) -> None:
        self.sender.close()

    def abort(self) -> None:
        self.sender.abort()
