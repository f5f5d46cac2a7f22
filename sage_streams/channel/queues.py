"""The queues inside channels: an ``asyncio.Queue`` sized in items, and its spilling variant."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn, cast

from sage_streams.channel.messages import ABORTED, END, Control, Message, Unreadable
from sage_streams.channel.overflow import OverflowStore
from sage_streams.errors import BrokenChannelError, SpillError

__all__ = ["_BatchQueue", "_BufferQueue"]


class _BatchQueue(asyncio.Queue[Message]):
    """An ``asyncio.Queue`` whose size is the number of items in its batches.

    It overrides only what CPython documents for subclasses (the ``_init``/``_put``/``_get``
    storage hooks, ``qsize``, ``full`` and ``empty``) and never touches the queue's private
    waiter lists: every wake-up goes through ``put_nowait`` (one waiting getter) or
    ``get_nowait`` (one waiting putter), so waiting, fairness and cancellation stay asyncio's
    own, and a new Python release cannot break them.

    A closed queue holds no items, so it is never full; and it is never empty, so that every
    waiter that wakes finds out: a putter is refused with
    :class:`~sage_streams.errors.BrokenChannelError`, a getter gets :data:`END`. asyncio wakes
    one waiter at a time, so each of them wakes the next (see :meth:`close`).
    """

    items: int
    peak: int
    closed: bool
    ended: bool
    overflow: OverflowStore | None = None  # only a ``"buffer"`` channel has one

    def _init(self, maxsize: int) -> None:
        self._messages: deque[Message] = deque()
        self.items = 0
        self.peak = 0
        self.closed = False
        # Set when the last sender ended the stream (END). A sender that was waiting for room
        # then must not put a batch behind the end, where nobody would ever read it. (After
        # ABORTED the run is failing: what does not fit then is dropped and counted, as before.)
        self.ended = False
        # Set while the queue puts a message it has admitted itself (see ``put_unbounded``).
        self._admitted = False
        self.watcher: Callable[[], None] | None = None
        self._tail: list[Any] | None = None

    def _put(self, item: Message) -> None:
        if self.closed or (self.ended and type(item) is list and not self._admitted):
            if type(item) is list:
                self._refuse()
            # A control message for a closed queue: nobody will read it. (put_nowait still
            # wakes a getter after this, which is how close() reaches the waiting ones.)
            return
        self._messages.append(item)
        if type(item) is list:
            self._grow(len(item))
        if self.watcher is not None:
            self.watcher()

    def _refuse(self) -> NoReturn:
        """Refuse items nobody would read: the receiver has gone, or the stream has ended."""
        if self.closed:
            # This may be a putter that close() woke: wake the next one (and a getter).
            self.get_nowait()
            raise BrokenChannelError("the receiving end of this channel is closed")
        raise BrokenChannelError("this channel has ended: nothing sent after its end is read")

    def _get(self) -> Message:
        try:
            message = self._messages.popleft()
        except IndexError:
            # get_nowait() only gets from a queue that is not empty(), so this one is closed:
            # this may be a getter that close() woke, which wakes the next one.
            assert self.closed
            self.put_nowait(END)
            return END
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
        return self.items >= self.maxsize and not self._admitted

    def empty(self) -> bool:
        return not self._messages and not self.closed

    def append_item(self, item: Any, batch_size: int) -> None:
        """Add one item to the open batch at the tail, or start a new one; the caller has made
        sure that the queue is not full.

        The tail batch is only ever one this method created, so batches shared by fan-out are
        never appended to. Growing a batch that is already queued needs no wake-up: the getter
        woken when it was put (if one was waiting) will take it.
        """
        if self.closed or self.ended:
            self._refuse()
        tail = self._tail
        if tail is not None and self._messages and self._messages[-1] is tail and len(tail) < batch_size:
            tail.append(item)
            self._grow(1)
            if self.watcher is not None:
                self.watcher()
        else:
            tail = [item]
            self.put_nowait(tail)
            self._tail = tail

    def put_unbounded(self, message: Message) -> None:
        """Put a message the strategy has admitted (a control message, what ``drop`` or
        ``drop_oldest`` keeps, what ``buffer`` moves): the bound and the end do not apply.

        It goes through ``put_nowait``, so that a waiting getter wakes as for any put; ``full``
        is lifted for that one call.
        """
        self._admitted = True
        try:
            self.put_nowait(message)
        finally:
            self._admitted = False

    def put_control(self, message: Control) -> None:
        """Put a control message: it carries no items, so the bound does not apply."""
        self.put_unbounded(message)

    def trim(self) -> int:
        """Evict the oldest items over the bound, keeping control messages in place; return
        how many were evicted.

        A batch evicted whole leaves no empty batch behind (receivers see only non-empty
        ones). The queue is left exactly full, so no putter could use the room: none is woken.
        """
        messages = self._messages
        excess = self.items - self.maxsize
        evicted = 0
        controls: list[Message] = []  # the ones before the oldest item kept
        while evicted < excess:  # the items queued are more than the excess
            message = messages.popleft()
            if type(message) is not list:
                controls.append(message)
                continue
            take = min(len(message), excess - evicted)
            evicted += take
            if take < len(message):
                # Put back a copy rather than mutate: the batch may be shared with other channels.
                messages.appendleft(message[take:])
        messages.extendleft(reversed(controls))
        self.items -= evicted
        return evicted

    def close(self) -> None:
        """Discard everything and wake every waiter so that it sees the closed state.

        asyncio.Queue has no shutdown() before 3.13, and its ``put_nowait``/``get_nowait``
        wake one waiter each. So this wakes the first putter and the first getter with one
        ``get_nowait``; each of them, refused or given END, wakes the next of its kind the same
        way, and one cancelled before it runs passes its wake-up on (asyncio does that, since a
        closed queue is neither full nor empty).
        """
        self.closed = True
        self._messages.clear()
        self.items = 0
        self.get_nowait()


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
                self._messages.appendleft(message)
                if type(message) is list:
                    self.items += len(message)
                raise
        return message

    def _refill(self) -> None:
        """Move spilled messages back, oldest first, in batches that fit the free room; a
        control message needs no room, so it moves as soon as it is the oldest. An item that
        cannot be read back moves as an :class:`Unreadable`, counted as the item it stands for.

        Each one is put as any admitted message is, so that it wakes a getter: a second task
        waiting in ``get()`` must see it."""
        store = self.overflow
        while not store.empty:
            control = store.take_control()
            if control is not None:
                self.put_unbounded(control)
                continue
            room = self.maxsize - self.items
            if room <= 0:
                break
            try:
                batch = store.take(min(room, self.batch_size))
            except SpillError as error:
                data = cast(bytes, error.item)  # what is left of the item
                self.put_unbounded(Unreadable(error, partial(store.read_back, data)))
                self._grow(1)
                continue
            self.put_unbounded(batch)

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
