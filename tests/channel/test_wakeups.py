"""Every way a channel wakes a waiting sender or receiver.

The channel's queue wakes waiters only through asyncio's public ``put_nowait``/``get_nowait``
(one waiter each), so each path that adds a message, frees room or closes is driven here with
the tasks already waiting. ``anyio.wait_all_tasks_blocked()`` says when they are; each test runs
under a generous ``fail_after`` that only turns a lost wake-up into a failure instead of a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from sage_streams.channel import END, Strategy, Watermark, create_channel
from sage_streams.errors import BrokenChannelError

HANG_GUARD = 10  # seconds; a wake-up that is lost hangs forever, a kept one takes microseconds


@asynccontextmanager
async def tasks() -> AsyncIterator[asyncio.TaskGroup]:
    """A task group under the hang guard: a task left waiting fails the test, and is cancelled."""
    with anyio.fail_after(HANG_GUARD):
        async with asyncio.TaskGroup() as group:
            yield group


async def waiting(group: asyncio.TaskGroup, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Start ``coroutine`` and return its task once it waits (for room, or for a message)."""
    task = group.create_task(coroutine)
    await anyio.wait_all_tasks_blocked()
    assert not task.done()
    return task


async def refused(send: Coroutine[Any, Any, None]) -> str:
    """What a send that must be refused with BrokenChannelError says."""
    with pytest.raises(BrokenChannelError) as refusal:
        await send
    return str(refusal.value)


async def test_blocked_senders_wake_in_order_as_the_receiver_makes_room() -> None:
    sender, receiver = create_channel("c", capacity=1)
    await sender.send([0])
    async with tasks() as group:
        sends = [await waiting(group, sender.send([n])) for n in (1, 2, 3)]
        received = []
        for _ in range(4):
            received.append(await receiver.receive())
            await anyio.wait_all_tasks_blocked()  # the woken send puts its batch
        assert received == [[0], [1], [2], [3]]
        assert all(send.done() for send in sends)


async def test_a_blocked_sender_is_refused_when_the_receiver_closes() -> None:
    sender, receiver = create_channel("c", capacity=2)
    await sender.send([1, 2])
    async with tasks() as group:
        send = await waiting(group, refused(sender.send([3])))
        receiver.close()
    assert send.result() == "the receiving end of this channel is closed"
    assert receiver.statistics().depth == 0


async def test_every_blocked_sender_is_refused_when_the_receiver_closes() -> None:
    sender, receiver = create_channel("c", capacity=2)
    await sender.send([1, 2])
    senders = [sender, sender.clone(), sender.clone()]
    async with tasks() as group:
        sends = [await waiting(group, refused(end.send([n]))) for n, end in enumerate(senders)]
        sends.append(await waiting(group, refused(sender.send_item(9))))
        receiver.close()
    assert [send.result() for send in sends] == ["the receiving end of this channel is closed"] * 4


async def test_every_waiting_receive_ends_when_the_receiver_closes() -> None:
    _, receiver = create_channel("c", capacity=2)
    async with tasks() as group:
        receives = [await waiting(group, receiver.receive()) for _ in range(3)]
        receiver.close()
    assert [receive.result() for receive in receives] == [END, END, END]


async def test_a_woken_sender_cancelled_before_it_runs_passes_its_turn_on() -> None:
    sender, receiver = create_channel("c", capacity=1)
    await sender.send([0])
    async with tasks() as group:
        first = await waiting(group, sender.send([1]))
        second = await waiting(group, sender.send([2]))
        assert await receiver.receive() == [0]  # room for one: wakes the first send
        first.cancel()  # before it could put its batch
        assert await receiver.receive() == [2]
    assert first.cancelled()
    assert second.result() is None
    assert receiver.statistics().depth == 0


async def test_closing_wakes_the_senders_after_one_cancelled_before_it_runs() -> None:
    sender, receiver = create_channel("c", capacity=1)
    await sender.send([0])
    async with tasks() as group:
        first = await waiting(group, sender.send([1]))
        second = await waiting(group, refused(sender.send([2])))
        receiver.close()  # wakes the first send, which is cancelled before it runs
        first.cancel()
    assert first.cancelled()
    assert second.result() == "the receiving end of this channel is closed"


async def test_closing_wakes_the_receives_after_one_cancelled_before_it_runs() -> None:
    _, receiver = create_channel("c", capacity=1)
    async with tasks() as group:
        first = await waiting(group, receiver.receive())
        second = await waiting(group, receiver.receive())
        receiver.close()
        first.cancel()
    assert first.cancelled()
    assert second.result() is END


async def test_send_item_wakes_a_receiver_for_each_batch_it_starts() -> None:
    sender, receiver = create_channel("c", capacity=100, batch_size=2)
    async with tasks() as group:
        first = await waiting(group, receiver.receive())
        second = await waiting(group, receiver.receive())
        await sender.send_item(1)  # a new batch: wakes the first receive
        await sender.send_item(2)  # joins it before the first receive runs: nobody more to wake
        await anyio.wait_all_tasks_blocked()
        assert first.result() == [1, 2]
        assert not second.done()
        await sender.send_item(3)
    assert second.result() == [3]


async def test_a_control_message_wakes_a_receiver_even_on_a_full_channel() -> None:
    mark = Watermark(1.0)
    sender, receiver = create_channel("c", capacity=2)
    async with tasks() as group:
        first = await waiting(group, receiver.receive())
        second = await waiting(group, receiver.receive())
        await sender.send([1, 2])  # fills the channel and wakes the first receive
        sender.send_control(mark)  # needs no room: wakes the second
    assert (first.result(), second.result()) == ([1, 2], mark)


@pytest.mark.parametrize(
    ("strategy", "batch", "dropped"),
    [("drop", [1, 2], 1), ("drop_oldest", [2, 3], 1), ("buffer", [1, 2], 0)],
)
async def test_what_a_strategy_admits_wakes_a_waiting_receiver(
    strategy: Strategy, batch: list[int], dropped: int
) -> None:
    sender, receiver = create_channel("c", capacity=2, strategy=strategy)
    async with tasks() as group:
        receive = await waiting(group, receiver.receive())
        await sender.send([1, 2, 3])  # does not fit: the strategy decides what is put
    assert receive.result() == batch
    assert receiver.statistics().dropped == dropped
    receiver.close()


async def test_what_moves_back_from_the_overflow_store_wakes_a_waiting_receiver() -> None:
    sender, receiver = create_channel("c", capacity=2, strategy="buffer")
    async with tasks() as group:
        first = await waiting(group, receiver.receive())
        second = await waiting(group, receiver.receive())
        await sender.send([1, 2, 3, 4, 5])  # [1, 2] queued (wakes the first), [3, 4, 5] spilled
        # Taken before the first receive runs: [3, 4] moves back, and must wake the second.
        assert receiver.receive_nowait() == [1, 2]
    assert (first.result(), second.result()) == ([3, 4], [5])
    sender.close()
    assert [await receiver.receive(), await receiver.receive()] == [END, END]
    assert receiver.statistics().overflow == 0
