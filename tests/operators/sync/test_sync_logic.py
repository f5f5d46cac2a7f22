"""The pure synchronization logic: exact outputs by hand, config validation, and properties over
random inputs split into random batches and pushed in random interleavings. No event loop."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.errors import StreamError
from sage_streams.operators.base import ItemError
from sage_streams.operators.sync.config import SyncConfig, sync_config
from sage_streams.operators.sync.state import (
    EventSync,
    SyncItemError,
    SyncOutput,
    TimestampSync,
)

TICK = {"type": "tick"}


def ev(ts: Any, name: str) -> dict[str, Any]:
    return {"timestamp": ts, "name": name}


def names(items: Sequence[Any]) -> list[str]:
    return [item["name"] for item in items]


def tuple_names(output: SyncOutput) -> list[tuple[str, ...]]:
    return [tuple(item["name"] for item in group) for group in output.tuples]


def ts_sync(n: int = 2, tolerance: float = 1.0, **options: Any) -> TimestampSync:
    sync = sync_config(n, "timestamp", tolerance, **options).build()
    assert isinstance(sync, TimestampSync)
    return sync


def is_tick(item: Any) -> bool:
    return bool(item == TICK)


def event_sync(n: int = 2, sync_event: Any = is_tick, **options: Any) -> EventSync:
    sync = sync_config(n, "event", sync_event=sync_event, **options).build()
    assert isinstance(sync, EventSync)
    return sync


# -- timestamp: exact outputs ----------------------------------------------------------------------


def test_heads_within_tolerance_form_a_tuple_in_input_order() -> None:
    sync = ts_sync(tolerance=0.5)
    assert sync.push(1, [ev(1.25, "b1")]) == SyncOutput([], [])
    out = sync.push(0, [ev(1.0, "a1"), ev(2.0, "a2")])
    assert tuple_names(out) == [("a1", "b1")]
    assert out.unmatched == []
    assert names(sync.finish().unmatched) == ["a2"]


def test_the_earliest_head_is_given_up_when_heads_are_too_far_apart() -> None:
    sync = ts_sync(tolerance=1.0)
    sync.push(0, [ev(0, "a0"), ev(1, "a1"), ev(5, "a5")])
    out = sync.push(1, [ev(3, "b3"), ev(5.5, "b5")])
    # heads 0,3: give up a0; heads 1,3: give up a1; heads 5,3: give up b3; heads 5,5.5: match
    assert names(out.unmatched) == ["a0", "a1", "b3"]
    assert tuple_names(out) == [("a5", "b5")]


def test_tolerance_boundary_exactly_equal_matches_just_above_does_not() -> None:
    sync = ts_sync(tolerance=0.5)
    sync.push(0, [ev(1.0, "a"), ev(3.0, "c")])
    assert tuple_names(sync.push(1, [ev(1.5, "b")])) == [("a", "b")]
    out = sync.push(1, [ev(3.5 + 2**-20, "d")])
    assert tuple_names(out) == []
    assert names(out.unmatched) == ["c"]


def test_zero_tolerance_needs_equal_timestamps() -> None:
    sync = ts_sync(tolerance=0)
    sync.push(0, [ev(1, "a1"), ev(2, "a2")])
    out = sync.push(1, [ev(2, "b2")])
    assert tuple_names(out) == [("a2", "b2")]
    assert names(out.unmatched) == ["a1"]


def test_ties_give_up_the_lowest_input_index_first() -> None:
    sync = ts_sync(3, tolerance=1.0)
    sync.push(1, [ev(0, "b")])
    sync.push(2, [ev(5, "c")])
    out = sync.push(0, [ev(0, "a"), ev(5, "a5")])
    # heads 0,0,5: a and b tie, a (input 0) goes first; heads 5,0,5: b; input 1 is now empty
    assert names(out.unmatched) == ["a", "b"]
    assert tuple_names(out) == []
    assert tuple_names(sync.push(1, [ev(5.5, "b5")])) == [("a5", "b5", "c")]


def test_three_inputs() -> None:
    sync = ts_sync(3, tolerance=1.0)
    assert sync.push(0, [ev(0, "a0"), ev(2, "a2"), ev(4, "a4")]) == SyncOutput()
    assert sync.push(1, [ev(0.5, "b0"), ev(4.5, "b4")]) == SyncOutput()
    out = sync.push(2, [ev(1, "c1"), ev(2.5, "c2"), ev(3.5, "c3")])
    # (0,0.5,1) match; heads 2,4.5,2.5: give up a2; 4,4.5,2.5: give up c2; 4,4.5,3.5 match
    assert tuple_names(out) == [("a0", "b0", "c1"), ("a4", "b4", "c3")]
    assert names(out.unmatched) == ["a2", "c2"]
    assert sync.finish() == SyncOutput()


def test_an_ended_input_with_items_left_can_still_match() -> None:
    sync = ts_sync()
    sync.push(0, [ev(1, "a1"), ev(2, "a2")])
    assert sync.end(0) == SyncOutput()
    assert tuple_names(sync.push(1, [ev(1, "b1")])) == [("a1", "b1")]
    assert tuple_names(sync.push(1, [ev(2, "b2")])) == [("a2", "b2")]
    # input 0 has now run dry: later pushes cannot match
    out = sync.push(1, [ev(3, "b3")])
    assert out.tuples == []
    assert names(out.unmatched) == ["b3"]


def test_an_ended_empty_input_gives_up_everything_queued_earliest_first() -> None:
    sync = ts_sync(3)
    sync.push(1, [ev(3, "b3"), ev(4, "b4")])
    sync.push(2, [ev(1, "c1"), ev(3, "c3")])
    out = sync.end(0)
    assert out.tuples == []
    assert names(out.unmatched) == ["c1", "b3", "c3", "b4"]
    assert names(sync.push(2, [ev(9, "c9"), ev(10, "c10")]).unmatched) == ["c9", "c10"]
    assert sync.finish() == SyncOutput()


def test_end_is_idempotent_and_push_after_end_is_refused() -> None:
    sync = ts_sync()
    sync.push(1, [ev(1, "b")])
    assert names(sync.end(0).unmatched) == ["b"]
    assert sync.end(0) == SyncOutput()
    with pytest.raises(StreamError, match="input 0 has ended; nothing can be pushed to it"):
        sync.push(0, [ev(1, "a")])
    with pytest.raises(IndexError, match="input index 2 out of range for 2 inputs"):
        sync.push(2, [])


def test_finish_gives_up_everything_earliest_first() -> None:
    sync = ts_sync(tolerance=0.1)
    sync.push(0, [ev(5, "a5"), ev(6, "a6")])
    sync.push(1, [ev(1, "b1"), ev(5.05, "b5")])  # b1 given up, then a5 + b5 match
    sync.push(1, [ev(7, "b7"), ev(8, "b8")])  # a6 given up
    sync.push(0, [ev(9, "a9")])  # b7, b8 given up; a9 waits
    sync.push(1, [])
    out = sync.finish()
    assert names(out.unmatched) == ["a9"]
    sync2 = ts_sync()
    sync2.push(0, [ev(2, "a2"), ev(4, "a4")])
    assert names(sync2.finish().unmatched) == ["a2", "a4"]


def test_wants_is_false_when_max_buffered_items_are_queued() -> None:
    sync = ts_sync(max_buffered=2)
    assert sync.wants(0)
    assert sync.wants(1)
    sync.push(0, [ev(1, "a1")])
    assert sync.wants(0)
    sync.push(0, [ev(2, "a2")])
    assert not sync.wants(0)
    assert sync.wants(1)
    sync.push(1, [ev(1, "b1")])  # matches a1: room again
    assert sync.wants(0)
    sync.end(1)
    assert not sync.wants(1)  # ended inputs are never read


def test_timestamps_by_function_and_datetimes() -> None:
    sync = ts_sync(tolerance=2.0, timestamp=lambda item: item[0])
    out = sync.push(0, [(10, "a")])
    out = sync.push(1, [(12, "b")])
    assert out.tuples == [((10, "a"), (12, "b"))]


@pytest.mark.parametrize(
    ("bad", "error_type", "message"),
    [
        ({"name": "x"}, KeyError, "item has no timestamp field 'timestamp'"),
        (ev(math.nan, "x"), ValueError, "timestamp must be finite, got nan"),
        (ev("2", "x"), TypeError, "timestamp must be a number or datetime, got '2'"),
    ],
)
def test_a_bad_timestamp_is_an_item_error_with_index_and_partial_output(
    bad: dict[str, Any], error_type: type[Exception], message: str
) -> None:
    sync = ts_sync(tolerance=0.5)
    sync.push(1, [ev(1, "b1"), ev(3, "b3")])
    batch = [ev(0, "a0"), ev(1.2, "a1"), bad, ev(3, "a3")]
    with pytest.raises(SyncItemError) as caught:
        sync.push(0, batch)
    error = caught.value
    assert isinstance(error, ItemError)
    assert error.index == 2
    assert error.item is bad
    assert isinstance(error.error, error_type)
    assert message in str(error.error)
    assert tuple_names(error.partial) == [("a1", "b1")]
    assert names(error.partial.unmatched) == ["a0"]
    # the caller continues after the failing item; nothing is lost or repeated
    rest = sync.push(0, batch[error.index + 1 :])
    assert tuple_names(rest) == [("a3", "b3")]
    assert sync.finish() == SyncOutput()


def test_a_bad_first_item_produces_nothing() -> None:
    sync = ts_sync()
    with pytest.raises(SyncItemError) as caught:
        sync.push(0, [{"timestamp": None}])
    assert caught.value.index == 0
    assert caught.value.partial == SyncOutput()


# -- event: exact outputs --------------------------------------------------------------------------


def test_event_rounds_with_a_marker_value() -> None:
    sync = event_sync(sync_event="tick")
    assert sync.push(0, [{"v": 1}, {"v": 2}, TICK]) == SyncOutput()
    assert not sync.wants(0)
    assert sync.wants(1)
    out = sync.push(1, [{"v": 10}, TICK])
    assert out.tuples == [([{"v": 1}, {"v": 2}], [{"v": 10}])]
    assert out.unmatched == []
    assert sync.wants(0)
    assert sync.wants(1)
    assert sync.push(0, [TICK]) == SyncOutput()
    assert sync.push(1, [TICK]).tuples == [([], [])]  # two markers in a row: an empty round
    assert sync.finish() == SyncOutput()


def test_event_rounds_with_a_predicate_on_any_item() -> None:
    sync = event_sync(3, sync_event=lambda item: item == "|")
    sync.push(0, ["a", "|"])
    sync.push(2, ["|"])
    out = sync.push(1, ["b1", "b2", "|"])
    assert out.tuples == [(["a"], ["b1", "b2"], [])]


def test_a_mapping_without_type_is_an_ordinary_item() -> None:
    sync = event_sync(sync_event="tick")
    sync.push(0, [{"x": 1}, {"type": "other"}, TICK])
    assert sync.push(1, [TICK]).tuples == [([{"x": 1}, {"type": "other"}], [])]


def test_items_after_a_marker_in_the_same_batch_wait_for_the_next_round() -> None:
    sync = event_sync(sync_event="tick")
    out = sync.push(0, [{"v": "a1"}, TICK, {"v": "a2"}, TICK, {"v": "a3"}, TICK, {"v": "a4"}])
    assert out == SyncOutput()
    assert not sync.wants(0)
    out = sync.push(1, [{"v": "b1"}, TICK, {"v": "b2"}, TICK])
    assert out.tuples == [([{"v": "a1"}], [{"v": "b1"}]), ([{"v": "a2"}], [{"v": "b2"}])]
    assert not sync.wants(0)  # held at its third marker, a4 waiting
    assert sync.wants(1)
    out = sync.push(1, [{"v": "b3"}, TICK])
    assert out.tuples == [([{"v": "a3"}], [{"v": "b3"}])]
    assert sync.wants(0)
    assert sync.finish().tuples == [([{"v": "a4"}], [])]


def test_an_ended_input_counts_as_held_for_good() -> None:
    sync = event_sync(3)
    sync.push(0, ["a1"])
    assert sync.end(0) == SyncOutput()
    sync.push(1, ["b1", TICK, "b2", TICK])
    out = sync.push(2, ["c1", TICK, "c2", TICK, "c3"])
    assert out.tuples == [(["a1"], ["b1"], ["c1"]), ([], ["b2"], ["c2"])]
    assert not sync.wants(0)
    out = sync.end(1)
    assert out.tuples == []
    assert sync.finish().tuples == [([], [], ["c3"])]


def test_an_input_ending_while_held_still_delivers_its_waiting_items() -> None:
    sync = event_sync()
    sync.push(0, ["a1", TICK, "a2", TICK, "a3"])
    assert sync.end(0) == SyncOutput()
    assert sync.push(1, [TICK]).tuples == [(["a1"], [])]
    assert sync.push(1, ["b1", TICK]).tuples == [(["a2"], ["b1"])]
    # a3 was its last item: input 0 now counts as held with it, then with nothing
    assert sync.push(1, ["b2", TICK, "b3", TICK]).tuples == [(["a3"], ["b2"]), ([], ["b3"])]
    assert sync.end(1) == SyncOutput()
    assert sync.finish() == SyncOutput()


def test_all_inputs_ended_without_markers_wait_for_finish() -> None:
    sync = event_sync()
    sync.push(0, ["a"])
    assert sync.end(0) == SyncOutput()
    assert sync.end(1) == SyncOutput()
    assert sync.finish().tuples == [(["a"], [])]


def test_finish_emits_nothing_when_nothing_remains() -> None:
    sync = event_sync()
    assert sync.finish() == SyncOutput()


def test_finish_completes_rounds_still_waiting_then_the_last_one() -> None:
    sync = event_sync()
    sync.push(0, ["a1", TICK, "a2"])
    sync.push(1, ["b1"])
    assert sync.finish().tuples == [(["a1"], ["b1"]), (["a2"], [])]


def test_a_non_mapping_item_is_an_item_error_and_the_push_is_lossless() -> None:
    sync = event_sync(sync_event="tick")
    sync.push(1, [{"v": "b"}, TICK])
    batch: list[Any] = [{"v": 1}, TICK, {"v": 2}, 42, {"v": 3}]
    with pytest.raises(SyncItemError) as caught:
        sync.push(0, batch)
    error = caught.value
    assert error.index == 3
    assert error.item == 42
    assert isinstance(error.error, TypeError)
    assert str(error.error) == "event synchronization reads item['type'], but got an item of type int"
    assert error.partial.tuples == [([{"v": 1}], [{"v": "b"}])]
    sync.push(0, batch[error.index + 1 :])
    assert sync.finish().tuples == [([{"v": 2}, {"v": 3}], [])]


def test_a_failing_predicate_is_an_item_error() -> None:
    sync = event_sync(sync_event=lambda item: item["kind"] == "tick")
    with pytest.raises(SyncItemError) as caught:
        sync.push(0, [{"kind": "x"}, {}])
    assert caught.value.index == 1
    assert isinstance(caught.value.error, KeyError)


def test_event_wants_is_false_when_max_buffered_items_wait() -> None:
    sync = event_sync(max_buffered=2)
    # a runtime that ignores wants() can still push to a held input: items wait, in order
    sync.push(0, [TICK, "a1"])
    assert not sync.wants(0)
    sync.push(0, ["a2", "a3"])
    assert not sync.wants(0)
    assert sync.push(1, [TICK]).tuples == [([], [])]
    assert sync.wants(0)
    assert sync.finish().tuples == [(["a1", "a2", "a3"], [])]


# -- config ----------------------------------------------------------------------------------------


BAD_CONFIGS: list[tuple[tuple[Any, ...], dict[str, Any], type[Exception], str]] = [
    ((1,), {}, ValueError, "synchronization needs at least 2 inputs, got 1"),
    ((True,), {}, TypeError, "n_inputs must be an integer, got True"),
    ((2, "window"), {}, ValueError, "unknown sync_type 'window'; expected one of 'timestamp', 'event'"),
    ((2, "timestamp", -0.5), {}, ValueError, "tolerance must be finite and >= 0, got -0.5"),
    ((2, "timestamp", math.inf), {}, ValueError, "tolerance must be finite and >= 0, got inf"),
    ((2, "timestamp", math.nan), {}, ValueError, "tolerance must be finite and >= 0, got nan"),
    ((2, "timestamp", "1"), {}, TypeError, "tolerance must be a number of seconds, got '1'"),
    ((2,), {"max_buffered": 0}, ValueError, "max_buffered must be a positive integer, got 0"),
    ((2,), {"max_buffered": 1.5}, TypeError, "max_buffered must be an integer, got 1.5"),
    ((2, "event"), {}, ValueError, "event synchronization needs sync_event"),
    (
        (2, "timestamp"),
        {"sync_event": "tick"},
        ValueError,
        "sync_event is only used by sync_type='event'",
    ),
    ((2,), {"timestamp": 3}, TypeError, "timestamp must be a field name or a function, got 3"),
]
"""Arguments of ``sync_config``, the error they raise and the start of its message."""


@pytest.mark.parametrize(("args", "options", "error", "message"), BAD_CONFIGS)
def test_config_validation(
    args: tuple[Any, ...], options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        sync_config(*args, **options).build()


@pytest.mark.parametrize(("args", "options", "error", "message"), BAD_CONFIGS)
def test_the_config_validates_itself_when_made_directly(
    args: tuple[Any, ...], options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        SyncConfig(*args, **options)


def test_built_synchronizers_run_the_config() -> None:
    by_time = SyncConfig(2, "timestamp", 0.5).build()
    assert by_time.push(0, [ev(1.0, "a"), ev(2.0, "b")]).tuples == []
    assert by_time.push(1, [ev(1.4, "x")]).tuples == [(ev(1.0, "a"), ev(1.4, "x"))]
    assert by_time.finish().unmatched == [ev(2.0, "b")]
    by_marker = SyncConfig(2, "event", sync_event="tick", max_buffered=3).build()
    a, b = {"v": 1}, {"v": 2}
    assert by_marker.push(0, [a, TICK, b]).tuples == []
    assert by_marker.wants(0) is False
    assert by_marker.push(1, [TICK]).tuples == [([a], [])]
    assert by_marker.finish().tuples == [([b], [])]


def test_each_build_is_a_new_synchronizer() -> None:
    config = SyncConfig(2, "timestamp", 0.0)
    first = config.build()
    first.push(0, [ev(1.0, "a")])
    assert config.build().push(1, [ev(1.0, "x")]).tuples == []


def test_config_fields_cannot_be_assigned() -> None:
    config = SyncConfig(2)
    for name, value in [("n_inputs", 3), ("tolerance", 2.0), ("sync_type", "event")]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, name, value)
    assert (config.n_inputs, config.tolerance, config.sync_type) == (2, 1.0, "timestamp")


def test_config_is_frozen_and_holds_the_validated_values() -> None:
    config = sync_config(3, "event", 0, sync_event="tick", max_buffered=7)
    assert (config.n_inputs, config.sync_type, config.tolerance, config.max_buffered) == (3, "event", 0.0, 7)
    with pytest.raises(AttributeError):
        config.n_inputs = 4  # type: ignore[misc]
    assert isinstance(sync_config(2, "timestamp", 0).build(), TimestampSync)
    assert isinstance(sync_config(2, "event", sync_event=0).build(), EventSync)


# -- properties ------------------------------------------------------------------------------------


def drive(
    sync: Any, inputs: list[list[Any]], data: st.DataObject, *, respect_wants: bool
) -> list[SyncOutput]:
    """Push each input's items in random batches, in a random interleaving, end each input, then
    finish. With ``respect_wants`` only wanted inputs are read, as the runtime does, and some input
    must always be wanted (the runtime would report a stall otherwise)."""
    outputs: list[SyncOutput] = []
    position = [0] * len(inputs)
    ended = [False] * len(inputs)
    while not all(ended):
        candidates = [i for i in range(len(inputs)) if not ended[i] and (not respect_wants or sync.wants(i))]
        assert candidates, "every open input is held back: the runtime would stall"
        index = data.draw(st.sampled_from(candidates))
        rest = len(inputs[index]) - position[index]
        if rest == 0:
            outputs.append(sync.end(index))
            ended[index] = True
            continue
        size = data.draw(st.integers(0, rest))
        outputs.append(sync.push(index, inputs[index][position[index] : position[index] + size]))
        position[index] += size
    outputs.append(sync.finish())
    return outputs


def timestamp_inputs() -> st.SearchStrategy[list[list[int]]]:
    sorted_list = st.lists(st.integers(0, 30), max_size=12).map(sorted)
    return st.integers(2, 4).flatmap(lambda n: st.lists(sorted_list, min_size=n, max_size=n))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    stamps=timestamp_inputs(),
    tolerance=st.sampled_from([0, 0.5, 1, 2.5, 7]),
    max_buffered=st.integers(1, 5),
    respect_wants=st.booleans(),
    data=st.data(),
)
def test_timestamp_every_item_once_and_tuples_within_tolerance(
    stamps: list[list[int]], tolerance: float, max_buffered: int, respect_wants: bool, data: st.DataObject
) -> None:
    n = len(stamps)
    inputs = [[{"timestamp": ts, "id": (i, k)} for k, ts in enumerate(row)] for i, row in enumerate(stamps)]
    sync = sync_config(n, "timestamp", tolerance, max_buffered=max_buffered).build()
    outputs = drive(sync, inputs, data, respect_wants=respect_wants)

    tuples = [group for out in outputs for group in out.tuples]
    unmatched = [item for out in outputs for item in out.unmatched]
    used = [item["id"] for group in tuples for item in group] + [item["id"] for item in unmatched]
    assert len(used) == len(set(used))
    assert sorted(used) == sorted(item["id"] for row in inputs for item in row)
    for group in tuples:
        assert len(group) == n
        assert [item["id"][0] for item in group] == list(range(n))
        times = [item["timestamp"] for item in group]
        assert max(times) - min(times) <= tolerance

    # how the items were batched and interleaved never changes the tuples
    reference = sync_config(n, "timestamp", tolerance).build()
    expected = [group for i, row in enumerate(inputs) for group in reference.push(i, row).tuples]
    for i in range(n):
        expected += reference.end(i).tuples
    assert tuples == expected


@st.composite
def marker_inputs(draw: st.DrawFn) -> list[list[bool]]:
    n = draw(st.integers(2, 4))
    return [draw(st.lists(st.booleans(), max_size=12)) for _ in range(n)]


def expected_rounds(inputs: list[list[Any]]) -> list[tuple[list[Any], ...]]:
    """Round r holds, per input, its segment r (between markers r-1 and r) while it has one: an
    input with fewer markers ends, and counts as held with its trailing segment, then nothing. So
    there are as many marker rounds as the most markers on any input, plus one last round from
    ``finish()`` when an input with that many markers has items after its last one."""
    segments: list[list[list[Any]]] = []
    for row in inputs:
        parts: list[list[Any]] = [[]]
        for item in row:
            if item.get("type") == "tick":
                parts.append([])
            else:
                parts[-1].append(item)
        segments.append(parts)
    rounds = max(len(parts) - 1 for parts in segments)
    result = [tuple(parts[r] if r < len(parts) else [] for parts in segments) for r in range(rounds)]
    last = tuple(parts[rounds] if rounds < len(parts) else [] for parts in segments)
    if any(last):
        result.append(last)
    return result


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    shape=marker_inputs(),
    by_predicate=st.booleans(),
    max_buffered=st.integers(1, 4),
    respect_wants=st.booleans(),
    data=st.data(),
)
def test_event_rounds_partition_each_input_in_order(
    shape: list[list[bool]], by_predicate: bool, max_buffered: int, respect_wants: bool, data: st.DataObject
) -> None:
    n = len(shape)
    inputs = [
        [{"type": "tick"} if marker else {"id": (i, k)} for k, marker in enumerate(row)]
        for i, row in enumerate(shape)
    ]
    marker: Any = (lambda item: item.get("type") == "tick") if by_predicate else "tick"
    sync = sync_config(n, "event", sync_event=marker, max_buffered=max_buffered).build()
    outputs = drive(sync, inputs, data, respect_wants=respect_wants)

    tuples = [group for out in outputs for group in out.tuples]
    assert all(out.unmatched == [] for out in outputs)
    assert all(len(group) == n for group in tuples)
    for i, row in enumerate(inputs):
        assert [item for group in tuples for item in group[i]] == [item for item in row if "id" in item]
    markers = [sum(row) for row in shape]
    trailing = any(m == max(markers) and row and not row[-1] for m, row in zip(markers, shape, strict=True))
    assert len(tuples) == max(markers) + (1 if trailing else 0)
    assert tuples == expected_rounds(inputs)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(shape=marker_inputs(), data=st.data())
def test_event_rounds_with_all_inputs_open_follow_the_fewest_markers(
    shape: list[list[bool]], data: st.DataObject
) -> None:
    """While no input has ended, exactly min(markers) rounds complete; finish() ends every input,
    which completes the rounds the inputs with more markers were held for, then the last one."""
    n = len(shape)
    inputs = [
        [{"type": "tick"} if marker else {"id": (i, k)} for k, marker in enumerate(row)]
        for i, row in enumerate(shape)
    ]
    sync = event_sync(n, sync_event="tick")
    pushed: list[SyncOutput] = []
    for i in data.draw(st.permutations(list(range(n)))):
        pushed.append(sync.push(i, inputs[i]))
    markers = [sum(row) for row in shape]
    assert sum(len(out.tuples) for out in pushed) == min(markers)
    tuples = [group for out in pushed for group in out.tuples] + sync.finish().tuples
    assert tuples == expected_rounds(inputs)
