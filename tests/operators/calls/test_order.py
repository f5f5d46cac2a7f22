"""The order results of overlapping calls leave in, on its own: random admissions, fences and
completion orders against what each mode promises."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.channel import Watermark
from sage_streams.operators.calls.order import Call, Order, make_order

# An input: items (key, n) and watermarks; each item's call yields 0..2 outputs.
inputs = st.lists(st.one_of(st.tuples(st.integers(0, 3), st.integers(0, 2)), st.just("fence")), max_size=40)


def drive(mode: Any, entries: list[Any], seed: int, limit: int) -> tuple[list[Any], int]:
    """Feed ``entries`` to an order keeping at most ``limit`` held, finishing started calls in
    a random order; returns everything taken, in order, and the most calls held at once."""
    order: Order[Call] = make_order(mode)
    rng = random.Random(seed)
    running: list[Call] = []
    taken: list[Any] = []
    position, peak = 0, 0
    while position < len(entries) or running or not order.empty:
        while position < len(entries) and order.held < limit:
            entry = entries[position]
            position += 1
            if entry == "fence":
                order.fence(Watermark(float(position)))
                continue
            key, n = entry
            call = Call((position, key, n), key)
            if order.admit(call):
                running.append(call)
        peak = max(peak, order.held)
        while (out := order.take()) is not None:
            taken.extend(out if isinstance(out, list) else [out])
        if running:
            call = running.pop(rng.randrange(len(running)))
            position_, key, n = call.item
            following = order.finish(call, [(position_, key, i) for i in range(n)])
            if following is not None:
                running.append(following)
        elif not order.empty and position >= len(entries):
            raise AssertionError(f"{mode}: nothing runs, yet the order holds {order.held}")
    return taken, peak


def expected_outputs(entries: list[Any]) -> list[Any]:
    """Every output and watermark, in input order."""
    out: list[Any] = []
    for position, entry in enumerate(entries, 1):
        if entry == "fence":
            out.append(Watermark(float(position)))
        else:
            key, n = entry
            out += [(position, key, i) for i in range(n)]
    return out


def segments(taken: list[Any]) -> list[list[Any]]:
    """The outputs between watermarks, and each watermark as a segment of its own."""
    parts: list[list[Any]] = [[]]
    for value in taken:
        if isinstance(value, Watermark):
            parts += [[value], []]
        else:
            parts[-1].append(value)
    return parts


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(entries=inputs, seed=st.integers(0, 10**6), limit=st.integers(1, 5))
def test_input_order_gives_every_output_in_input_order(entries: list[Any], seed: int, limit: int) -> None:
    taken, peak = drive(True, entries, seed, limit)
    assert taken == expected_outputs(entries)
    assert peak <= limit


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@pytest.mark.parametrize("mode", [False, "key"])
@given(entries=inputs, seed=st.integers(0, 10**6), limit=st.integers(1, 5))
def test_completion_orders_permute_only_between_watermarks(
    mode: Any, entries: list[Any], seed: int, limit: int
) -> None:
    taken, peak = drive(mode, entries, seed, limit)
    expected = expected_outputs(entries)
    assert [sorted(part, key=repr) for part in segments(taken)] == [
        sorted(part, key=repr) for part in segments(expected)
    ]
    assert peak <= limit
    # A call's outputs leave together and in their own order.
    for position in {value[0] for value in taken if isinstance(value, tuple)}:
        mine = [value for value in taken if isinstance(value, tuple) and value[0] == position]
        assert [value[2] for value in mine] == list(range(len(mine)))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(entries=inputs, seed=st.integers(0, 10**6), limit=st.integers(1, 5))
def test_key_order_keeps_each_keys_order(entries: list[Any], seed: int, limit: int) -> None:
    taken, _ = drive("key", entries, seed, limit)
    expected = expected_outputs(entries)
    for key in range(4):
        assert [v for v in taken if isinstance(v, tuple) and v[1] == key] == [
            v for v in expected if isinstance(v, tuple) and v[1] == key
        ]


def test_a_key_with_a_call_admitted_waits_and_is_handed_back_in_order() -> None:
    order: Order[Call] = make_order("key")
    first, second, other = Call("a1", "a"), Call("a2", "a"), Call("b1", "b")
    assert order.admit(first) is True
    assert order.admit(second) is False
    assert order.admit(other) is True
    assert order.finish(other, ["b1"]) is None
    assert order.take() == ["b1"]
    assert order.finish(first, ["a1"]) is second
    assert order.take() == ["a1"]
    assert order.finish(second, ["a2"]) is None
    assert order.take() == ["a2"]
    assert order.empty


def test_a_watermark_leaves_only_after_the_calls_before_it_even_with_no_outputs() -> None:
    order: Order[Call] = make_order(True)
    call = Call("x")
    order.admit(call)
    order.fence(Watermark(1.0))
    assert order.take() is None
    order.finish(call, [])  # a filter that rejected it, or a sink
    assert order.take() == Watermark(1.0)
    assert order.empty
    assert order.held == 0
