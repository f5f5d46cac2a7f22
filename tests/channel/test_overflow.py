"""The overflow store and the ``"buffer"`` strategy: spill, refill, exact order, no file left."""

from __future__ import annotations

import ast
import asyncio
import enum
import gc
import math
import os
import pickle
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.channel import ABORTED, END, Control, Message, Receiver, Sender, Unreadable, create_channel
from sage_streams.channel.overflow import CODECS, OverflowStore, resolve_codec, same_value
from sage_streams.errors import BrokenChannelError, SpillError, StreamError


def _never_loads() -> Any:
    raise ValueError("this one never loads")


class CannotLoad:
    """Pickles, but its loader raises."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _never_loads, ()


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


class Color(enum.IntEnum):
    RED = 1


class Plain:
    """An object without ``__eq__``: it equals only itself, never its copy."""

    def __init__(self, n: int) -> None:
        self.n = n


@pytest.mark.parametrize(
    ("item", "back"),
    [
        ((1, "a"), "[1, 'a']"),
        ({1: "a"}, "{'1': 'a'}"),
        ([{"k": (1,)}], "[{'k': [1]}]"),
        (Color.RED, "1"),
        ({"flag": True, "n": Color.RED}, "{'flag': True, 'n': 1}"),
    ],
)
def test_the_json_codec_refuses_an_item_that_would_come_back_different(item: Any, back: str) -> None:
    store = OverflowStore("c", "json")
    with pytest.raises(SpillError) as caught:
        store.append([0, item])
    assert (caught.value.item, caught.value.index) == (item, 1)
    assert str(caught.value) == (
        f"cannot spill item {item!r} of channel 'c' with codec 'json': "
        f"it would come back as {back}, which is not the same"
    )
    assert (len(store), store.path) == (0, None)  # nothing of the batch was stored


def test_what_json_gives_back_exactly_spills() -> None:
    items = [{"a": [1, 2.5, None, True, "é"]}, [], -0.0, math.nan, 10**30, {"k": {"n": [math.inf]}}]
    store = OverflowStore("c", "json")
    store.append(items)
    back = store.take(10)
    assert repr(back) == repr(items)
    store.close()


def test_pickle_copies_are_not_compared_but_must_load() -> None:
    store = OverflowStore("c")
    plain = Plain(7)
    store.append([plain, math.nan, (1, {2})])
    copy, nan, rest = store.take(3)
    assert (type(copy), copy.n, copy is plain) == (Plain, 7, False)
    assert math.isnan(nan)
    assert rest == (1, {2})
    with pytest.raises(SpillError) as caught:
        store.append([1, CannotLoad()])
    assert caught.value.index == 1
    assert str(caught.value).endswith(
        "of channel 'c' with codec 'pickle': it would not load back: ValueError: this one never loads"
    )
    assert isinstance(caught.value.__cause__, ValueError)
    store.close()


def test_a_custom_codec_is_compared_unless_it_says_its_copies_are_exact() -> None:
    class Lossy(ReprCodec):
        def loads(self, data: bytes) -> Any:
            item = super().loads(data)
            return list(item) if isinstance(item, tuple) else item

    store = OverflowStore("c", Lossy())
    store.append([[1, 2]])
    with pytest.raises(SpillError, match=r"it would come back as \[1, 2\], which is not the same$"):
        store.append([(1, 2)])
    exact = Lossy()
    exact.exact = True  # type: ignore[attr-defined]
    trusted = OverflowStore("c", exact)
    trusted.append([(1, 2)])
    assert trusted.take(1) == [[1, 2]]  # the codec said so: the store believed it
    store.close()
    trusted.close()


def test_a_comparison_that_raises_is_a_spill_error_of_the_item() -> None:
    class Ambiguous:
        def __eq__(self, other: object) -> bool:
            raise ValueError("the truth value is ambiguous")

        __hash__ = object.__hash__

    class Keeps:
        """A codec that hands back the very object (it keeps it in memory)."""

        name = "keeps"

        def __init__(self) -> None:
            self.kept: list[Any] = []

        def dumps(self, item: Any) -> bytes:
            self.kept.append(item)
            return str(len(self.kept) - 1).encode()

        def loads(self, data: bytes) -> Any:
            return self.kept[int(data)]

    store = OverflowStore("c", Keeps())
    item = Ambiguous()
    with pytest.raises(SpillError, match=r"it cannot be compared: ValueError: the truth value is ambiguous$"):
        store.append([item])


def test_same_value_is_equality_with_exact_types_all_the_way_down() -> None:
    assert same_value({"a": [1, (2.5, None)]}, {"a": [1, (2.5, None)]})
    assert same_value(math.nan, math.nan)
    assert same_value({1, 2}, {2, 1})
    for sent, back in [
        ((1,), [1]),
        (1, 1.0),
        (1, True),
        (0.0, -0.0),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # the order iteration shows
        ({1: "a"}, {"1": "a"}),
        ([1, [2]], [1, [2, 3]]),
        (Color.RED, 1),
        (Plain(1), Plain(1)),
    ]:
        assert not same_value(sent, back), (sent, back)


def test_take_stops_before_an_unreadable_item_and_the_next_take_raises_it_without_reading_again() -> None:
    codec = FlakyCodec(3, lambda read: True)
    store = OverflowStore("c", codec)
    store.append([1, 2, 3, 4])
    assert store.take(10) == [1, 2]
    assert codec.reads == 1
    with pytest.raises(SpillError) as caught:
        store.take(10)
    assert (caught.value.item, codec.reads, len(store)) == (b"3", 1, 1)
    assert store.take(10) == [4]
    assert store.empty
    store.close()


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
    await anyio.wait_all_tasks_blocked()  # the receive has started and waits
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


class FlakyCodec(ReprCodec):
    """Reads the item ``bad`` back when its spill is checked, then fails on the reads that
    ``failing`` says (counted from 1 after the check)."""

    def __init__(self, bad: Any, failing: Callable[[int], bool]) -> None:
        super().__init__()
        self.bad = bad
        self.failing = failing
        self.reads = -1  # the check is read 0

    def loads(self, data: bytes) -> Any:
        item = super().loads(data)
        if item == self.bad:
            self.reads += 1
            if self.reads and self.failing(self.reads):
                raise ValueError("flaky disk")
        return item


async def test_an_item_that_cannot_be_read_back_comes_as_unreadable_in_its_place() -> None:
    sender, receiver = buffer_channel(1, codec=FlakyCodec(2, lambda read: read == 1))
    await sender.send([1, 2, 3, 4])
    assert await receiver.receive() == [1]
    unreadable = await receiver.receive()
    assert isinstance(unreadable, Unreadable)
    error = unreadable.error
    assert (type(error), error.item, error.index) == (SpillError, b"2", None)
    assert (
        str(error)
        == "cannot read back an item spilled by channel 'c' with codec 'repr': ValueError: flaky disk"
    )
    assert isinstance(error.__cause__, ValueError)
    with pytest.raises(SpillError) as caught:
        unreadable.read()  # the first read reports the error that made it, to the policy
    assert caught.value is error
    assert unreadable.read() == 2  # a retry reads it again: the disk recovered
    stats = receiver.statistics()
    assert (stats.depth, stats.overflow, stats.dropped) == (1, 1, 0)
    sender.close()
    assert await drain(receiver) == [[3], [4], END]


async def test_an_unreadable_item_keeps_its_place_between_items_and_control_messages() -> None:
    sender, receiver = buffer_channel(2, codec=FlakyCodec("b", lambda read: True), batch_size=3)
    await sender.send(["fits", "fits"])
    await sender.send(["a", "b", "c"])
    sender.send_control(Mark(1))
    await sender.send(["d"])
    sender.close()
    messages = await drain(receiver)
    shown = [
        m if isinstance(m, list) else type(m).__name__ if isinstance(m, Unreadable) else repr(m)
        for m in messages
    ]
    assert shown == [["fits", "fits"], ["a"], "Unreadable", ["c"], "Mark(1)", ["d"], "END"]


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
            await asyncio.sleep(0)  # a yield, not a wait: the reader gets turns while this sends
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


class DamagedOnce(ReprCodec):
    """Fails to read each item of ``damaged`` back the first time after its spill was checked."""

    def __init__(self, damaged: frozenset[int]) -> None:
        super().__init__()
        self.reads: Counter[int] = Counter()
        self.damaged = damaged

    def loads(self, data: bytes) -> Any:
        item = super().loads(data)
        if item in self.damaged:
            self.reads[item] += 1
            if self.reads[item] == 2:
                raise ValueError("damaged")
        return item


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    ops=operations,
    capacity=st.integers(1, 6),
    batch_size=st.integers(1, 4),
    damaged=st.frozensets(st.integers(0, 60), max_size=8),
)
def test_any_interleaving_receives_exactly_what_was_sent_in_order(
    ops: list[Op], capacity: int, batch_size: int, damaged: frozenset[int]
) -> None:
    """Also when some items cannot be read back the first time: each comes as an Unreadable in
    its place, and reading it again gives the item."""
    with tempfile.TemporaryDirectory() as directory, mock.patch.object(tempfile, "tempdir", directory):
        sent, received = asyncio.run(interleave(ops, capacity, batch_size, DamagedOnce(damaged)))
        assert os.listdir(directory) == []
    assert received == sent


async def interleave(
    ops: list[Op], capacity: int, batch_size: int, codec: DamagedOnce
) -> tuple[list[object], list[object]]:
    """Run ``ops`` against a buffer channel, checking its statistics at every step; return
    the items and marks sent and received, each flattened in order."""
    sender, receiver = buffer_channel(capacity, batch_size=batch_size, codec=codec)
    sent: list[object] = []
    received: list[object] = []

    def take(message: Message) -> None:
        if isinstance(message, list):
            received.extend(message)
        elif isinstance(message, Unreadable):
            assert message.error.item in [repr(n).encode() for n in codec.damaged]
            with pytest.raises(SpillError):
                message.read()
            received.append(message.read())
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


_json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.sampled_from(list(Color)),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(st.text(max_size=3) | st.integers(-3, 3), inner, max_size=3)
    ),
    max_leaves=12,
)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(items=st.lists(_json_like, max_size=12), capacity=st.integers(1, 4))
def test_results_never_depend_on_which_items_spilled(items: list[Any], capacity: int) -> None:
    """What a json ``buffer`` channel delivers is exactly what was sent, whether it spilled or
    not: an item is refused only when its JSON copy would differ, judged here by its repr."""
    sent, refused, received = asyncio.run(send_one_by_one(items, capacity))
    assert repr(received) == repr(sent)
    assert len(sent) + len(refused) == len(items)
    json = CODECS["json"]
    assert [item for item in refused if repr(json.loads(json.dumps(item))) == repr(item)] == []


async def send_one_by_one(items: list[Any], capacity: int) -> tuple[list[Any], list[Any], list[Any]]:
    """Send ``items`` one at a time into a json buffer channel read only at the end: the first
    ``capacity`` stay in memory, the rest spill; return what was sent, refused and received."""
    sender, receiver = buffer_channel(capacity, codec="json")
    sent: list[Any] = []
    refused: list[Any] = []
    for item in items:
        try:
            await sender.send_item(item)
        except SpillError as error:
            refused.append(error.item)
        else:
            sent.append(item)
    sender.close()
    received = [item for message in (await drain(receiver))[:-1] for item in message]  # type: ignore[union-attr]
    return sent, refused, received
