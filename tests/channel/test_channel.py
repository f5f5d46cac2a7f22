"""The channel: batches, control messages, the two-ended close protocol and the strategies."""

from __future__ import annotations

import asyncio
import dataclasses

import anyio
import pytest

from sage_streams.channel import ABORTED, END, ChannelStatistics, Control, create_channel
from sage_streams.errors import BackpressureTimeout, BrokenChannelError


class Mark(Control):
    """A control message for tests (stands in for watermarks)."""

    def __init__(self, n: int) -> None:
        self.n = n


async def drain(receiver: object) -> list[object]:
    return [message async for message in receiver]  # type: ignore[attr-defined]


async def test_batches_and_control_arrive_in_order_then_end() -> None:
    sender, receiver = create_channel("c", capacity=10)
    mark = Mark(1)
    await sender.send([1, 2])
    sender.send_control(mark)
    await sender.send([3])
    sender.close()
    assert await drain(receiver) == [[1, 2], mark, [3]]
    assert await receiver.receive() is END  # ended stays ended


async def test_end_comes_only_after_the_last_clone_closes() -> None:
    sender, receiver = create_channel("c", capacity=10)
    other = sender.clone()
    await sender.send([1])
    sender.close()
    await other.send([2])
    assert receiver.has_message()
    assert await receiver.receive() == [1]
    assert await receiver.receive() == [2]
    assert not receiver.has_message()
    other.close()
    assert await receiver.receive() is END
    assert receiver.statistics().open_senders == 0


async def test_closing_twice_sends_one_end() -> None:
    sender, receiver = create_channel("c", capacity=10)
    clone = sender.clone()
    sender.close()
    sender.close()  # idempotent: must not count for the clone
    assert not receiver.has_message()
    clone.close()
    assert await drain(receiver) == []


async def test_closed_receiver_breaks_waiting_and_later_senders() -> None:
    sender, receiver = create_channel("c", capacity=2)
    await sender.send([1, 2])
    blocked = asyncio.create_task(sender.send([3]))
    await anyio.wait_all_tasks_blocked()  # the task has started and waits
    assert not blocked.done()
    receiver.close()
    with pytest.raises(BrokenChannelError):
        await blocked
    with pytest.raises(BrokenChannelError):
        await sender.send([4])
    with pytest.raises(BrokenChannelError):
        await sender.send_item(5)
    assert receiver.statistics().depth == 0
    assert receiver.statistics().receiver_open is False


@pytest.mark.parametrize("one_at_a_time", [False, True])
async def test_a_sender_waiting_for_room_when_the_stream_ends_is_refused(one_at_a_time: bool) -> None:
    sender, receiver = create_channel("c", capacity=2)
    await sender.send([1, 2])
    waiting = asyncio.create_task(sender.send_item(3) if one_at_a_time else sender.send([3]))
    await anyio.wait_all_tasks_blocked()  # the task has started and waits
    sender.close()  # another task ends the stream while the send waits: END goes in behind 2
    assert await receiver.receive() == [1, 2]  # makes room: the waiting send wakes
    with pytest.raises(BrokenChannelError, match="this channel has ended"):
        await waiting
    assert await receiver.receive() is END
    assert receiver.statistics().depth == 0


async def test_sending_after_close_is_an_error() -> None:
    sender, _ = create_channel("c", capacity=2)
    sender.close()
    with pytest.raises(BrokenChannelError, match="closed"):
        await sender.send([1])
    with pytest.raises(BrokenChannelError):
        sender.clone()


async def test_block_waits_for_room_and_counts_time_blocked() -> None:
    sender, receiver = create_channel("c", capacity=3)
    await sender.send([1, 2, 3])
    blocked = asyncio.create_task(sender.send([4]))
    await anyio.wait_all_tasks_blocked()  # the send has started and waits for room
    assert not blocked.done()
    assert await receiver.receive() == [1, 2, 3]
    await blocked
    assert await receiver.receive() == [4]
    stats = receiver.statistics()
    assert stats.blocked_seconds > 0
    assert stats.peak == 3


async def test_block_bound_holds_to_within_one_batch() -> None:
    sender, receiver = create_channel("c", capacity=5)
    await sender.send([1, 2, 3, 4])  # 4 < 5: admitted
    await sender.send([5, 6, 7])  # 4 < 5: admitted, depth 7 = capacity + batch - 1
    assert receiver.statistics().depth == 7
    late = asyncio.create_task(sender.send([8]))
    await anyio.wait_all_tasks_blocked()  # the task has started and waits
    assert not late.done()  # 7 >= 5: waits
    assert await receiver.receive() == [1, 2, 3, 4]
    await late
    assert receiver.statistics().peak == 7


@pytest.mark.parametrize("strategy", ["block", "drop", "drop_oldest"])
async def test_an_empty_batch_sends_nothing_even_on_a_full_channel(strategy: str) -> None:
    sender, receiver = create_channel("c", capacity=1, strategy=strategy, timeout=0.01)  # type: ignore[arg-type]
    await sender.send([])
    await sender.send([1])
    await sender.send([])  # full: neither waits, nor drops, nor raises
    sender.close()
    assert await drain(receiver) == [[1]]
    assert receiver.statistics().dropped == 0


async def test_block_timeout_raises_backpressure_timeout() -> None:
    sender, receiver = create_channel("c", capacity=1, timeout=0.01)
    await sender.send([1])
    with pytest.raises(BackpressureTimeout, match=r"'c' stayed full \(1 items\) for 0.01 s"):
        await sender.send([2])
    assert await receiver.receive() == [1]


