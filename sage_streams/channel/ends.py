"""The two ends of a channel and the state they share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from sage_streams.channel.config import ChannelStatistics, Strategy, validate_strategy
from sage_streams.channel.messages import ABORTED, END, Control, Message
from sage_streams.channel.overflow import Codec, OverflowStore, resolve_codec
from sage_streams.channel.queues import _BatchQueue, _BufferQueue
from sage_streams.errors import BackpressureTimeout, BrokenChannelError

__all__ = ["Receiver", "Sender", "create_channel"]


class _ChannelState:
    """What both ends of one channel share."""

    __slots__ = (
        "batch_size",
        "blocked_seconds",
        "dropped",
        "name",
        "open_senders",
        "queue",
        "strategy",
        "timeout",
    )

    def __init__(
        self,
        name: str,
        capacity: int,
        strategy: Strategy,
        timeout: float | None,
        batch_size: int,
        codec: Codec,
    ) -> None:
        self.name = name
        self.queue = (
            _BufferQueue(capacity, OverflowStore(name, codec), batch_size)
            if strategy == "buffer"
            else _BatchQueue(capacity)
        )
        self.strategy = strategy
        self.timeout = timeout
        self.batch_size = batch_size
        self.open_senders = 1
        self.dropped = 0
        self.blocked_seconds = 0.0

    async def admit(self, batch: list[Any]) -> None:
        """Apply the strategy to a batch that does not fit as it is."""
        queue = self.queue
        if queue.closed or queue.ended:
            state = "the receiving end is closed" if queue.closed else "it has ended"
            raise BrokenChannelError(f"channel {self.name!r}: {state}")
        if self.strategy == "block":
            await self._wait_for_room(batch)
        elif self.strategy == "drop":
            room = max(queue.maxsize - queue.items, 0)
            if room:
                queue.put_unbounded(batch[:room])
            self.dropped += len(batch) - room
        elif self.strategy == "drop_oldest":
            queue.put_unbounded(batch)
            self.dropped += queue.trim()
        else:  # buffer
            self.dropped += cast(_BufferQueue, queue).spill(batch)

    async def _wait_for_room(self, batch: list[Any]) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                await self.queue.put(batch)
        except TimeoutError:
            raise BackpressureTimeout(
                f"channel {self.name!r} stayed full ({self.queue.maxsize} items) "
                f"for {self.timeout} s; {len(batch)} item(s) not delivered"
            ) from None
        finally:
            self.blocked_seconds += time.perf_counter() - started

    def discard(self, count: int) -> None:
        """Count ``count`` items given up by an error policy as dropped."""
        if count < 0:
            raise ValueError(f"cannot discard a negative number of items, got {count!r}")
        self.dropped += count

    def statistics(self) -> ChannelStatistics:
        queue = self.queue
        store = queue.overflow
        return ChannelStatistics(
            name=self.name,
            depth=queue.items,
            capacity=queue.maxsize,
            peak=queue.peak,
            dropped=self.dropped,
            blocked_seconds=self.blocked_seconds,
            open_senders=self.open_senders,
            receiver_open=not queue.closed,
            spilled=0 if store is None else store.spilled,
            overflow=0 if store is None else len(store),
        )


class Sender:
    """The sending end of a channel. Clone it for each additional producer (fan-in)."""

    __slots__ = ("_closed", "_state")

    def __init__(self, state: _ChannelState) -> None:
        self._state = state
        self._closed = False

    @property
    def name(self) -> str:
        return self._state.name

    async def send(self, batch: list[Any]) -> None:
        """Send a batch of items, applying the channel's strategy if it does not fit.

        The batch is handed over as it is, not copied: do not mutate it afterwards. An empty
        batch sends nothing (receivers only ever see non-empty batches), even on a full channel.
        """
        if self._closed:
            raise BrokenChannelError(f"channel {self._state.name!r}: this sender is closed")
        if not batch:
            return
        state = self._state
        queue = state.queue
        if queue.items + len(batch) <= queue.maxsize or (
            state.strategy == "block" and queue.items < queue.maxsize
        ):
            queue.put_nowait(batch)
        else:
            await state.admit(batch)

    async def send_item(self, item: Any) -> None:
        """Send one item; it joins the open batch at the tail of the queue if there is one."""
        if self._closed:
            raise BrokenChannelError(f"channel {self._state.name!r}: this sender is closed")
        state = self._state
        if state.queue.items < state.queue.maxsize:
            state.queue.append_item(item, state.batch_size)
        else:
            await state.admit([item])

    def send_control(self, message: Control) -> None:
        """Send a control message; it never waits and is never dropped.

        A channel whose receiver has closed has nobody to tell, so the message is discarded.
        """
        if not self._state.queue.closed:
            self._state.queue.put_control(message)

    def discard(self, count: int) -> None:
        """Record that ``count`` items handed to this sender were given up rather than sent.

        An error policy calls it when it lets a batch go (``"continue"`` after a
        ``BackpressureTimeout``), so that the loss shows in ``statistics().dropped``.
        """
        self._state.discard(count)

    def clone(self) -> Sender:
        """Another sending end of the same channel; the channel ends when all are closed."""
        if self._closed:
            raise BrokenChannelError(f"channel {self._state.name!r}: cannot clone a closed sender")
        self._state.open_senders += 1
        return Sender(self._state)

    def close(self) -> None:
        """Close this end; closing the last one ends the stream after what is queued."""
        if self._closed:
            return
        self._closed = True
        self._state.open_senders -= 1
        if self._state.open_senders == 0:
            self._state.queue.ended = True
            self.send_control(END)

    def abort(self) -> None:
        """Close this end because the producer failed: the receiver gets :data:`ABORTED`."""
        if self._closed:
            return
        self._closed = True
        self._state.open_senders -= 1
        self.send_control(ABORTED)

    @property
    def closed(self) -> bool:
        """Whether this end has been closed (or aborted)."""
        return self._closed

    @property
    def full(self) -> bool:
        """Whether the channel is full, so that a send would apply the strategy (wait, under
        ``block``)."""
        return self._state.queue.full()

    @property
    def receiver_closed(self) -> bool:
        """Whether the receiving end is gone, so that sending is pointless."""
        return self._state.queue.closed

    def statistics(self) -> ChannelStatistics:
        return self._state.statistics()


class Receiver:
    """The receiving end of a channel."""

    __slots__ = ("_ended", "_state")

    def __init__(self, state: _ChannelState) -> None:
        self._state = state
        self._ended: Control | None = None

    @property
    def name(self) -> str:
        return self._state.name

    async def receive(self) -> Message:
        """The next message: a batch or a control message; after :data:`END` or
        :data:`ABORTED`, that message again."""
        if self._ended is not None:
            return self._ended
        queue = self._state.queue
        message = await queue.get() if queue.empty() else queue.get_nowait()
        if message is END or message is ABORTED:
            self._ended = message
        return message

    def receive_nowait(self) -> Message | None:
        """The next message if one is queued, else ``None`` (see :meth:`receive`)."""
        if self._ended is not None:
            return self._ended
        queue = self._state.queue
        if queue.empty():
            return None
        message = queue.get_nowait()
        if message is END or message is ABORTED:
            self._ended = message
        return message

    def has_message(self) -> bool:
        """Whether :meth:`receive` would return without waiting."""
        return self._ended is not None or not self._state.queue.empty()

    def watch(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` whenever a message is put, so that one task can wait on many
        channels (a doorbell, as an ``asyncio.Event``'s ``set``). ``None`` stops it."""
        self._state.queue.watcher = callback

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Iterate the messages, data and control, until :data:`END` (not included)."""
        while (message := await self.receive()) is not END:
            yield message
            if message is ABORTED:
                return

    def discard(self, count: int) -> None:
        """Record that ``count`` items received were given up by an error policy (an
        :class:`~sage_streams.channel.Unreadable` let go), so that the loss shows in
        ``statistics().dropped``."""
        self._state.discard(count)

    def close(self) -> None:
        """Stop receiving: discard what is queued and break the senders.

        Every sender waiting for room wakes with ``BrokenChannelError``; a :meth:`receive`
        waiting in another task returns :data:`END`.
        """
        if self._ended is None:
            self._ended = END
        self._state.queue.close()

    def statistics(self) -> ChannelStatistics:
        return self._state.statistics()


def create_channel(
    name: str,
    capacity: int,
    *,
    strategy: Strategy = "block",
    timeout: float | None = None,
    batch_size: int = 1024,
    codec: str | Codec = "pickle",
) -> tuple[Sender, Receiver]:
    """Create a bounded channel and return its two ends.

    Args:
        name: shown in errors and metrics.
        capacity: the bound, in items (at least 1).
        strategy: what a producer meeting a full channel does (see the module docstring).
        timeout: with ``"block"``, the longest a producer waits before ``BackpressureTimeout``.
        batch_size: the largest batch :meth:`Sender.send_item` builds at the tail, and of
            the batches ``"buffer"`` moves back from its overflow store.
        codec: with ``"buffer"``, how spilled items are serialized: ``"pickle"``, ``"json"`` or
            a :class:`~sage_streams.channel.overflow.Codec`.
    """
    if not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"channel capacity must be a positive int, got {capacity!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(
            f"backpressure timeout must be a positive number of seconds or None, got {timeout!r}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
    state = _ChannelState(
        name, capacity, validate_strategy(strategy), timeout, batch_size, resolve_codec(codec)
    )
    return Sender(state), Receiver(state)
