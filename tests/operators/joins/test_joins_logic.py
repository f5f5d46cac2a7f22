"""The pure join logic: exact outputs by hand, item errors, config validation, and properties
against a nested-loop join over random inputs in random interleavings and batches. No event loop."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams._codegen.inline import inlinable
from sage_streams.errors import StreamError
from sage_streams.operators.base import ItemError
from sage_streams.operators.joins.config import JoinConfig, join_config
from sage_streams.operators.joins.state import JoinItemError, JoinState, JoinStats

Item = tuple[Any, ...]


def key(item: Item) -> Any:
    return item[1]


def ts(item: Item) -> Any:
    return item[2]


def state(
    join_type: Any = "inner",
    key_func: Any = key,
    condition: Any = None,
    *,
    inline: bool = False,
    **options: Any,
) -> JoinState:
    return join_config(join_type, key_func, condition, **options).build(inline=inline)


def ev(name: str, k: Any, t: Any = 0.0) -> Item:
    return (name, k, t)


def names(pairs: Sequence[tuple[Any, Any]]) -> list[tuple[str | None, str | None]]:
    return [(None if a is None else a[0], None if b is None else b[0]) for a, b in pairs]


# -- keys: exact outputs ---------------------------------------------------------------------------


def test_inner_join_pairs_come_in_the_order_partners_were_buffered() -> None:
    join = state()
    assert join.push(0, [ev("a1", 1), ev("a2", 2), ev("a3", 1)]) == []
    assert names(join.push(1, [ev("b1", 1), ev("b2", 3)])) == [("a1", "b1"), ("a3", "b1")]
    assert names(join.push(0, [ev("a4", 1)])) == [("a4", "b1")]
    assert join.finish() == []


def test_inner_join_is_the_same_whichever_side_arrives_first() -> None:
    left, right = [ev("a", 1), ev("b", 2)], [ev("x", 2), ev("y", 1)]
    first = state()
    first.push(0, left)
    one = names(first.push(1, right))
    second = state()
    second.push(1, right)
    two = names(second.push(0, left))
    assert one == [("b", "x"), ("a", "y")]
    assert sorted(two) == sorted(one)


@pytest.mark.parametrize(
    ("join_type", "expected"),
    [
        ("inner", [("a1", "b1")]),
        ("left", [("a1", "b1"), ("a2", None)]),
        ("right", [("a1", "b1"), (None, "b3")]),
        ("outer", [("a1", "b1"), ("a2", None), (None, "b3")]),
    ],
)
def test_each_join_type_keeps_its_unmatched_sides(join_type: str, expected: list[Any]) -> None:
    join = state(join_type)
    out = join.push(0, [ev("a1", 1), ev("a2", 2)])
    out += join.push(1, [ev("b1", 1), ev("b3", 3)])
    out += join.finish()
    assert names(out) == expected


def test_finish_emits_left_then_right_each_in_arrival_order() -> None:
    join = state("outer")
    join.push(1, [ev("r1", 9)])
    join.push(0, [ev("l1", 5), ev("l2", 1)])
    join.push(1, [ev("r2", 7), ev("r3", 5)])  # r3 matches l1
    join.push(0, [ev("l3", 3)])
    assert names(join.finish()) == [("l2", None), ("l3", None), (None, "r1"), (None, "r2")]
    assert join.finish() == []
    assert join.stats().buffered_left == join.stats().buffered_right == 0


def test_a_pair_of_key_functions_reads_each_side_with_its_own() -> None:
    for key_func in [(lambda a: a["user"], lambda p: p["id"]), [lambda a: a["user"], lambda p: p["id"]]]:
        join = join_config("inner", key_func).build()
        join.push(1, [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}])
        out = join.push(0, [{"user": 2, "page": "/"}])
        assert out == [({"user": 2, "page": "/"}, {"id": 2, "name": "bob"})]


def test_keys_of_different_types_join_as_dict_keys_do() -> None:
    join = state()
    join.push(0, [ev("a", 1)])
    assert names(join.push(1, [ev("b", 1.0), ev("c", "1")])) == [("a", "b")]


# -- conditions ------------------------------------------------------------------------------------


def test_condition_alone_meets_every_buffered_item_and_is_called_left_first() -> None:
    calls: list[tuple[str, str]] = []

    def less(left: Item, right: Item) -> bool:
        calls.append((left[0], right[0]))
        return bool(left[1] < right[1])

    join = state("inner", None, less)
    join.push(0, [ev("a", 1), ev("b", 5)])
    assert names(join.push(1, [ev("x", 3)])) == [("a", "x")]
    assert names(join.push(0, [ev("c", 0)])) == [("c", "x")]
    assert calls == [("a", "x"), ("b", "x"), ("c", "x")]


def test_outer_condition_join_as_in_the_seed_example() -> None:
    join = state("outer", None, lambda a, b: a[2] == b[2])
    out = join.push(0, [ev("a", None, 1), ev("b", None, 2)])
    out += join.push(1, [ev("x", None, 2), ev("y", None, 3)])
    out += join.finish()
    assert names(out) == [("b", "x"), ("a", None), (None, "y")]


def test_key_and_condition_need_equal_keys_and_a_true_condition() -> None:
    calls: list[tuple[str, str]] = []

    def later(left: Item, right: Item) -> bool:
        calls.append((left[0], right[0]))
        return bool(left[2] < right[2])

    join = state("left", key, later)
    join.push(1, [ev("x", 1, 5), ev("y", 2, 5), ev("z", 1, 0)])
    out = join.push(0, [ev("a", 1, 3), ev("b", 2, 9)])
    assert names(out) == [("a", "x")]
    assert calls == [("a", "x"), ("a", "z"), ("b", "y")]  # never called across keys
    assert names(join.finish()) == [("b", None)]


# -- within: interval joins ------------------------------------------------------------------------


def test_within_matches_at_the_boundary_and_not_beyond() -> None:
    join = state(within=1.0, timestamp=ts)
    join.push(0, [ev("a", 1, 10.0)])
    out = join.push(1, [ev("x", 1, 9.0), ev("y", 1, 11.0), ev("z", 1, 10.5)])
    assert names(out) == [("a", "x"), ("a", "y"), ("a", "z")]
    join2 = state(within=1.0, timestamp=ts)
    join2.push(0, [ev("a", 1, 10.0)])
    assert join2.push(1, [ev("x", 1, 11.0 + 2**-20)]) == []


def test_within_reads_the_timestamp_field_by_default() -> None:
    join = state(key_func=lambda item: item["k"], within=0.0)
    join.push(0, [{"k": 1, "timestamp": 5}])
    assert join.push(1, [{"k": 1, "timestamp": 5.0}, {"k": 1, "timestamp": 6}]) == [
        ({"k": 1, "timestamp": 5}, {"k": 1, "timestamp": 5.0})
    ]


def test_within_evicts_once_the_other_watermark_passes_and_outer_emits_then() -> None:
    join = state("outer", within=1.0, timestamp=ts)
    assert join.push(0, [ev("a1", 1, 0.0), ev("a2", 2, 1.0), ev("a3", 1, 3.0)]) == []
    assert join.stats().buffered_left == 3
    # b1 at 1.0 matches a1 (|0 - 1| <= 1), not a3; it is 2.0 behind the left watermark 3.0, so
    # it is not kept. The right watermark 1.0 has passed nothing by more than 1.0.
    assert names(join.push(1, [ev("b1", 1, 1.0)])) == [("a1", "b1")]
    assert (join.stats().buffered_left, join.stats().buffered_right) == (3, 0)
    # b2 at 2.5 matches a3; the watermark 2.5 passes a1 (matched: silent) and a2 (emitted).
    assert names(join.push(1, [ev("b2", 1, 2.5)])) == [("a3", "b2"), ("a2", None)]
    assert (join.stats().buffered_left, join.stats().buffered_right) == (1, 1)
    # a4 at 6.0 matches nothing and passes b2 (matched: silent); a4 itself stays.
    assert join.push(0, [ev("a4", 1, 6.0)]) == []
    assert (join.stats().buffered_left, join.stats().buffered_right) == (2, 0)
    # b3 at 9.0 passes a3 (matched) and a4 (unmatched).
    assert names(join.push(1, [ev("b3", 5, 9.0)])) == [("a4", None)]
    assert names(join.finish()) == [(None, "b3")]
    assert join.stats().unmatched_emitted == 3


def test_eviction_uses_the_same_float_arithmetic_as_matching() -> None:
    # 0.2 + 0.5 rounds to 0.7, below the watermark, yet 0.7000000000000001 - 0.2 == 0.5 matches:
    # an eviction test written as ``mark > t + within`` would lose the pair with y.
    join = state(within=0.5, timestamp=ts)
    join.push(0, [ev("a", 1, 0.2)])
    assert join.push(1, [ev("x", 2, 0.7000000000000001)]) == []
    assert names(join.push(1, [ev("y", 1, 0.7000000000000001)])) == [("a", "y")]


def test_eviction_emits_earliest_timestamp_first() -> None:
    join = state("left", key_func=lambda item: 0, within=0.0, timestamp=ts)
    join.push(0, [ev("a3", 0, 3.0), ev("a1", 0, 1.0), ev("a2", 0, 2.0)])
    assert names(join.push(1, [ev("b", 0, 10.0)])) == [("a1", None), ("a2", None), ("a3", None)]


def test_a_late_item_matches_what_is_buffered_then_leaves_at_once() -> None:
    join = state("outer", within=1.0, timestamp=ts)
    join.push(1, [ev("x", 1, 5.0)])
    assert names(join.push(0, [ev("a", 1, 20.0)])) == [(None, "x")]
    # b at 4.5 is more than 1.0 behind the left watermark 20: it would be evicted at once.
    assert names(join.push(1, [ev("b", 1, 4.5)])) == [(None, "b")]
    # c at 19.5 is not: it matches a and stays.
    assert names(join.push(1, [ev("c", 1, 19.5)])) == [("a", "c")]
    assert join.stats().buffered_right == 1
    assert names(join.finish()) == []


def test_watermarks_never_go_back() -> None:
    join = state("left", within=1.0, timestamp=ts)
    join.push(0, [ev("a", 1, 0.0), ev("b", 1, 5.0)])
    join.push(1, [ev("x", 2, 10.0), ev("y", 2, 0.0)])  # y does not move the watermark back
    assert join.stats().buffered_left == 0


# -- end -------------------------------------------------------------------------------------------


def test_end_evicts_the_other_side_and_keeps_its_own() -> None:
    join = state("outer")
    join.push(0, [ev("a1", 1), ev("a2", 2)])
    join.push(1, [ev("b1", 1), ev("b3", 3)])
    # The right input ends: left items can meet nothing new.
    assert names(join.end(1)) == [("a2", None)]
    assert join.end(1) == []
    assert (join.stats().buffered_left, join.stats().buffered_right) == (0, 2)
    # Later left items still meet the ended side's buffer, and are not kept.
    assert names(join.push(0, [ev("a3", 3), ev("a4", 4), ev("a5", 1)])) == [
        ("a3", "b3"),
        ("a4", None),
        ("a5", "b1"),
    ]
    assert join.stats().buffered_left == 0
    assert names(join.end(0)) == []  # b1 and b3 matched
    assert join.finish() == []


def test_end_on_the_fast_path_drops_the_other_buffer() -> None:
    join = state()
    join.push(0, [ev("a1", 1), ev("a2", 2)])
    join.push(1, [ev("b1", 1)])
    assert join.end(1) == []
    assert join.stats() == JoinStats(1, 1, 1, 0, buffered_left=0, buffered_right=1)  # b1 probed
    assert names(join.push(0, [ev("a3", 1)])) == [("a3", "b1")]
    assert join.stats().buffered_left == 0


def test_end_with_within_evicts_in_arrival_order() -> None:
    join = state("left", within=100.0, timestamp=ts)
    join.push(0, [ev("a2", 1, 2.0), ev("a1", 1, 1.0)])
    assert names(join.end(1)) == [("a2", None), ("a1", None)]


def test_pushing_to_an_ended_side_or_a_bad_side_is_refused() -> None:
    join = state()
    join.end(0)
    with pytest.raises(StreamError, match="left input of this join has ended"):
        join.push(0, [ev("a", 1)])
    with pytest.raises(IndexError, match="0 \\(left\\) or 1 \\(right\\)"):
        join.push(2, [])
    with pytest.raises(IndexError):
        join.end(-1)
    join.finish()
    with pytest.raises(StreamError, match="right input"):
        join.push(1, [ev("b", 1)])


# -- stats -----------------------------------------------------------------------------------------


def test_stats_count_probes_hits_matches_and_the_buffers() -> None:
    join = state("outer")
    assert join.stats() == JoinStats(0, 0, 0, 0, 0, 0)
    assert join.stats().hit_rate == 0.0
    join.push(0, [ev("a1", 1), ev("a2", 1), ev("a3", 2)])
    join.push(1, [ev("b1", 1), ev("b2", 9)])
    stats = join.stats()
    # The left items came before anything of the right: only the right ones probed.
    assert stats == JoinStats(
        probes=2, hits=1, matches=2, unmatched_emitted=0, buffered_left=3, buffered_right=2
    )
    assert stats.hit_rate == 0.5
    join.finish()
    assert join.stats() == JoinStats(2, 1, 2, unmatched_emitted=2, buffered_left=0, buffered_right=0)


def test_stats_on_the_fast_path() -> None:
    join = state()
    join.push(1, [ev("p1", 1), ev("p2", 2)])
    join.push(0, [ev("a", 1), ev("b", 1), ev("c", 3)])
    assert join.stats() == JoinStats(3, 2, 2, 0, buffered_left=3, buffered_right=2)
    assert join.stats().hit_rate == 2 / 3


# -- item errors -----------------------------------------------------------------------------------

BOOM = RuntimeError("boom")


def explode(item: Item) -> Any:
    if item[0] == "bad":
        raise BOOM
    return item[1]  # not one expression: always called


FAST: dict[str, Any] = {}
INLINED: dict[str, Any] = {"inline": True}  # the fast path, with ``key`` pasted into its loop
GENERAL: dict[str, Any] = {"condition": lambda left, right: True}
PATHS = pytest.mark.parametrize("options", [FAST, INLINED, GENERAL], ids=["fast", "inlined", "general"])


def test_the_key_functions_of_these_tests_can_be_inlined() -> None:
    assert inlinable(key) is not None
    assert inlinable(divide) is not None


def divide(item: Item) -> Any:
    return 12 // (item[1] - 1)  # one expression: inlined on the "inlined" path


@PATHS
@pytest.mark.parametrize(("key_func", "raised"), [(explode, RuntimeError), (divide, ZeroDivisionError)])
def test_a_key_function_that_raises_is_an_item_error_with_index_and_pairs(
    options: dict[str, Any], key_func: Any, raised: type
) -> None:
    join = state("inner", key_func, **options)
    join.push(1, [ev("x", 2)])
    with pytest.raises(JoinItemError) as caught:
        join.push(0, [ev("a", 2), ev("bad", 1), ev("c", 2)])
    error = caught.value
    assert isinstance(error, ItemError)
    assert (error.index, error.item) == (1, ev("bad", 1))
    assert isinstance(error.error, raised)
    assert error.__cause__ is error.error
    notes = getattr(error.error, "__notes__", [])
    assert any("divide" in note and "inlined" in note for note in notes) is (
        options is INLINED and key_func is divide
    )
    assert names(error.pairs) == [("a", "x")]
    assert names(join.push(0, [ev("c", 2)])) == [("c", "x")]
    assert join.stats().probes == 2  # "a" and "c": "x" came first, "bad" counts nowhere
    assert join.stats().buffered_left == 2


@PATHS
@pytest.mark.parametrize("right", [["x", "y"], ["x", "x2"]], ids=["one-per-key", "bucket"])
def test_after_the_other_side_ended_pairs_hits_and_errors_are_exact(
    options: dict[str, Any], right: list[str]
) -> None:
    join = state("inner", **options)
    join.push(1, [ev(right[0], 1), ev(right[1], 2 if right[1] == "y" else 1)])
    join.end(1)  # from now on the left side is not buffered; with one item per key: unique
    partners = {"a": [n for n in right if n in ("x", "x2")], "b": ["y"] if "y" in right else []}
    with pytest.raises(JoinItemError) as caught:
        join.push(0, [ev("a", 1), ev("b", 2), ev("c", 3), ev("d", [1]), ev("e", 1)])
    error = caught.value
    expected = [("a", n) for n in partners["a"]] + [("b", n) for n in partners["b"]]
    assert (error.index, names(error.pairs)) == (3, expected)
    assert str(error.error) == "key function returned an unhashable value [1]"
    assert names(join.push(0, [ev("e", 1)])) == [("e", n) for n in partners["a"]]
    with pytest.raises(JoinItemError) as caught:
        join.push(0, [ev("g", 2), ev("f", None)])
    assert (caught.value.index, names(caught.value.pairs)) == (1, [("g", n) for n in partners["b"]])
    hits = 1 + bool(partners["b"]) + 1 + bool(partners["b"])
    if options is not GENERAL:  # the one-per-key case ran the probe without buckets
        (probe,) = (p for (side, buffering), p in join._probes_by_mode.items() if not buffering)
        assert ("q" in probe.__code__.co_varnames) is (right[1] == "x2")
    probes = 3 + 1 + 1  # every left item up to each failure (the right side's came first)
    assert join.stats() == JoinStats(probes, hits, hits + (len(partners["a"]) - 1) * 2, 0, 0, 2)


@pytest.mark.parametrize("inline", [False, True])
def test_items_that_are_lists_are_kept_apart_from_buckets(inline: bool) -> None:
    join = state(inline=inline)
    join.push(1, [["x", 1], ["y", 1], ["z", 2]])
    assert join.push(0, [["a", 1], ["b", 2], ["c", 3]]) == [
        (["a", 1], ["x", 1]),
        (["a", 1], ["y", 1]),
        (["b", 2], ["z", 2]),
    ]
    assert join.push(1, [["w", 1]]) == [(["a", 1], ["w", 1])]


@PATHS
def test_an_unhashable_key_is_a_type_error_of_its_item(options: dict[str, Any]) -> None:
    join = state("inner", **options)
    join.push(1, [ev("x", 1)])
    with pytest.raises(JoinItemError) as caught:
        join.push(0, [ev("a", 1), ev("b", 1), ev("c", [1])])
    error = caught.value
    assert error.index == 2
    assert isinstance(error.error, TypeError)
    assert str(error.error) == "key function returned an unhashable value [1]"
    assert names(error.pairs) == [("a", "x"), ("b", "x")]


@PATHS
def test_a_none_key_is_a_value_error_of_its_item(options: dict[str, Any]) -> None:
    join = state("inner", **options)
    with pytest.raises(JoinItemError) as caught:
        join.push(0, [ev("a", None)])
    error = caught.value
    assert (error.index, error.pairs) == (0, [])
    assert isinstance(error.error, ValueError)
    assert str(error.error).startswith("key function returned None for item ('a', None, 0.0)")
    assert join.stats().buffered_left == 0


@pytest.mark.parametrize(
    ("bad", "kind", "message"),
    [
        ({"k": 1}, KeyError, "no timestamp field 'timestamp'"),
        ({"k": 1, "timestamp": "noon"}, TypeError, "must be a number or datetime"),
        ({"k": 1, "timestamp": math.nan}, ValueError, "must be finite"),
    ],
)
def test_a_bad_timestamp_is_an_item_error_with_its_index(bad: Any, kind: type, message: str) -> None:
    join = state(key_func=lambda item: item["k"], within=1.0)
    join.push(1, [{"k": 1, "timestamp": 0}])
    good = {"k": 1, "timestamp": 1}
    with pytest.raises(JoinItemError) as caught:
        join.push(0, [good, bad])
    error = caught.value
    assert (error.index, error.item) == (1, bad)
    assert isinstance(error.error, kind)
    assert message in str(error.error)
    assert error.pairs == [(good, {"k": 1, "timestamp": 0})]


def test_a_condition_that_raises_leaves_no_trace_of_its_item() -> None:
    def picky(left: Item, right: Item) -> bool:
        if right[0] == "bad":
            raise BOOM
        return True

    join = state("outer", None, picky)
    join.push(0, [ev("a1", 0), ev("a2", 0)])
    with pytest.raises(JoinItemError) as caught:
        join.push(1, [ev("x", 0), ev("bad", 0), ev("y", 0)])
    error = caught.value
    assert (error.index, error.error) == (1, BOOM)
    assert names(error.pairs) == [("a1", "x"), ("a2", "x")]
    assert join.stats() == JoinStats(1, 1, 2, 0, buffered_left=2, buffered_right=1)
    assert names(join.push(1, [ev("y", 0)])) == [("a1", "y"), ("a2", "y")]
    assert names(join.finish()) == []


def test_a_failing_condition_does_not_mark_earlier_partners_as_matched() -> None:
    def picky(left: Item, right: Item) -> bool:
        if left[0] == "a2":
            raise BOOM
        return True

    join = state("outer", None, picky)
    join.push(0, [ev("a1", 0), ev("a2", 0)])
    with pytest.raises(JoinItemError) as caught:
        join.push(1, [ev("x", 0)])  # met a1, then failed on a2: a1 stays unmatched
    assert caught.value.pairs == []
    assert join.stats() == JoinStats(0, 0, 0, 0, buffered_left=2, buffered_right=0)
    assert names(join.finish()) == [("a1", None), ("a2", None)]


# -- config validation -----------------------------------------------------------------------------


def test_config_defaults_and_the_key_pair_helper() -> None:
    config = join_config(key_func=key)
    assert config == JoinConfig("inner", key, key, None, None, "timestamp")
    other = join_config("outer", (key, ts), within=5)
    assert (other.left_key, other.right_key, other.within) == (key, ts, 5)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"join_type": "full", "left_key": key, "right_key": key}, ValueError, "expected one of 'inner'"),
        ({}, ValueError, "a join needs a key function, a condition, or both"),
        ({"left_key": key}, ValueError, "come as a pair: give both or neither"),
        ({"right_key": key, "condition": min}, ValueError, "come as a pair"),
        ({"left_key": 3, "right_key": key}, TypeError, "left_key must be a function"),
        ({"condition": "yes"}, TypeError, "condition must be a function"),
        ({"condition": min, "within": -1.0}, ValueError, "within must be finite and >= 0, got -1.0"),
        ({"condition": min, "within": math.inf}, ValueError, "finite"),
        ({"condition": min, "within": math.nan}, ValueError, "finite"),
        ({"condition": min, "within": "5"}, TypeError, "within must be a number of seconds"),
        ({"condition": min, "within": True}, TypeError, "within must be a number"),
        ({"condition": min, "timestamp": 3}, TypeError, "timestamp must be a field name or a function"),
    ],
)
def test_config_validation_messages(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message.replace("(", "\\(")):
        JoinConfig(**kwargs)


def test_unknown_join_type_message_lists_all_four() -> None:
    with pytest.raises(ValueError, match="unknown join_type 'cross'") as caught:
        join_config("cross", key)  # type: ignore[arg-type]
    assert "'inner', 'left', 'right', 'outer'" in str(caught.value)


@pytest.mark.parametrize("key_func", [3, (key,), (key, key, key), (key, 3), "user_id"])
def test_key_func_must_be_a_function_or_a_pair(key_func: Any) -> None:
    with pytest.raises(TypeError, match="key_func"):
        join_config("inner", key_func)


@pytest.mark.parametrize(
    ("args", "options", "error", "message"),
    [
        (("full", key), {}, ValueError, "unknown join_type 'full'"),
        (("inner",), {}, ValueError, "a join needs a key function, a condition, or both"),
        (("inner", key), {"within": -1.0}, ValueError, "within must be finite and >= 0, got -1.0"),
        (("inner", key), {"timestamp": 3}, TypeError, "timestamp must be a field name or a function"),
    ],
)
def test_the_factory_raises_what_the_config_raises(
    args: tuple[Any, ...], options: dict[str, Any], error: type[Exception], message: str
) -> None:
    fields = {"join_type": args[0], "left_key": args[1] if len(args) > 1 else None}
    fields["right_key"] = fields["left_key"]
    with pytest.raises(error, match=message) as direct:
        JoinConfig(**fields, **options)
    with pytest.raises(error, match=message) as made:
        join_config(*args, **options)
    assert str(made.value) == str(direct.value)


@pytest.mark.parametrize(
    ("join_type", "expected"),
    [
        ("inner", [("l1", "r1")]),
        ("left", [("l1", "r1"), ("l2", None)]),
        ("right", [("l1", "r1"), (None, "r3")]),
        ("outer", [("l1", "r1"), ("l2", None), (None, "r3")]),
    ],
)
@pytest.mark.parametrize("codegen", [True, False])
def test_build_makes_a_join_of_the_config(join_type: str, expected: list[Any], codegen: bool) -> None:
    config = JoinConfig(join_type, key, key)  # type: ignore[arg-type]
    join = config.build(codegen=codegen)
    assert join.push(0, [ev("l1", 1), ev("l2", 2)]) == []
    pairs = join.push(1, [ev("r1", 1), ev("r3", 3)]) + join.finish()
    assert names(pairs) == expected


def test_each_build_is_a_new_join() -> None:
    config = JoinConfig("inner", key, key)
    config.build().push(0, [ev("l1", 1)])
    assert config.build().push(1, [ev("r1", 1)]) == []


def test_config_fields_cannot_be_assigned() -> None:
    config = JoinConfig("left", key, key, within=2.0)
    for name, value in [("join_type", "outer"), ("left_key", ts), ("within", 3.0), ("timestamp", "t")]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, name, value)
    assert (config.join_type, config.left_key, config.within, config.timestamp) == (
        "left",
        key,
        2.0,
        "timestamp",
    )


def test_within_zero_is_allowed_and_config_is_frozen() -> None:
    config = join_config(key_func=key, within=0)
    with pytest.raises(AttributeError):
        config.within = 1.0  # type: ignore[misc]


# -- properties against a nested-loop join ---------------------------------------------------------

KEYS = st.integers(min_value=0, max_value=3)


def nested_loop(
    left: Sequence[Item], right: Sequence[Item], match: Callable[[Item, Item], bool], join_type: str
) -> Counter[tuple[Any, Any]]:
    pairs: Counter[tuple[Any, Any]] = Counter((a, b) for a in left for b in right if match(a, b))
    if join_type in ("left", "outer"):
        pairs.update((a, None) for a in left if not any(match(a, b) for b in right))
    if join_type in ("right", "outer"):
        pairs.update((None, b) for b in right if not any(match(a, b) for a in left))
    return pairs


@st.composite
def schedules(draw: st.DrawFn, n_left: int, n_right: int) -> list[tuple[int, int]]:
    """A random interleaving of the two sides, cut into batches: ``(side, batch size)`` steps."""
    order = draw(st.permutations([0] * n_left + [1] * n_right))
    steps: list[tuple[int, int]] = []
    for side in order:
        if steps and steps[-1][0] == side and draw(st.booleans()):
            steps[-1] = (side, steps[-1][1] + 1)
        else:
            steps.append((side, 1))
    return steps


def run(
    join: JoinState, left: Sequence[Item], right: Sequence[Item], steps: list[tuple[int, int]], end: bool
) -> Counter[tuple[Any, Any]]:
    """Drive ``join`` as the runtime does: batches, ``end`` when a side runs out, ``finish``."""
    sides = (list(left), list(right))
    taken = [0, 0]
    out: list[tuple[Any, Any]] = []
    for side, size in steps:
        out += join.push(side, sides[side][taken[side] : taken[side] + size])
        taken[side] += size
        if end and taken[side] == len(sides[side]):
            out += join.end(side)
    for side in (0, 1):
        if end and not sides[side]:
            out += join.end(side)
    out += join.finish()
    assert join.stats().buffered_left == join.stats().buffered_right == 0
    return Counter(out)


def same_key(a: Item, b: Item) -> bool:
    return bool(a[1] == b[1])


def odd_sum(a: Item, b: Item) -> bool:
    return (a[2] + b[2]) % 2 == 1


MODES: dict[str, tuple[Any, Any, Callable[[Item, Item], bool]]] = {
    "keys": (key, None, same_key),
    "condition": (None, odd_sum, odd_sum),
    "keys+condition": (key, odd_sum, lambda a, b: same_key(a, b) and odd_sum(a, b)),
}


@st.composite
def two_inputs(draw: st.DrawFn) -> tuple[list[Item], list[Item], list[tuple[int, int]]]:
    lefts = draw(st.lists(st.tuples(KEYS, st.integers(0, 9)), max_size=8))
    rights = draw(st.lists(st.tuples(KEYS, st.integers(0, 9)), max_size=8))
    left = [("L", k, v, i) for i, (k, v) in enumerate(lefts)]
    right = [("R", k, v, i) for i, (k, v) in enumerate(rights)]
    return left, right, draw(schedules(len(left), len(right)))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    inputs=two_inputs(),
    mode=st.sampled_from(sorted(MODES)),
    join_type=st.sampled_from(["inner", "left", "right", "outer"]),
    end=st.booleans(),
    inline=st.booleans(),
)
def test_any_interleaving_gives_the_nested_loop_join(
    inputs: tuple[list[Item], list[Item], list[tuple[int, int]]],
    mode: str,
    join_type: str,
    end: bool,
    inline: bool,
) -> None:
    # (1) inner pairs equal the nested-loop join; (2) left/right/outer add exactly the unmatched
    # items of their side(s) with None partners.
    left, right, steps = inputs
    key_func, condition, match = MODES[mode]
    join = state(join_type, key_func, condition, inline=inline)
    assert run(join, left, right, steps, end) == nested_loop(left, right, match, join_type)


@st.composite
def timed_inputs(draw: st.DrawFn) -> tuple[list[Item], list[Item], list[tuple[int, int]]]:
    stamps = st.one_of(st.integers(-20, 20), st.floats(-1e6, 1e6, allow_nan=False))
    lefts = draw(st.lists(st.tuples(KEYS, stamps), max_size=10))
    rights = draw(st.lists(st.tuples(KEYS, stamps), max_size=10))
    left = [("L", k, t, i) for i, (k, t) in enumerate(sorted(lefts, key=lambda kt: kt[1]))]
    right = [("R", k, t, i) for i, (k, t) in enumerate(sorted(rights, key=lambda kt: kt[1]))]
    return left, right, draw(schedules(len(left), len(right)))


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(
    inputs=timed_inputs(),
    within=st.one_of(st.integers(0, 6), st.floats(0, 1e3, allow_nan=False)),
    keyed=st.booleans(),
    join_type=st.sampled_from(["inner", "outer"]),
    end=st.booleans(),
)
def test_an_interval_join_of_ordered_inputs_gives_the_nested_loop_join(
    inputs: tuple[list[Item], list[Item], list[tuple[int, int]]],
    within: float,
    keyed: bool,
    join_type: str,
    end: bool,
) -> None:
    # (3) with each side in timestamp order, eviction never drops a future match, so the result
    # is the nested-loop join restricted to |t_left - t_right| <= within, unmatched ones included.
    left, right, steps = inputs

    def close(a: Item, b: Item) -> bool:
        return abs(a[2] - b[2]) <= within and (not keyed or a[1] == b[1])

    key_func, condition = (key, None) if keyed else (None, lambda a, b: True)
    join = state(join_type, key_func, condition, within=within, timestamp=ts)
    assert run(join, left, right, steps, end) == nested_loop(left, right, close, join_type)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    inputs=two_inputs(),
    bad=st.lists(st.booleans(), min_size=16, max_size=16),
    join_type=st.sampled_from(["inner", "outer"]),
    fast=st.booleans(),
)
def test_going_on_after_an_item_error_loses_no_pair(
    inputs: tuple[list[Item], list[Item], list[tuple[int, int]]],
    bad: list[bool],
    join_type: str,
    fast: bool,
) -> None:
    # Items with a None key fail; the caller keeps ``pairs`` and pushes the rest of the batch.
    left, right, steps = inputs
    tagged = [
        [(*item[:1], None, *item[2:]) if bad[item[3] + 8 * side] else item for item in items]
        for side, items in enumerate((left, right))
    ]
    join = state(join_type if not fast else "inner", key, None if fast else odd_sum)
    taken = [0, 0]
    out: list[tuple[Any, Any]] = []
    for side, size in steps:
        batch = tagged[side][taken[side] : taken[side] + size]
        taken[side] += size
        while True:
            try:
                out += join.push(side, batch)
                break
            except JoinItemError as exc:
                failed = exc
            assert failed.index is not None
            assert failed.item is batch[failed.index]
            out += failed.pairs
            batch = batch[failed.index + 1 :]
    out += join.finish()
    good = [[item for item in items if item[1] is not None] for items in tagged]
    match = same_key if fast else (lambda a, b: same_key(a, b) and odd_sum(a, b))
    assert Counter(out) == nested_loop(good[0], good[1], match, "inner" if fast else join_type)