async def test_discard_counts_what_an_error_policy_gave_up_as_dropped() -> None:
    sender, receiver = create_channel("c", capacity=1, timeout=0.01)
    await sender.send([1])
    with pytest.raises(BackpressureTimeout):
        await sender.send([2, 3])
    sender.discard(2)  # the policy decided to go on without them
    assert receiver.statistics().dropped == 2
    with pytest.raises(ValueError, match="cannot discard a negative number of items, got -1"):
        sender.discard(-1)
    assert await receiver.receive() == [1]


async def test_drop_discards_what_does_not_fit_and_counts_it() -> None:
    sender, receiver = create_channel("c", capacity=3, strategy="drop")
    await sender.send([1, 2])
    await sender.send([3, 4, 5])  # one fits
    await sender.send_item(6)  # full: dropped
    sender.send_control(Mark(0))  # never dropped
    sender.close()
    messages = await drain(receiver)
    assert messages[:2] == [[1, 2], [3]]
    assert isinstance(messages[2], Mark)
    assert receiver.statistics().dropped == 3


async def test_drop_oldest_keeps_the_newest_items_and_all_control() -> None:
    sender, receiver = create_channel("c", capacity=3, strategy="drop_oldest")
    await sender.send([1, 2])
    mark = Mark(1)
    sender.send_control(mark)
    await sender.send([3, 4, 5])
    sender.close()
    messages = await drain(receiver)
    items = [item for message in messages if isinstance(message, list) for item in message]
    assert items == [3, 4, 5]
    assert mark in messages
    assert receiver.statistics().dropped == 2


async def test_drop_oldest_leaves_no_empty_batch_where_it_evicted_one_whole() -> None:
    sender, receiver = create_channel("c", capacity=3, strategy="drop_oldest")
    first, second = Mark(1), Mark(2)
    await sender.send([1])
    sender.send_control(first)
    await sender.send([2, 3])
    sender.send_control(second)
    await sender.send([4, 5])  # evicts [1] and 2 of [2, 3]
    sender.close()
    assert await drain(receiver) == [first, [3], second, [4, 5]]
    assert receiver.statistics().dropped == 2


async def test_drop_oldest_does_not_mutate_a_shared_batch() -> None:
    shared = [1, 2, 3]
    sender, receiver = create_channel("c", capacity=3, strategy="drop_oldest")
    await sender.send(shared)
    await sender.send([4])
    assert shared == [1, 2, 3]
    assert await receiver.receive() == [2, 3]


async def test_send_item_builds_batches_at_the_tail() -> None:
    sender, receiver = create_channel("c", capacity=100, batch_size=3)
    for item in range(7):
        await sender.send_item(item)
    sender.close()
    assert await drain(receiver) == [[0, 1, 2], [3, 4, 5], [6]]


async def test_send_item_never_appends_to_a_batch_it_did_not_create() -> None:
    shared = [1]
    sender, receiver = create_channel("c", capacity=100)
    await sender.send(shared)
    await sender.send_item(2)
    assert shared == [1]
    assert await receiver.receive() == [1]
    assert await receiver.receive() == [2]


async def test_send_item_wakes_an_idle_receiver_at_once() -> None:
    sender, receiver = create_channel("c", capacity=100)
    waiting = asyncio.create_task(receiver.receive())
    await anyio.wait_all_tasks_blocked()  # the task has started and waits
    await sender.send_item("x")
    assert await asyncio.wait_for(waiting, 1) == ["x"]


async def test_abort_reaches_the_receiver_instead_of_end() -> None:
    sender, receiver = create_channel("c", capacity=10)
    await sender.send([1])
    sender.abort()
    assert await drain(receiver) == [[1], ABORTED]
    assert await receiver.receive() is ABORTED


async def test_statistics_is_a_frozen_record() -> None:
    sender, _ = create_channel("orders", capacity=4)
    await sender.send([1, 2])
    stats = sender.statistics()
    assert stats == ChannelStatistics(
        name="orders",
        depth=2,
        capacity=4,
        peak=2,
        dropped=0,
        blocked_seconds=0.0,
        open_senders=1,
        receiver_open=True,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.depth = 0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 0}, "capacity must be a positive int"),
        (
            {"capacity": 1, "strategy": "spill"},
            "unknown backpressure strategy 'spill'; expected one of 'block', 'drop', 'drop_oldest', 'buffer'",
        ),
        ({"capacity": 1, "timeout": 0}, "timeout must be a positive number"),
        ({"capacity": 1, "batch_size": 0}, "batch_size must be at least 1"),
    ],
)
def test_invalid_arguments_are_refused_with_a_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_channel("c", **kwargs)  # type: ignore[arg-type]


async def test_receive_nowait_and_a_watcher_let_one_task_wait_on_many_channels() -> None:
    bell = asyncio.Event()
    first_sender, first = create_channel("a", capacity=10)
    second_sender, second = create_channel("b", capacity=10)
    first.watch(bell.set)
    second.watch(bell.set)
    assert first.receive_nowait() is None
    await second_sender.send([1])
    assert bell.is_set()
    bell.clear()
    await first_sender.send_item("x")
    assert bell.is_set()
    bell.clear()
    second_sender.close()
    assert bell.is_set()  # control messages ring too
    assert (first.receive_nowait(), second.receive_nowait(), second.receive_nowait()) == (["x"], [1], END)
    assert second.receive_nowait() is END
    first.watch(None)
    await first_sender.send([2])
    assert first.has_message()
