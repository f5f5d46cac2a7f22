"""The queues inside channels: an ``asyncio.Queue`` sized in items, and its spilling variant."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, cast

from sage_streams.channel.messages import ABORTED, END, Control, Message, Unreadable
from sage_streams.channel.overflow import OverflowStore
from sage_streams.errors import BrokenChannelError, SpillError

__all__ = ["_BatchQueue", "_BufferQueue"]


class _BatchQueue(asyncio.Queue[Message]):
    """An ``asyncio.Queue`` whose size is the number of items in its batches.

    It overrides the storage hooks asyncio provides for subclasses; waiting, wake-ups and
    cancellation stay asyncio's own.
    """

    items: int
    peak: int
    closed: bool
    ended: bool
    overflow: OverflowStore | None = None  # only a ``"buffer"`` channel has one

    def _init(self, maxsize: int) -> None:
        self._queue: deque[Message] = deque()
        self.items = 0
        self.peak = 0
        self.closed = False
        # Set when the last sender ended the stream (END). A sender that was waiting for room
        # then must not put a batch behind the end, where nobody would ever read it. (After
        # ABORTED the run is failing: what does not fit then is dropped and counted, as before.)
        self.ended = False
        self.watcher: Callable[[], None] | None = None
        self._tail: list[Any] | None = None

    def _put(self, item: Message) -> None:
        if self.closed or (self.ended and type(item) is list):
            self._refuse()
        self._queue.append(item)
        if type(item) is list:
            self._grow(len(item))
        if self.watcher is not None:
            self.watcher()

    def _refuse(self) -> None:
        """Refuse items nobody would read: the receiver has gone, or the stream has ended."""
        if self.closed:
            raise BrokenChannelError("the receiving end of this channel is closed")
        raise BrokenChannelError("this channel has ended: nothing sent after its end is read")

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
        if self.closed or self.ended:
            self._refuse()
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
        if type(message) is Unreadable:
            self.items -= 1  # it stands for its item
        if message is END or message is ABORTED:
            # The receiver has ended: nothing spilled behind this will ever be read.
            self.overflow.close()
        elif not self.overflow.empty:
            try:
                self._refill()
            except BaseException:
                # The store failed (an item the codec cannot read is no error here): leave the
                # queue as it was, so that the error is raised again rather than a message lost.
                self._queue.appendleft(message)
                if type(message) is list:
                    self.items += len(message)
                raise
        return message

    def _refill(self) -> None:
        """Move spilled messages back, oldest first, in batches that fit the free room; a
        control message needs no room, so it moves as soon as it is the oldest. An item that
        cannot be read back moves as an :class:`Unreadable`, counted as the item it stands for."""
        store = self.overflow
        while not store.empty:
            control = store.take_control()
            if control is not None:
                self._queue.append(control)
                continue
            room = self.maxsize - self.items
            if room <= 0:
                break
            try:
                batch = store.take(min(room, self.batch_size))
            except SpillError as error:
                data = cast(bytes, error.item)  # what is left of the item
                message: Message = Unreadable(error, partial(store.read_back, data))
                self._queue.append(message)
                self._grow(1)
                continue
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
