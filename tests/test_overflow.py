"""The overflow store and the ``"buffer"`` strategy: spill, refill, exact order, no file left."""

from __future__ import annotations

import ast
import asyncio
import gc
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.channel import ABORTED, END, Control, Message, Receiver, Sender, create_channel
from sage_streams.errors import BrokenChannelError, StreamError
from sage_streams.overflow import CODECS, OverflowStore, SpillError, resolve_codec


class Mark(Control):
    """A control message for tests (stands in for watermarks)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Mark({self.n})"


class ReprCodec:
    """A custom codec: ``repr`` out, ``literal_eval`` back, counting its calls."""

    name = "repr"

    def __init__(self) -> None:
        self.calls = 0

    def dumps(self, item: Any) -> bytes:
        self.calls += 1
        return repr(item).encode()

    def loads(self, data: bytes) -> Any:
        return ast.literal_eval(data.decode())


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private system temp dir, so that a test sees exactly the files its channels made."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def files_in(directory: Path) -> list[Path]:
    return list(directory.iterdir())


def only_file(directory: Path) -> Path:
    (path,) = files_in(directory)
    return path


def buffer_channel(capacity: int, **kwargs: Any) -> tuple[Sender, Receiver]:
    return create_channel("c", capacity=capacity, strategy="buffer", **kwargs)


async def drain(receiver: Receiver) -> list[Message]:
    """Every message up to and including END or ABORTED."""
    messages = []
    while True:
        message = await receiver.receive()
        messages.append(message)
        if message is END or message is ABORTED:
            return messages


# The store on its own.


def test_store_returns_items_and_control_messages_in_order() -> None:
    store = OverflowStore("c", "pickle")
    mark = Mark(1)
    store.append([1, 2, 3])
    store.append_control(mark)
    store.append([4, (5, "five")])
    store.append_control(END)
    assert (len(store), store.spilled) == (5, 5)
    assert store.take_control() is None  # an item comes first
    assert store.take(2) == [1, 2]
    assert store.take(10) == [3]  # stops before the mark
    assert store.take(10) == []
    assert store.take_control() is mark
    assert store.take(10) == [4, (5, "five")]
    assert store.take_control() is END
    assert (len(store), store.spilled, store.empty) == (0, 5, True)
    store.close()


def test_store_appends_a_tail_and_names_positions_in_the_whole_batch() -> None:
    store = OverflowStore("c", "json")
    store.append([0, 1, 2, 3], start=2)
    assert store.take(10) == [2, 3]
    with pytest.raises(SpillError) as caught:
        store.append([{0}, 1, {2}], start=1)
    assert (caught.value.item, caught.value.index) == ({2}, 2)
    store.close()


def test_store_file_lives_from_the_first_append_to_close(temp_dir: Path) -> None:
    store = OverflowStore("c")
    store.append_control(END)
    assert (store.path, files_in(temp_dir)) == (None, [])
    store.append(["x"])
    path = only_file(temp_dir)
    assert store.path == str(path)
    store.close()
    assert not path.exists()
    store.close()  # idempotent
    assert (len(store), store.empty, store.closed) == (0, True, True)


def test_a_closed_store_refuses_appends() -> None:
    store = OverflowStore("orders")
    store.close()
    with pytest.raises(ValueError, match=r"^the overflow store of channel 'orders' is closed$"):
        store.append([1])
    with pytest.raises(ValueError, match="closed"):
        store.append_control(END)


def test_a_forgotten_store_deletes_its_file(temp_dir: Path) -> None:
    store = OverflowStore("c")
    store.append([1])
    path = only_file(temp_dir)
    del store
    gc.collect()
    assert not path.exists()


def test_a_store_reads_back_many_batches_in_chunks_in_order() -> None:
    store = OverflowStore("c")
    for start in range(0, 10_000, 1000):
        store.append(list(range(start, start + 1000)))
    taken: list[int] = []
    while len(store):
        taken += store.take(777)
    assert taken == list(range(10_000))
    store.close()


# Codecs.


def test_builtin_codecs_round_trip() -> None:
    pickled = CODECS["pickle"]
    assert pickled.loads(pickled.dumps({"a": (1, {2.5})})) == {"a": (1, {2.5})}
    assert pickled.dumps(1) == pickle.dumps(1, protocol=pickle.HIGHEST_PROTOCOL)
    as_json = CODECS["json"]
    assert as_json.dumps({"é": [1, None]}) == '{"é":[1,null]}'.encode()
    assert as_json.loads(as_json.dumps({"é": (1, None)})) == {"é": [1, None]}


def test_resolve_codec_takes_a_name_or_a_codec_object() -> None:
    assert resolve_codec("json") is CODECS["json"]
    custom = ReprCodec()
    assert resolve_codec(custom) is custom
    with pytest.raises(ValueError, match=r"^unknown overflow codec 'xml'; expected one of 'pickle', 'json'$"):
        resolve_codec("xml")
    with pytest.raises(TypeError, match=r"^a codec needs dumps\(\) and loads\(\) methods, got 42$"):
        resolve_codec(42)  # type: ignore[arg-type]


def test_an_unknown_codec_name_is_refused_when_the_channel_is_created() -> None:
    with pytest.raises(ValueError, match=r"unknown overflow codec 'xml'; expected one of 'pickle', 'json'"):
        buffer_channel(1, codec="xml")


# The "buffer" strategy.


async def test_buffer_spills_what_does_not_fit_and_refills_in_exact_order() -> None:
    sender, receiver = buffer_channel(3)
    mark = Mark(1)
    await sender.send([1, 2])
    await sender.send([3, 4, 5])  # 3 fits, 4 and 5 spill
    sender.send_control(mark)  # behind the spilled items
    await sender.send([6])  # room or not, behind them too
    sender.close()  # END as well
    stats = receiver.statistics()
    assert (stats.depth, stats.spilled, stats.overflow, stats.dropped) == (3, 3, 3, 0)
    assert await drain(receiver) == [[1, 2], [3], [4, 5], mark, [6], END]
    stats = receiver.statistics()
    assert (stats.depth, stats.peak, stats.spilled, stats.overflow, stats.dropped) == (0, 3, 3, 0, 0)


async def test_refill_comes_in_batches_up_to_the_free_room() -> None:
    sender, receiver = buffer_channel(4, batch_size=3)
    await sender.send(list(range(12)))
    assert receiver.statistics().overflow == 8
    assert await receiver.receive() == [0, 1, 2, 3]  # frees 4: refilled as 3 + 1
    assert receiver.statistics().depth == 4
    assert receiver.statistics().overflow == 4
    sender.close()
    assert await drain(receiver) == [[4, 5, 6], [7], [8, 9, 10], [11], END]


async def test_has_message_receive_nowait_and_the_doorbell_see_spilled_data() -> None:
    bell = asyncio.Event()
    mark = Mark(0)
    sender, receiver = buffer_channel(2)
    receiver.watch(bell.set)
    for send in (sender.send([1, 2, 3, 4, 5]), sender.send([6])):
        bell.clear()
        await send
        assert bell.is_set()  # rings when a batch spills whole too
    bell.clear()
    sender.send_control(mark)
    assert bell.is_set()
    sender.close()
    received = []
    while receiver.has_message():
        message = receiver.receive_nowait()
        received.append(message)
        if message is END:
            break
    assert received == [[1, 2], [3, 4], [5, 6], mark, END]
    assert receiver.receive_nowait() is END


async def test_a_waiting_receiver_gets_the_spilled_rest_without_waiting_again() -> None:
    sender, receiver = buffer_channel(2)
    waiting = asyncio.create_task(receiver.receive())
    await asyncio.sleep(0)
    await sender.send([1, 2, 3])
    assert await asyncio.wait_for(waiting, 1) == [1, 2]
    assert receiver.has_message()
    assert receiver.receive_nowait() == [3]


async def test_send_item_spills_single_items_in_order() -> None:
    sender, receiver = buffer_channel(2, batch_size=2)
    for item in range(5):
        await sender.send_item(item)
    sender.close()
    assert receiver.statistics().spilled == 3
    assert await drain(receiver) == [[0, 1], [2, 3], [4], END]


async def test_the_producer_never_waits() -> None:
    sender, receiver = buffer_channel(1)
    for item in range(50):
        await sender.send([item])
    stats = receiver.statistics()
    assert (stats.depth, stats.overflow, stats.blocked_seconds) == (1, 49, 0.0)
    receiver.close()


async def test_a_codec_error_raises_spill_error_and_leaves_the_channel_unchanged() -> None:
    sender, receiver = buffer_channel(2, codec="json")
    await sender.send([1])
    with pytest.raises(SpillError) as caught:
        await sender.send([2, 3, {4}, 5])  # 2 would fit, the rest would spill
    error = caught.value
    assert (error.item, error.index) == ({4}, 2)
    assert str(error) == (
        "cannot spill item {4} of channel 'c' with codec 'json': "
        "TypeError: Object of type set is not JSON serializable"
    )
    assert isinstance(error, StreamError)
    assert isinstance(error.__cause__, TypeError)
    stats = receiver.statistics()
    assert (stats.depth, stats.spilled, stats.overflow, stats.dropped) == (1, 0, 0, 0)
    await sender.send([2, 3, 5])  # without the bad item
    sender.close()
    assert await drain(receiver) == [[1], [2], [3], [5], END]


async def test_pickle_cannot_spill_a_local_lambda() -> None:
    def make() -> Any:
        return lambda: None

    bad = make()
    sender, receiver = buffer_channel(1)
    await sender.send(["fits"])
    with pytest.raises(SpillError) as caught:
        await sender.send_item(bad)
    assert (caught.value.item, caught.value.index) == (bad, 0)
    assert str(caught.value) == (
        f"cannot spill item {bad!r} of channel 'c' with codec 'pickle': AttributeError: "
        "Can't pickle local object "
        "'test_pickle_cannot_spill_a_local_lambda.<locals>.make.<locals>.<lambda>'"
    )
    await sender.send_item("next")
    sender.close()
    assert await drain(receiver) == [["fits"], ["next"], END]


async def test_a_custom_codec_serializes_what_spills() -> None:
    codec = ReprCodec()
    sender, receiver = buffer_channel(2, codec=codec)
    await sender.send([(1, "a"), (2, "b"), (3, "c"), (4, "d")])
    sender.close()
    assert await drain(receiver) == [[(1, "a"), (2, "b")], [(3, "c"), (4, "d")], END]
    assert codec.calls == 2


async def test_an_item_that_cannot_be_read_back_raises_and_loses_nothing() -> None:
    class FailsOnce(ReprCodec):
        def loads(self, data: bytes) -> Any:
            if self.calls == 1:
                self.calls += 1
                raise ValueError("flaky disk")
            return super().loads(data)

    sender, receiver = buffer_channel(1, codec=FailsOnce())
    await sender.send([1, 2])
    with pytest.raises(ValueError, match="flaky disk"):
        await receiver.receive()  # [1] is taken, but [2] cannot be moved back
    stats = receiver.statistics()
    assert (stats.depth, stats.overflow) == (1, 1)
    sender.close()
    assert await drain(receiver) == [[1], [2], END]


async def test_spilled_items_come_back_as_equal_copies() -> None:
    item = {"nested": [1, 2]}
    sender, receiver = buffer_channel(1)
    await sender.send([{"first": 0}, item])
    assert await receiver.receive() == [{"first": 0}]
    batch = await receiver.receive()
    assert batch == [item]
    assert isinstance(batch, list)
    assert batch[0] is not item
    receiver.close()


# No temporary file survives.


async def test_the_file_is_deleted_when_end_is_received(temp_dir: Path) -> None:
    sender, receiver = buffer_channel(1)
    await sender.send([1, 2, 3])
    path = only_file(temp_dir)
    sender.close()
    assert await drain(receiver) == [[1], [2], [3], END]
    assert not path.exists()


async def test_the_file_is_deleted_when_aborted_is_received(temp_dir: Path) -> None:
    sender, receiver = buffer_channel(1)
    other = sender.clone()
    await sender.send([1, 2])
    path = only_file(temp_dir)
    sender.abort()
    assert await drain(receiver) == [[1], [2], ABORTED]
    assert not path.exists()
    # The receiver has ended: what a surviving clone sends that does not fit is dropped,
    # and no new file is made for it.
    await other.send([3, 4])
    assert files_in(temp_dir) == []
    assert receiver.statistics().dropped == 2
    other.close()


async def test_the_file_is_deleted_when_the_receiver_closes_with_data_spilled(temp_dir: Path) -> None:
    sender, receiver = buffer_channel(1)
    await sender.send([1, 2, 3])
    sender.send_control(Mark(1))
    path = only_file(temp_dir)
    receiver.close()
    assert not path.exists()
    stats = receiver.statistics()
    assert (stats.depth, stats.spilled, stats.overflow, stats.receiver_open) == (0, 2, 0, False)
    with pytest.raises(BrokenChannelError):
        await sender.send([4, 5])
    sender.send_control(Mark(2))  # discarded, as on any closed channel
    assert files_in(temp_dir) == []


async def test_the_file_is_deleted_when_an_unread_channel_is_forgotten(temp_dir: Path) -> None:
    sender, receiver = buffer_channel(1)
    await sender.send([1, 2])
    path = only_file(temp_dir)
    del sender, receiver
    gc.collect()
    assert not path.exists()


# Volume and any interleaving.


async def test_a_hundred_thousand_items_through_a_small_buffer_with_a_slow_reader(temp_dir: Path) -> None:
    sender, receiver = buffer_channel(100)
    total = 100_000

    async def produce() -> None:
        for start in range(0, total, 500):
            await sender.send(list(range(start, start + 500)))
            await asyncio.sleep(0)
        sender.close()

    async def consume() -> list[int]:
        received: list[int] = []
        async for message in receiver:
            assert receiver.statistics().depth <= 100
            assert isinstance(message, list)
            received += message
            await asyncio.sleep(0)  # slower than the producer: a yield per hundred items
        return received

    _, received = await asyncio.gather(produce(), consume())
    assert received == list(range(total))
    stats = receiver.statistics()
    assert (stats.peak, stats.overflow, stats.dropped) == (100, 0, 0)
    assert stats.spilled > total // 2
    assert files_in(temp_dir) == []


Op = tuple[str, int]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(1, 7)),
        st.tuples(st.just("item"), st.just(1)),
        st.tuples(st.just("mark"), st.just(0)),
        st.tuples(st.just("receive"), st.integers(1, 3)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops=operations, capacity=st.integers(1, 6), batch_size=st.integers(1, 4))
def test_any_interleaving_receives_exactly_what_was_sent_in_order(
    ops: list[Op], capacity: int, batch_size: int
) -> None:
    with tempfile.TemporaryDirectory() as directory, mock.patch.object(tempfile, "tempdir", directory):
        sent, received = asyncio.run(interleave(ops, capacity, batch_size))
        assert os.listdir(directory) == []
    assert received == sent


async def interleave(ops: list[Op], capacity: int, batch_size: int) -> tuple[list[object], list[object]]:
    """Run ``ops`` against a buffer channel, checking its statistics at every step; return
    the items and marks sent and received, each flattened in order."""
    sender, receiver = buffer_channel(capacity, batch_size=batch_size)
    sent: list[object] = []
    received: list[object] = []

    def take(message: Message) -> None:
        if isinstance(message, list):
            received.extend(message)
        else:
            received.append(message)

    for kind, n in ops:
        if kind == "send":
            batch = list(range(len(sent), len(sent) + n))
            sent.extend(batch)
            await sender.send(batch)
        elif kind == "item":
            sent.append(len(sent))
            await sender.send_item(sent[-1])
        elif kind == "mark":
            sent.append(Mark(len(sent)))
            sender.send_control(sent[-1])  # type: ignore[arg-type]
        else:
            for _ in range(n):
                if (message := receiver.receive_nowait()) is not None:
                    take(message)
        stats = receiver.statistics()
        pending_items = sum(1 for x in sent[len(received) :] if not isinstance(x, Mark))
        assert stats.depth <= capacity
        assert stats.depth + stats.overflow == pending_items
        assert stats.dropped == 0
        assert receiver.has_message() or len(received) == len(sent)
    sender.close()
    for message in (await drain(receiver))[:-1]:
        take(message)
    return sent, received
