"""Bounded channels that carry batches of items and in-order control messages.

A channel is two ends around one ``asyncio.Queue``. The :class:`Sender` puts batches (lists of
items) or single items; the :class:`Receiver` gets messages: a batch, or a :class:`Control`
message such as :data:`END`. Control messages travel in the same queue as the data, so a
receiver sees them exactly where the sender put them.

The close protocol has two ends, as in trio's memory channels:

* closing the last sender (fan-in clones each count) puts :data:`END` after everything already
  sent, so the receiver drains what is queued and then ends;
* closing the receiver discards what is queued and breaks the senders: a sender that is blocked,
  or sends later, gets :class:`~sage_streams.errors.BrokenChannelError`.

The bound is counted in items, not messages, and holds to within one batch under ``"block"``: a
batch is admitted whenever the channel holds fewer items than its capacity. The other strategies
keep it exactly. What happens when a producer meets a full channel is the channel's strategy:

* ``"block"`` waits for room, at most ``timeout`` seconds, then raises ``BackpressureTimeout``;
* ``"drop"`` discards the items that do not fit;
* ``"drop_oldest"`` evicts the oldest queued items to make room;
* ``"buffer"`` never waits and never drops: what does not fit is spilled to an on-disk
  :class:`~sage_streams.overflow.OverflowStore`, and everything sent after it, control messages
  included, queues up behind it there. As the receiver makes room, the oldest spilled messages
  move back into memory, so the receiver sees exactly the order that was sent. Spilled items
  are serialized by the channel's ``codec`` (pickle unless told otherwise): they must be
  serializable, and they come back as equal copies rather than the objects sent. The store's
  temporary file lives only until the stream ends or the receiver closes.

Control messages are never dropped and never wait: they carry no items.

Example::

    sender, receiver = create_channel("numbers", capacity=1000)
    await sender.send([1, 2, 3])
    sender.close()
    async for batch in receiver:
        print(batch)            # [1, 2, 3], then the loop ends
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, cast, get_args

from sage_streams._typing import check_choice
from sage_streams.errors import BackpressureTimeout, BrokenChannelError
from sage_streams.overflow import Codec, OverflowStore, resolve_codec

__all__ = [
    "ABORTED",
    "END",
    "Aborted",
    "ChannelConfig",
    "ChannelStatistics",
    "Control",
    "EndOfStream",
    "Message",
    "Receiver",
    "Sender",
    "Strategy",
    "Watermark",
    "create_channel",
    "validate_strategy",
]

Strategy: TypeAlias = Literal["block", "drop", "drop_oldest", "buffer"]
"""What a producer does when it meets a full channel."""

STRATEGIES: Final[tuple[str, ...]] = get_args(Strategy)


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


@dataclass(frozen=True, slots=True)
class ChannelStatistics:
    """A snapshot of one channel, as read by the metrics.

    Attributes:
        name: the channel's name (``"producer->consumer"`` in a graph).
        depth: items queued in memory now.
        capacity: the bound, in items.
        peak: the largest depth seen.
        dropped: items discarded by ``"drop"``/``"drop_oldest"``, or given up by an error policy
            (:meth:`Sender.discard`, e.g. after a ``BackpressureTimeout``).
        blocked_seconds: total time producers spent waiting for room.
        open_senders: sender ends not yet closed.
        receiver_open: whether the receiving end is still open.
        spilled: items ever spilled to the overflow store (``"buffer"`` only).
        overflow: items in the overflow store now (``"buffer"`` only).
    """

    name: str
    depth: int
    capacity: int
    peak: int
    dropped: int
    blocked_seconds: float
    open_senders: int
    receiver_open: bool
    spilled: int = 0
    overflow: int = 0


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """How to build a channel: its bound, strategy, ``block`` timeout and ``buffer`` codec."""

    capacity: int
    strategy: Strategy = "block"
    timeout: float | None = None
    codec: str | Codec = "pickle"


def validate_strategy(strategy: str) -> Strategy:
    """Return ``strategy`` if it is a known backpressure strategy, else raise ``ValueError``."""
    check_choice(strategy, STRATEGIES, "backpressure strategy")
    return strategy  # type: ignore[return-value]


class _BatchQueue(asyncio.Queue[Message]):
    """An ``asyncio.Queue`` whose size is the number of items in its batches.

    It overrides the storage hooks asyncio provides for subclasses; waiting, wake-ups and
    cancellation stay asyncio's own.
    """

    items: int
    peak: int
    closed: bool
    overflow: OverflowStore | None = None  # only a ``"buffer"`` channel has one

    def _init(self, maxsize: int) -> None:
        self._queue: deque[Message] = deque()
        self.items = 0
        self.peak = 0
        self.closed = False
        self.watcher: Callable[[], None] | None = None
        self._tail: list[Any] | None = None

    def _put(self, item: Message) -> None:
        if self.closed:
            raise BrokenChannelError("the receiving end of this channel is closed")
        self._queue.append(item)
        if type(item) is list:
            self._grow(len(item))
        if self.watcher is not None:
            self.watcher()

    def _get(self) -> Message:
        message = self._queue.popleft()
        if type(message) is list:
            self.items -= len(message)
        return message

    def _grow(self, count: int) -> None:
        self.items += count
        if self.items > self.peak:
            self.peak = self.items

    def qsize(self) -> int:
        return self.items

    def full(self) -> bool:
        # A closed queue is never full, so that woken putters reach ``_put`` and break.
        return not self.closed and self.items >= self.maxsize

    def append_item(self, item: Any, batch_size: int) -> None:
        """Add one item to the open batch at the tail, or start a new one.

        The tail batch is only ever one this method created, so batches shared by fan-out are
        never appended to.
        """
        if self.closed:
            raise BrokenChannelError("the receiving end of this channel is closed")
        tail = self._tail
        if tail is not None and self._queue and self._queue[-1] is tail and len(tail) < batch_size:
            tail.append(item)
        else:
            self._tail = [item]
            self._queue.append(self._tail)
        self._grow(1)
        self._wakeup_next(self._getters)  # type: ignore[attr-defined]
        if self.watcher is not None:
            self.watcher()

    def put_unbounded(self, message: Message) -> None:
        """Put without looking at the bound (control messages, ``drop_oldest``)."""
        self._put(message)
        self._wakeup_next(self._getters)  # type: ignore[attr-defined]

    def put_control(self, message: Control) -> None:
        """Put a control message: it carries no items, so the bound does not apply."""
        self.put_unbounded(message)

    def evict(self, count: int) -> int:
        """Remove up to ``count`` of the oldest items, keeping control messages in place."""
        evicted = 0
        for index, message in enumerate(self._queue):
            if evicted >= count:
                break
            if type(message) is list:
                take = min(len(message), count - evicted)
                # Replace rather than mutate: the batch may be shared with other channels.
                self._queue[index] = message[take:]
                evicted += take
        self.items -= evicted
        self._wakeup_next(self._putters)  # type: ignore[attr-defined]
        return evicted

    def close(self) -> None:
        """Discard everything and wake every waiter so that it sees the closed state."""
        self.closed = True
        self._queue.clear()
        self.items = 0
        # asyncio.Queue has no shutdown() before 3.13: wake the waiters one by one.
        for waiters in (self._putters, self._getters):  # type: ignore[attr-defined]
            while waiters:
                self._wakeup_next(waiters)  # type: ignore[attr-defined]


class _BufferQueue(_BatchQueue):
    """The queue of a ``"buffer"`` channel: what does not fit waits in an overflow store.

    It keeps one invariant: while the store holds anything, the queue holds ``maxsize`` items.
    So a sender's fast path, which needs room, never overtakes spilled data, and the receiver
    never finds the queue empty while data waits on disk (``has_message`` and the doorbell need
    no change). Every get restores the invariant by moving spilled messages back into the room
    it frees.
    """

    overflow: OverflowStore

    def __init__(self, maxsize: int, overflow: OverflowStore, batch_size: int) -> None:
        super().__init__(maxsize)
        self.overflow = overflow
        self.batch_size = batch_size

    def _get(self) -> Message:
        message = super()._get()
        if message is END or message is ABORTED:
            # The receiver has ended: nothing spilled behind this will ever be read.
            self.overflow.close()
        elif not self.overflow.empty:
            try:
                self._refill()
            except BaseException:
                # The codec failed to read an item back: leave the queue as it was, so that
                # the error is raised again rather than a message lost.
                self._queue.appendleft(message)
                if type(message) is list:
                    self.items += len(message)
                raise
        return message

    def _refill(self) -> None:
        """Move spilled messages back, oldest first, in batches that fit the free room; a
        control message needs no room, so it moves as soon as it is the oldest."""
        store = self.overflow
        while not store.empty:
            control = store.take_control()
            if control is not None:
                self._queue.append(control)
                continue
            room = self.maxsize - self.items
            if room <= 0:
                break
            batch = store.take(min(room, self.batch_size))
            self._queue.append(batch)
            self._grow(len(batch))
        # A second task waiting in get() was not woken by these: it must see them.
        self._wakeup_next(self._getters)  # type: ignore[attr-defined]

    def spill(self, batch: list[Any]) -> int:
        """Queue what fits of ``batch`` and spill the rest behind it; return the items dropped.

        Nothing is dropped while the receiver may still read: only after it has ended on
        :data:`ABORTED` (which closes the store) is what does not fit discarded.
        """
        if self.overflow.closed:
            return len(batch)
        room = self.maxsize - self.items
        # Spill first: a SpillError must leave the channel as it was.
        self.overflow.append(batch, start=room)
        if room:
            self.put_unbounded(batch[:room])
        else:
            self._ring()
        return 0

    def put_control(self, message: Control) -> None:
        """Put a control message, behind the spilled data if there is any, to keep its place."""
        if self.overflow.empty:
            self.put_unbounded(message)
        else:
            self.overflow.append_control(message)
            self._ring()

    def _ring(self) -> None:
        if self.watcher is not None:
            self.watcher()

    def close(self) -> None:
        super().close()
        self.overflow.close()


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
        if queue.closed:
            raise BrokenChannelError(f"channel {self.name!r}: the receiving end is closed")
        if self.strategy == "block":
            await self._wait_for_room(batch)
        elif self.strategy == "drop":
            room = max(queue.maxsize - queue.items, 0)
            if room:
                queue.put_unbounded(batch[:room])
            self.dropped += len(batch) - room
        elif self.strategy == "drop_oldest":
            queue.put_unbounded(batch)
            self.dropped += queue.evict(queue.items - queue.maxsize)
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

        The batch is handed over as it is, not copied: do not mutate it afterwards.
        """
        if self._closed:
            raise BrokenChannelError(f"channel {self._state.name!r}: this sender is closed")
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
        if count < 0:
            raise ValueError(f"cannot discard a negative number of items, got {count!r}")
        self._state.dropped += count

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
            self.send_control(END)

    def abort(self) -> None:
        """Close this end because the producer failed: the receiver gets :data:`ABORTED`."""
        if self._closed:
            return
        self._closed = True
        self._state.open_senders -= 1
        self.send_control(ABORTED)

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
        message = queue.get_nowait() if queue._queue else await queue.get()
        if message is END or message is ABORTED:
            self._ended = message
        return message

    def receive_nowait(self) -> Message | None:
        """The next message if one is queued, else ``None`` (see :meth:`receive`)."""
        if self._ended is not None:
            return self._ended
        queue = self._state.queue
        if not queue._queue:
            return None
        message = queue.get_nowait()
        if message is END or message is ABORTED:
            self._ended = message
        return message

    def has_message(self) -> bool:
        """Whether :meth:`receive` would return without waiting."""
        return self._ended is not None or bool(self._state.queue._queue)

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

    def close(self) -> None:
        """Stop receiving: discard what is queued and break the senders."""
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
            a :class:`~sage_streams.overflow.Codec`.
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
