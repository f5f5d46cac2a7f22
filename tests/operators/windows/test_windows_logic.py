"""The pure window logic: exact outputs by hand for each window type, lateness and refires, config
validation, and properties against brute-force models over random inputs. No event loop."""

from __future__ import annotations

import dataclasses
import math
import operator
import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.operators.windows.batches import EventTime, feed_batch
from sage_streams.operators.windows.config import (
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    WindowConfig,
    window_config,
)
from sage_streams.operators.windows.contents import Accumulators
from sage_streams.operators.windows.panes import FiredWindow
from sage_streams.operators.windows.state import WindowState

NEVER = -math.inf
Event = tuple[Hashable, float, Any]  # (key, timestamp, value)


def feed(state: WindowState, events: Sequence[Event], watermark: float = NEVER, index: int = 0) -> None:
    for key, ts, value in events:
        assert state.add(key, ts, index, value, watermark)


def spans(fired: Sequence[FiredWindow]) -> list[tuple[Hashable, float, float, tuple[Any, ...]]]:
    """``(key, start, end, items of input 0)`` per fired window."""
    return [(w.key, w.start, w.end, w.items[0]) for w in fired]


# -- tumbling: exact outputs -----------------------------------------------------------------------


def test_tumbling_windows_are_half_open_and_an_item_at_an_end_starts_the_next() -> None:
    state = TumblingWindows(10).build()
    feed(state, [("k", 0, "a"), ("k", 9.999, "b"), ("k", 10, "c"), ("k", 19, "d"), ("k", 20, "e")])
    assert spans(state.flush()) == [
        ("k", 0.0, 10.0, ("a", "b")),
        ("k", 10.0, 20.0, ("c", "d")),
        ("k", 20.0, 30.0, ("e",)),
    ]


def test_tumbling_windows_are_aligned_to_multiples_of_size_from_zero() -> None:
    state = TumblingWindows(10).build()
    feed(state, [("k", 7, "a"), ("k", 16, "b")])
    assert spans(state.flush()) == [("k", 0.0, 10.0, ("a",)), ("k", 10.0, 20.0, ("b",))]


def test_negative_timestamps_are_aligned_too() -> None:
    state = TumblingWindows(10).build()
    feed(state, [("k", -10.01, "a"), ("k", -10, "b"), ("k", -0.5, "c"), ("k", 0, "d")])
    assert spans(state.flush()) == [
        ("k", -20.0, -10.0, ("a",)),
        ("k", -10.0, 0.0, ("b", "c")),
        ("k", 0.0, 10.0, ("d",)),
    ]


def test_a_window_fires_when_the_watermark_reaches_its_end() -> None:
    state = TumblingWindows(10).build()
    feed(state, [("k", 1, "a"), ("k", 12, "b")])
    assert state.advance(9.99) == []
    assert state.advance(10) == [FiredWindow("k", 0.0, 10.0, (("a",),), refire=False)]
    assert state.advance(15) == []
    assert state.open_windows() == 1
    assert spans(state.flush()) == [("k", 10.0, 20.0, ("b",))]
    assert state.fired_count() == 2


def test_windows_of_equal_bounds_come_out_by_key_in_first_seen_order() -> None:
    state = TumblingWindows(10).build()
    feed(state, [("b", 15, 1), ("b", 1, 2), (None, 2, 3), (3, 3, 4), ("a", 4, 5), ("b", 5, 6)])
    fired = state.advance(20)
    assert [(w.key, w.start) for w in fired] == [("b", 0.0), (None, 0.0), (3, 0.0), ("a", 0.0), ("b", 10.0)]
    assert fired[0].items == ((2, 6),)


def test_a_key_whose_windows_were_all_dropped_counts_as_new_when_it_comes_back() -> None:
    state = TumblingWindows(10).build()
    feed(state, [("a", 1, 1), ("b", 2, 2)])
    state.advance(10)
    feed(state, [("b", 11, 3), ("a", 12, 4)], watermark=10)
    assert [w.key for w in state.advance(20)] == ["b", "a"]


def test_multiple_inputs_keep_their_items_apart_in_arrival_order() -> None:
    state = TumblingWindows(10).build(inputs=3)
    for index, ts, value in [(2, 1, "c1"), (0, 2, "a1"), (2, 3, "c2"), (0, 4, "a2"), (2, 12, "c3")]:
        assert state.add("k", ts, index, value, NEVER)
    assert state.advance(10) == [FiredWindow("k", 0.0, 10.0, (("a1", "a2"), (), ("c1", "c2")))]
    assert state.flush() == [FiredWindow("k", 10.0, 20.0, ((), (), ("c3",)))]


# -- sliding: exact outputs ------------------------------------------------------------------------


def test_sliding_items_belong_to_every_window_that_holds_them() -> None:
    state = SlidingWindows(10, 5).build()
    feed(state, [("k", 5, "a"), ("k", 7, "b"), ("k", 10, "c")])
    assert spans(state.flush()) == [
        ("k", 0.0, 10.0, ("a", "b")),
        ("k", 5.0, 15.0, ("a", "b", "c")),
        ("k", 10.0, 20.0, ("c",)),
    ]


def test_sliding_windows_fire_in_end_order_as_the_watermark_moves() -> None:
    state = SlidingWindows(10, 5).build()
    feed(state, [("k", -1, "a"), ("k", 4, "b")])
    assert spans(state.advance(5)) == [("k", -10.0, 0.0, ("a",)), ("k", -5.0, 5.0, ("a", "b"))]
    assert spans(state.advance(10)) == [("k", 0.0, 10.0, ("b",))]
    assert state.open_windows() == 0


@pytest.mark.parametrize(("size", "slide"), [(60, 10), (10, 2.5), (1, 1), (6, 0.5), (4, 2)])
@pytest.mark.parametrize("ts", [0, 0.25, 3, 59.75, -7.5, -0.001, 1234.5])
def test_sliding_membership_count_is_size_over_slide_when_it_divides(
    size: float, slide: float, ts: float
) -> None:
    state = SlidingWindows(size, slide).build()
    assert state.add("k", ts, 0, "x", NEVER)
    assert state.open_windows() == size / slide
    fired = state.flush()
    assert all(w.start <= ts < w.end and w.end - w.start == size for w in fired)
    assert all(w.start / slide == int(w.start / slide) for w in fired)


def test_sliding_membership_when_size_is_not_a_multiple_of_slide() -> None:
    state = SlidingWindows(10, 4).build()
    feed(state, [("k", 0, "a"), ("k", 3, "b")])
    assert spans(state.flush()) == [
        ("k", -8.0, 2.0, ("a",)),
        ("k", -4.0, 6.0, ("a", "b")),
        ("k", 0.0, 10.0, ("a", "b")),
    ]


def test_sliding_with_slide_equal_to_size_is_tumbling_without_rounding_seams() -> None:
    # 5 * 0.1 + 0.1 < 0.6 < 6 * 0.1, and 30 * 0.1 < 3.0 < 29 * 0.1 + 0.1, in floats: windows end
    # where the next starts, so each timestamp is in exactly one window.
    times = (-3, 0, 0.1, 0.2, 0.3, 0.6, 0.7, 1.0, 2.9, 3.0)
    events = [("k", ts, ts) for ts in times]
    sliding, tumbling = SlidingWindows(0.1, 0.1).build(), TumblingWindows(0.1).build()
    feed(sliding, events)
    feed(tumbling, events)
    fired = sliding.flush()
    assert fired == tumbling.flush()
    assert sorted(ts for w in fired for ts in w.items[0]) == sorted(times)
    assert all(w.start <= ts < w.end for w in fired for ts in w.items[0])


# -- sessions: exact outputs -----------------------------------------------------------------------


def test_an_item_exactly_the_gap_away_joins_the_session() -> None:
    state = SessionWindows(5).build()
    feed(state, [("k", 0, "a"), ("k", 5, "b"), ("k", 10.001, "c")])
    assert spans(state.flush()) == [("k", 0.0, 10.0, ("a", "b")), ("k", 10.001, 15.001, ("c",))]


def test_an_item_before_a_session_extends_its_start() -> None:
    state = SessionWindows(5).build()
    feed(state, [("k", 10, "a"), ("k", 5, "b"), ("k", -0.5, "c")])
    assert spans(state.flush()) == [("k", -0.5, 4.5, ("c",)), ("k", 5.0, 15.0, ("a", "b"))]


def test_an_item_that_bridges_two_sessions_merges_them_in_arrival_order() -> None:
    state = SessionWindows(5).build(inputs=2)
    for index, ts, value in [(0, 0, "a"), (1, 10, "b"), (0, 11, "c"), (1, 1, "d"), (0, 5, "bridge")]:
        assert state.add("k", ts, index, value, NEVER)
    assert state.open_windows() == 1
    assert state.flush() == [FiredWindow("k", 0.0, 16.0, (("a", "c", "bridge"), ("b", "d")))]


def test_a_session_fires_when_the_watermark_reaches_last_item_plus_gap() -> None:
    state = SessionWindows(5).build()
    feed(state, [("j", 3, "c"), ("k", 0, "a"), ("k", 3, "b")])
    assert state.advance(7.99) == []
    assert spans(state.advance(8)) == [("k", 0.0, 8.0, ("a", "b")), ("j", 3.0, 8.0, ("c",))]
    assert state.open_windows() == 0


def test_sessions_are_per_key() -> None:
    state = SessionWindows(5).build()
    feed(state, [("a", 0, 1), ("b", 4, 2), ("a", 9, 3)])
    assert spans(state.flush()) == [("a", 0.0, 5.0, (1,)), ("b", 4.0, 9.0, (2,)), ("a", 9.0, 14.0, (3,))]


def test_a_session_growing_after_it_was_queued_fires_at_its_new_end() -> None:
    state = SessionWindows(5).build()
    feed(state, [("k", 0, "a")])
    state.advance(4)
    feed(state, [("k", 4, "b")], watermark=4)
    assert state.advance(8.5) == []
    assert spans(state.advance(9)) == [("k", 0.0, 9.0, ("a", "b"))]


# -- lateness --------------------------------------------------------------------------------------


def test_without_allowed_lateness_an_item_for_a_passed_window_is_late() -> None:
    state = TumblingWindows(10).build()
    feed(state, [("k", 1, "a")])
    assert state.add("k", 9, 0, "late", 10) is False  # late even before the window fired
    assert spans(state.advance(10)) == [("k", 0.0, 10.0, ("a",))]
    assert state.add("k", 5, 0, "late", 10) is False
    assert state.add("k", 10, 0, "on time", 10) is True
    assert state.open_windows() == 1


def test_allowed_lateness_refires_a_window_with_all_its_items_then_purges_it() -> None:
    state = TumblingWindows(10).build(allowed_lateness=5)
    feed(state, [("k", 1, "a")])
    assert state.advance(10) == [FiredWindow("k", 0.0, 10.0, (("a",),))]
    assert state.open_windows() == 1  # kept for late items
    assert state.add("k", 2, 0, "b", 12) is True
    assert state.add("k", 3, 0, "c", 12) is True
    assert state.advance(12) == [FiredWindow("k", 0.0, 10.0, (("a", "b", "c"),), refire=True)]
    assert state.advance(14.9) == []
    assert state.add("k", 4, 0, "d", 14.9) is True
    assert state.advance(15) == [FiredWindow("k", 0.0, 10.0, (("a", "b", "c", "d"),), refire=True)]
    assert state.open_windows() == 0  # purged
    assert state.add("k", 5, 0, "e", 15) is False
    assert state.fired_count() == 3


def test_a_late_item_for_a_kept_window_is_refired_by_flush() -> None:
    state = TumblingWindows(10).build(allowed_lateness=100)
    feed(state, [("k", 1, "a"), ("k", 11, "x")])
    state.advance(20)
    assert state.flush() == []  # fired, nothing new: no refire at end of input
    feed(state, [("k", 1, "a"), ("k", 11, "x")])
    state.advance(20)
    assert state.add("k", 2, 0, "b", 20)
    assert state.flush() == [FiredWindow("k", 0.0, 10.0, (("a", "b"),), refire=True)]
    assert state.open_windows() == 0


def test_a_sliding_item_lands_only_in_its_windows_within_allowed_lateness() -> None:
    state = SlidingWindows(10, 5).build()
    assert state.add("k", 9, 0, "x", watermark=12) is True
    assert spans(state.flush()) == [("k", 5.0, 15.0, ("x",))]
    assert state.add("k", 9, 0, "x", watermark=15) is False


def test_a_session_item_is_late_when_its_own_session_would_be() -> None:
    state = SessionWindows(5).build()
    assert state.add("k", 0, 0, "late", 5) is False
    assert state.add("k", 0.5, 0, "on time", 5) is True
    state = SessionWindows(5).build(allowed_lateness=2)
    assert state.add("k", 0, 0, "on time", 6.99) is True
    assert state.add("k", 0, 0, "late", 7) is False


def test_a_late_item_extending_a_fired_session_refires_it_at_its_new_end() -> None:
    state = SessionWindows(5).build(allowed_lateness=10)
    feed(state, [("k", 0, "a"), ("k", 20, "z")])
    assert spans(state.advance(5)) == [("k", 0.0, 5.0, ("a",))]
    assert state.add("k", 3, 0, "b", 5) is True  # the session becomes [0, 8)
    assert state.advance(7) == []
    assert state.advance(8) == [FiredWindow("k", 0.0, 8.0, (("a", "b"),), refire=True)]
    assert state.advance(17.9) == []
    assert state.open_windows() == 2
    state.advance(18)
    assert state.open_windows() == 1


def test_a_late_item_merging_a_fired_session_with_an_open_one_refires_the_whole() -> None:
    state = SessionWindows(5).build(allowed_lateness=10)
    feed(state, [("k", 0, "a"), ("k", 9, "c")])
    assert spans(state.advance(5)) == [("k", 0.0, 5.0, ("a",))]
    assert state.add("k", 4.5, 0, "b", 5) is True
    assert state.open_windows() == 1
    assert state.advance(13.9) == []
    assert state.advance(14) == [FiredWindow("k", 0.0, 14.0, (("a", "c", "b"),), refire=True)]


def test_merging_with_a_fired_later_session_refires_the_whole() -> None:
    state = SessionWindows(5).build(allowed_lateness=100)
    feed(state, [("k", 10, "a")])
    assert spans(state.advance(15)) == [("k", 10.0, 15.0, ("a",))]
    assert state.add("k", 0, 0, "b", 15) is True  # a session [0, 5) of its own, due at once
    assert state.add("k", 5, 0, "c", 15) is True  # bridges [0, 5) and the fired [10, 15)
    assert state.advance(15) == [FiredWindow("k", 0.0, 15.0, (("a", "b", "c"),), refire=True)]


def test_a_session_fired_at_its_end_is_not_joined_by_an_item_at_that_end_without_lateness() -> None:
    # A watermark equal to a session's end fires it and, with no allowed lateness, drops it; an
    # item exactly a gap after the last one, arriving after that, starts a session of its own.
    state = SessionWindows(5).build()
    feed(state, [("k", 0, "a")])
    state.advance(5)
    assert state.add("k", 5, 0, "b", 5) is True
    assert spans(state.flush()) == [("k", 5.0, 10.0, ("b",))]
    # With allowed lateness it joins, and the session fires again.
    state = SessionWindows(5).build(allowed_lateness=1)
    feed(state, [("k", 0, "a")])
    state.advance(5)
    assert state.add("k", 5, 0, "b", 5) is True
    assert state.flush() == [FiredWindow("k", 0.0, 10.0, (("a", "b"),), refire=True)]


def test_a_refused_item_changes_nothing() -> None:
    state = SessionWindows(5).build()
    assert state.add("new key", 0, 0, "late", 10) is False
    assert state.open_windows() == 0
    assert state.flush() == []


def test_purged_windows_free_their_state_as_time_goes_on() -> None:
    state = TumblingWindows(60).build(allowed_lateness=30)
    rng = random.Random(7)
    watermark = NEVER
    for i in range(20_000):
        ts = i / 10
        assert state.add(rng.randrange(100), ts, 0, i, watermark)
        watermark = ts
        if i % 50 == 0:
            state.advance(watermark)
            assert state.open_windows() <= 2 * 100
    assert len(state.flush()) <= 100


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: TumblingWindows(0), ValueError, "size must be finite and > 0, got 0: a window needs"),
        (lambda: TumblingWindows(math.inf), ValueError, "size must be finite and > 0"),
        (lambda: TumblingWindows(-1.0), ValueError, "size must be finite and > 0"),
        (lambda: TumblingWindows("10"), TypeError, "size must be a number of seconds"),  # type: ignore[arg-type]
        (lambda: TumblingWindows(True), TypeError, "size must be a number of seconds"),
        (lambda: SlidingWindows(10, 0), ValueError, "slide must be finite and > 0"),
        (lambda: SlidingWindows(math.nan, 1), ValueError, "size must be finite and > 0"),
        (
            lambda: SlidingWindows(5, 10),
            ValueError,
            "slide must not exceed size, or items between windows would belong to none",
        ),
        (lambda: SessionWindows(0), ValueError, "gap must be finite and > 0, got 0: a session needs"),
        (lambda: SessionWindows(None), TypeError, "gap must be a number of seconds"),  # type: ignore[arg-type]
    ],
)
def test_configs_refuse_bad_values_and_say_why(make: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        make()


def test_configs_are_frozen_and_hold_floats() -> None:
    config = SlidingWindows(60, 10)
    assert config == SlidingWindows(60.0, 10.0)
    assert isinstance(config.size, float)
    assert isinstance(config.slide, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.size = 5  # type: ignore[misc]


def test_window_config_reads_the_contract_spelling() -> None:
    assert window_config("tumbling", 60) == TumblingWindows(60)
    assert window_config("sliding", 60, 10) == SlidingWindows(60, 10)
    assert window_config("session", timeout=300) == SessionWindows(300)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            ("hopping", 10),
            {},
            "unknown window_type 'hopping'; expected one of 'tumbling', 'sliding', 'session'",
        ),
        (("tumbling",), {}, "tumbling windows need size"),
        (("sliding", 10), {}, "sliding windows need slide"),
        (("sliding",), {}, "sliding windows need size, .*; and slide"),
        (("session",), {}, "session windows need timeout"),
        (("tumbling", 10, 5), {}, "tumbling windows take no slide; they use size"),
        (("tumbling", 10), {"timeout": 5}, "tumbling windows take no timeout"),
        (("sliding", 10, 5), {"timeout": 5}, "sliding windows take no timeout"),
        (("session", 10), {"timeout": 5}, "session windows take no size; they use timeout"),
        (("session", 10, 2), {"timeout": 5}, "session windows take no size or slide"),
        (("sliding", 5, 10), {}, "slide must not exceed size"),
    ],
)
def test_window_config_refuses_what_does_not_belong(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        window_config(*args, **kwargs)


def test_window_state_refuses_bad_arguments() -> None:
    # Made directly, not by a config's build(): the shape must be one of the three.
    for shape in [{}, {"size": 1.0, "gap": 1.0}, {"gap": 1.0, "slide": 1.0}]:
        with pytest.raises(TypeError, match=r"windows have a size \(and a slide, when sliding\) or a gap"):
            WindowState(shape="windows", **shape)
    with pytest.raises(ValueError, match="at least 1 input"):
        TumblingWindows(1).build(inputs=0)
    with pytest.raises(TypeError, match="inputs must be an integer"):
        TumblingWindows(1).build(inputs=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="allowed_lateness must be finite and >= 0"):
        TumblingWindows(1).build(allowed_lateness=-1)
    state = TumblingWindows(1).build(inputs=2)
    with pytest.raises(IndexError, match="input index 2 out of range for 2 input"):
        state.add("k", 0, 2, "x", NEVER)
    with pytest.raises(ValueError, match="timestamp must be finite"):
        state.add("k", math.inf, 0, "x", NEVER)
    with pytest.raises(ValueError, match="watermark"):
        state.add("k", 0, 0, "x", math.nan)
    with pytest.raises(ValueError, match="watermark"):
        state.advance(math.nan)
    with pytest.raises(TypeError):
        state.add([], 0, 0, "x", NEVER)  # type: ignore[arg-type]
    assert state.open_windows() == 0


# -- properties against brute force ----------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", 0])
TIMES = st.one_of(
    st.integers(min_value=-40, max_value=120),
    st.floats(min_value=-40, max_value=120, allow_nan=False, allow_infinity=False),
)
EVENTS = st.lists(st.tuples(KEYS, TIMES, st.integers(-100, 100)), max_size=40)
FIXED_CONFIGS = st.one_of(
    st.sampled_from([0.5, 1, 2.5, 3, 10, 25]).map(TumblingWindows),
    st.tuples(st.sampled_from([1, 2, 5, 7.5, 10, 25]), st.sampled_from([0.5, 1, 2, 2.5, 5]))
    .filter(lambda pair: pair[1] <= pair[0])
    .map(lambda pair: SlidingWindows(*pair)),
)


def in_order(events: Sequence[Event]) -> list[Event]:
    return sorted(events, key=lambda event: event[1])


def brute_force_sums(config: WindowConfig, events: Sequence[Event]) -> dict[tuple[Any, float, float], int]:
    """For every key and every window start that holds an item, the sum of the values there."""
    assert not isinstance(config, SessionWindows)
    size = config.size
    slide = config.slide if isinstance(config, SlidingWindows) else size
    sums: dict[tuple[Any, float, float], int] = {}
    if not events:
        return sums
    times = [ts for _, ts, _ in events]
    first = math.floor(min(times) / slide) - math.ceil(size / slide) - 1
    for k in range(first, math.floor(max(times) / slide) + 2):
        start = k * slide
        end = (k + 1) * size if isinstance(config, TumblingWindows) else start + size
        for key, ts, value in events:
            if start <= ts < end:
                sums[(key, start, end)] = sums.get((key, start, end), 0) + value
    return sums


def sums_of(fired: Sequence[FiredWindow]) -> dict[tuple[Any, float, float], int]:
    sums: dict[tuple[Any, float, float], int] = {}
    for w in fired:
        assert (w.key, w.start, w.end) not in sums, "a window fired twice"
        sums[(w.key, w.start, w.end)] = sum(w.items[0])
    return sums


def run_in_order(state: WindowState, events: Sequence[Event]) -> list[FiredWindow]:
    """Feed ``events`` in order, the watermark following the last timestamp; then flush."""
    fired: list[FiredWindow] = []
    watermark = NEVER
    for key, ts, value in events:
        assert state.add(key, ts, 0, value, watermark), "nothing is late in order"
        watermark = ts
        fired += state.advance(watermark)
    fired += state.flush()
    assert state.open_windows() == 0
    assert state.fired_count() == len(fired)
    return fired


def assert_in_output_order(fired: Sequence[FiredWindow]) -> None:
    ends = [w.end for w in fired]
    assert ends == sorted(ends)
    assert not any(w.refire for w in fired)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(config=FIXED_CONFIGS, events=EVENTS)
def test_in_order_tumbling_and_sliding_sums_match_brute_force(
    config: WindowConfig, events: list[Event]
) -> None:
    ordered = in_order(events)
    fired = run_in_order(config.build(), ordered)
    assert_in_output_order(fired)
    assert sums_of(fired) == brute_force_sums(config, events)


def shuffle_within(events: Sequence[Event], delays: Sequence[int]) -> list[Event]:
    """Arrival order where each item is at most ``max(delays)`` behind the largest timestamp seen."""
    arrival = sorted(range(len(events)), key=lambda i: events[i][1] + delays[i % len(delays)])
    return [events[i] for i in arrival]


def run_out_of_order(state: WindowState, events: Sequence[Event], bound: float) -> list[FiredWindow]:
    """Feed ``events`` with the watermark ``bound`` behind the largest timestamp seen; then flush."""
    fired: list[FiredWindow] = []
    seen = NEVER
    for key, ts, value in events:
        assert state.add(key, ts, 0, value, seen - bound), "nothing is late within the bound"
        seen = max(seen, ts)
        fired += state.advance(seen - bound)
    fired += state.flush()
    assert state.open_windows() == 0
    return fired


def contents(fired: Sequence[FiredWindow]) -> dict[tuple[Any, float, float], list[Any]]:
    return {(w.key, w.start, w.end): sorted(w.items[0]) for w in fired}


INT_EVENTS = st.lists(st.tuples(KEYS, st.integers(-40, 120), st.integers(-100, 100)), max_size=40)
SESSION_CONFIGS = st.sampled_from([0.5, 1.5, 2.5, 4.5, 10.5]).map(SessionWindows)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    config=st.one_of(FIXED_CONFIGS, SESSION_CONFIGS),
    events=INT_EVENTS,
    bound=st.integers(0, 15),
    delays=st.lists(st.integers(0, 15), min_size=1, max_size=40),
)
def test_out_of_order_input_within_the_bound_fires_what_sorted_input_fires(
    config: WindowConfig, events: list[Event], bound: int, delays: list[int]
) -> None:
    # Session gaps end in .5 so that, with whole-second timestamps, no item ever lands exactly on
    # the end of a session the watermark has just reached (see the test of that case above).
    delays = [min(delay, bound) for delay in delays]
    ordered = in_order(events)
    shuffled = shuffle_within(ordered, delays)
    expected = run_in_order(config.build(), ordered)
    actual = run_out_of_order(config.build(), shuffled, bound)
    assert_in_output_order(actual)
    assert contents(actual) == contents(expected)
    assert len(actual) == len(expected)


def brute_force_sessions(gap: float, events: Sequence[Event]) -> list[tuple[Any, float, float, list[Any]]]:
    """Per key: sort by timestamp, start a new cluster when the next is more than ``gap`` later."""
    by_key: dict[Hashable, list[tuple[float, Any]]] = defaultdict(list)
    for key, ts, value in events:
        by_key[key].append((ts, value))
    sessions = []
    for key, items in by_key.items():
        items.sort(key=lambda item: item[0])
        cluster = [items[0]]
        for item in items[1:]:
            if item[0] > cluster[-1][0] + gap:
                sessions.append((key, cluster[0][0], cluster[-1][0] + gap, sorted(v for _, v in cluster)))
                cluster = []
            cluster.append(item)
        sessions.append((key, cluster[0][0], cluster[-1][0] + gap, sorted(v for _, v in cluster)))
    return sorted(sessions, key=repr)


def session_contents(fired: Sequence[FiredWindow]) -> list[tuple[Any, float, float, list[Any]]]:
    return sorted(((w.key, w.start, w.end, sorted(w.items[0])) for w in fired), key=repr)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    gap=st.sampled_from([0.5, 1, 2, 2.5, 5, 10]),
    keyed_times=st.lists(st.tuples(KEYS, TIMES), max_size=40, unique_by=lambda pair: pair[1]),
)
def test_in_order_sessions_match_brute_force_gap_clustering(
    gap: float, keyed_times: list[tuple[Hashable, float]]
) -> None:
    # Timestamps are distinct across keys: see the test of an item at a fired session's end.
    events = [(key, float(ts), i) for i, (key, ts) in enumerate(keyed_times)]
    fired = run_in_order(SessionWindows(gap).build(), in_order(events))
    assert_in_output_order(fired)
    assert session_contents(fired) == brute_force_sessions(gap, events)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    gap=st.sampled_from([0.5, 1, 2, 2.5, 5, 10]),
    events=st.lists(st.tuples(KEYS, TIMES, st.integers()), max_size=40),
)
def test_sessions_in_any_arrival_order_match_brute_force_at_flush(gap: float, events: list[Event]) -> None:
    state = SessionWindows(gap).build()
    feed(state, [(key, ts, (i, value)) for i, (key, ts, value) in enumerate(events)])
    fired = state.flush()
    assert_in_output_order(fired)
    for w in fired:  # items in arrival order, across merges
        assert list(w.items[0]) == sorted(w.items[0])
    stripped = [(key, ts, value) for key, ts, value in events]
    assert [(k, s, e, sorted(v for _, v in items)) for k, s, e, items in session_contents(fired)] == [
        (k, s, e, sorted(v)) for k, s, e, v in brute_force_sessions(gap, stripped)
    ]


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    size=st.sampled_from([0.5, 1, 3, 10]),
    times=st.lists(TIMES, max_size=60),
    cuts=st.lists(st.integers(1, 8), min_size=1, max_size=10),
    lateness=st.sampled_from([0, 0.5, 5]),
    keys=st.lists(KEYS, min_size=1, max_size=8),
)
def test_every_in_order_item_fires_in_exactly_one_tumbling_window_however_batched(
    size: float, times: list[float], cuts: list[int], lateness: float, keys: list[Hashable]
) -> None:
    state = TumblingWindows(size).build(allowed_lateness=lateness)
    events = [(keys[i % len(keys)], ts, i) for i, ts in enumerate(sorted(times))]
    fired: list[FiredWindow] = []
    watermark, position, batch = NEVER, 0, 0
    while position < len(events):
        for key, ts, i in events[position : position + cuts[batch % len(cuts)]]:
            assert state.add(key, ts, 0, i, watermark)
            watermark = ts
        position += cuts[batch % len(cuts)]
        batch += 1
        fired += state.advance(watermark)
    fired += state.flush()
    assert_in_output_order(fired)
    assert Counter(i for w in fired for i in w.items[0]) == Counter(range(len(events)))
    for w in fired:
        assert all(w.start <= events[i][1] < w.end and events[i][0] == w.key for i in w.items[0])


def test_next_deadline_is_when_advance_could_first_do_something() -> None:
    state = TumblingWindows(10.0).build(allowed_lateness=5.0)
    assert state.next_deadline() == math.inf
    state.add("k", 3.0, 0, "a", watermark=-math.inf)
    assert state.next_deadline() == 10.0
    assert state.advance(9.9) == []
    assert [w.start for w in state.advance(10.0)] == [0.0]
    assert state.next_deadline() == 15.0  # kept for late items until end + allowed lateness
    assert state.open_windows() == 1
    state.advance(15.0)
    assert (state.open_windows(), state.next_deadline()) == (0, math.inf)


# -- batches: the tumbling fast path against one item at a time ------------------------------------

Arrival = tuple[int, Hashable, float, int]  # (input, key, timestamp, value)

# Timestamps on and around window ends, in any order, so that items are out of order and late.
STAMPS = st.one_of(
    st.integers(-20, 100).map(float),
    st.sampled_from([0.1, 0.2, 0.3, 0.7, 2.9999999999999996, 3.0000000000000004, 59.99, 60.01]),
    st.floats(min_value=-20, max_value=100, allow_nan=False, allow_infinity=False),
)
BATCH_CONFIGS = st.one_of(
    st.sampled_from([0.1, 0.3, 1, 3, 10, 25]).map(TumblingWindows),
    st.sampled_from([(10, 10), (0.3, 0.3), (10, 5), (7.5, 2.5)]).map(lambda pair: SlidingWindows(*pair)),
    st.sampled_from([0.5, 2.5, 10]).map(SessionWindows),
)


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[int, list[list[Arrival]]]:
    """How many inputs, and batches of arrivals, each batch from one input.

    With a drift, each batch's timestamps are shifted later than the previous batch's, so that
    watermarks climb inside batches and older timestamps among them come late.
    """
    inputs = draw(st.integers(1, 3))
    drift = draw(st.sampled_from([0.0, 4.0, 15.0]))
    batches = []
    shapes = draw(st.lists(st.tuples(st.integers(0, inputs - 1), st.integers(1, 9)), max_size=12))
    for number, (index, size) in enumerate(shapes):
        events = draw(st.lists(st.tuples(KEYS, STAMPS), min_size=size, max_size=size))
        batches.append([(index, key, ts + number * drift, 0) for key, ts in events])
    value = iter(range(10_000))  # every item told apart by its value
    return inputs, [[(index, key, ts, next(value)) for index, key, ts, _ in batch] for batch in batches]


def one_item_at_a_time(
    state: WindowState, delay: float, arrivals: list[Arrival]
) -> tuple[list[FiredWindow], list[int], float]:
    """The window operator's rule, item by item: ``add`` against the watermark before the item,
    then move the item's input's mark; then fire what the watermark reaches, whether it rose or
    the item went to a window it had already reached."""
    marks, watermark = [NEVER] * state.inputs, NEVER
    fired: list[FiredWindow] = []
    late = []
    for index, key, ts, value in arrivals:
        if not state.add(key, ts, index, value, watermark):
            late.append(value)
        marks[index] = max(marks[index], ts - delay)
        watermark = max(watermark, min(marks))
        fired += state.advance(watermark)
    return fired + state.flush(), late, watermark


def batch_by_batch(
    state: WindowState, delay: float, batches: list[list[Arrival]]
) -> tuple[list[FiredWindow], list[int], float]:
    """The same through ``feed_batch``, one call per batch, the other inputs' marks as the cap."""
    marks, watermark = [NEVER] * state.inputs, NEVER
    fired: list[FiredWindow] = []
    late: list[int] = []
    for batch in batches:
        index = batch[0][0]
        cap = min((mark for i, mark in enumerate(marks) if i != index), default=math.inf)
        time = EventTime(watermark, marks[index], cap=cap, delay=delay)
        values = [value for _, _, _, value in batch]
        stamps = [ts for _, _, ts, _ in batch]
        keys = [key for _, key, _, _ in batch]
        assert feed_batch(state, time, index, values, stamps, keys, late, fired) == (len(batch), None)
        watermark, marks[index] = time.watermark, time.mark
    return fired + state.flush(), late, watermark


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(
    config=BATCH_CONFIGS,
    lateness=st.sampled_from([0, 0.5, 7.5]),
    delay=st.sampled_from([0, 0.25, 5]),
    given_arrivals=arrivals(),
)
def test_batches_fire_exactly_what_one_item_at_a_time_fires(
    config: WindowConfig, lateness: float, delay: float, given_arrivals: tuple[int, list[list[Arrival]]]
) -> None:
    # Tumbling windows (and sliding ones by their size) take the fast path of feed_batch: whole
    # runs through add_run, firing found by searching the batch. The same windows must fire, with
    # the same items, refires and late items, in the same order, after the same items.
    inputs, batches = given_arrivals
    flat = [arrival for batch in batches for arrival in batch]
    expected = one_item_at_a_time(config.build(inputs=inputs, allowed_lateness=lateness), delay, flat)
    actual = batch_by_batch(config.build(inputs=inputs, allowed_lateness=lateness), delay, batches)
    assert actual == expected


def test_an_item_needing_a_new_window_is_judged_against_the_watermark_its_run_has_moved() -> None:
    # 35 moves the watermark from 5 to 15 (out-of-orderness 20) inside the second batch without
    # firing anything; 5 then needs a window [0, 10) for key "b", which that watermark has passed.
    batches = [[(0, "a", 25.0, 1)], [(0, "a", 35.0, 2), (0, "b", 5.0, 3)]]
    flat = [arrival for batch in batches for arrival in batch]
    expected = one_item_at_a_time(TumblingWindows(10).build(), 20, flat)
    assert expected[1] == [3]
    assert batch_by_batch(TumblingWindows(10).build(), 20, batches) == expected


def test_the_fast_path_is_for_windows_that_hold_each_item_once() -> None:
    assert TumblingWindows(10).build().tumbling
    assert SlidingWindows(10, 10).build().tumbling
    assert not SlidingWindows(10, 5).build().tumbling
    assert not SessionWindows(10).build().tumbling
    with pytest.raises(TypeError, match="add_run needs tumbling windows"):
        SessionWindows(10).build().add_run(0, [], [], [], lambda position: NEVER, [])


def test_a_run_stops_after_an_item_that_brings_the_next_deadline_forward() -> None:
    state = TumblingWindows(10).build()
    late: list[Any] = []
    assert state.add_run(0, ["a", "b", "c"], [25.0, 26.0, 5.0], ["k"] * 3, lambda position: NEVER, late) == (
        1,
        None,
    )
    assert state.next_deadline() == 30.0
    # The same window again sets no earlier deadline; an earlier window does, and the run stops.
    assert state.add_run(0, ["b", "c", "d"], [26.0, 5.0, 6.0], ["k"] * 3, lambda position: NEVER, late) == (
        2,
        None,
    )
    assert state.next_deadline() == 10.0
    assert state.add_run(0, ["d"], [6.0], ["k"], lambda position: NEVER, late) == (1, None)
    assert late == []
    assert spans(state.flush()) == [("k", 0.0, 10.0, ("c", "d")), ("k", 20.0, 30.0, ("a", "b"))]


def test_a_run_asks_for_the_watermark_before_an_item_that_needs_a_new_window() -> None:
    state = TumblingWindows(10).build(allowed_lateness=5)
    asked: list[int] = []

    def watermark_at(position: int) -> float:
        asked.append(position)
        return 30.0

    state.add("k", 21.0, 0, "w", watermark=NEVER)
    late: list[Any] = []
    # 12 is late at watermark 30 ([10, 20) ended 10 s ago, 5 s allowed); 25 joins [20, 30)
    # without asking; 37 needs [30, 40), which ends after the deadline: the run goes on.
    assert state.add_run(0, ["x", "y", "z"], [12.0, 25.0, 37.0], ["k"] * 3, watermark_at, late) == (3, None)
    assert (asked, late) == ([0, 2], ["x"])


def test_a_run_stops_at_an_item_it_cannot_add_and_leaves_no_trace_of_it() -> None:
    state = TumblingWindows(0.5).build()
    state.add("k", 0.2, 0, "s", watermark=NEVER)  # due at 0.5: later windows set no new deadline
    late: list[Any] = []
    # 1e308 / 0.5 overflows: no window number; an unhashable key cannot be looked up.
    taken, error = state.add_run(0, ["a", "b", "c"], [1.0, 1e308, 2.0], ["k"] * 3, lambda p: NEVER, late)
    assert (taken, type(error)) == (1, ValueError)
    taken, error = state.add_run(0, ["d", "e"], [1.2, 1.3], ["k", ["unhashable"]], lambda p: NEVER, late)
    assert (taken, type(error)) == (1, TypeError)
    assert spans(state.flush()) == [("k", 0.0, 0.5, ("s",)), ("k", 1.0, 1.5, ("a", "d"))]


def test_an_unhashable_key_is_an_error_even_for_a_late_item() -> None:
    for config in (TumblingWindows(10), SlidingWindows(10, 5), SessionWindows(10)):
        state = config.build()
        with pytest.raises(TypeError, match="unhashable"):
            state.add(["k"], 0.0, 0, "late", watermark=100.0)
        assert state.add("k", 0.0, 0, "late", watermark=100.0) is False


# -- accumulators: windows that fold their items as they arrive ------------------------------------


def append_value(held: tuple[Any, ...], value: Any) -> tuple[Any, ...]:
    return (*held, value)


def concatenated(earlier: tuple[Any, ...], later: tuple[Any, ...]) -> tuple[Any, ...]:
    return earlier + later


def folding(inline: bool = False) -> Accumulators:
    """Accumulators keeping the items in a tuple, in the order they were folded in."""
    return Accumulators(append_value, (), concatenated, inline=inline)


def as_items(fired: FiredWindow, *, sort: bool) -> FiredWindow:
    """A fired window of folding accumulators written as the items it folded (sorted if ``sort``)."""
    items = tuple(tuple(sorted(held)) if sort else held for held in fired.items)
    return dataclasses.replace(fired, items=items)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    config=BATCH_CONFIGS,
    lateness=st.sampled_from([0, 0.5, 7.5]),
    delay=st.sampled_from([0, 0.25, 5]),
    given_arrivals=arrivals(),
    inline=st.booleans(),
)
def test_accumulators_fire_what_item_lists_fire_folded_in_arrival_order(
    config: WindowConfig,
    lateness: float,
    delay: float,
    given_arrivals: tuple[int, list[list[Arrival]]],
    inline: bool,
) -> None:
    # Batches go through the generated loop of add_run (the fold pasted in, or called); one item
    # at a time through add. Both must fire what item lists fire, at the same points: the same
    # windows, refires and late items, each window's items folded in arrival order. Merged
    # sessions fold the earlier session first, so there only the multiset of items is the same.
    inputs, batches = given_arrivals
    flat = [arrival for batch in batches for arrival in batch]
    kept = one_item_at_a_time(config.build(inputs=inputs, allowed_lateness=lateness), delay, flat)

    def aggregating() -> WindowState:
        return config.build(inputs=inputs, allowed_lateness=lateness, accumulators=folding(inline))

    for fired, late, watermark in (
        one_item_at_a_time(aggregating(), delay, flat),
        batch_by_batch(aggregating(), delay, batches),
    ):
        sessions = isinstance(config, SessionWindows)
        assert [as_items(w, sort=sessions) for w in fired] == [as_items(w, sort=sessions) for w in kept[0]]
        assert (late, watermark) == kept[1:]


def test_sessions_merge_their_accumulators_earlier_session_first() -> None:
    state = SessionWindows(10).build(accumulators=folding())
    for ts, value in [(20.0, "b"), (0.0, "a"), (10.0, "c")]:  # "c" bridges [0, 10) and [20, 30)
        assert state.add("k", ts, 0, value, NEVER)
    assert spans(state.flush()) == [("k", 0.0, 30.0, ("a", "b", "c"))]
    items = SessionWindows(10).build()
    for ts, value in [(20.0, "b"), (0.0, "a"), (10.0, "c")]:
        items.add("k", ts, 0, value, NEVER)
    assert spans(items.flush()) == [("k", 0.0, 30.0, ("b", "a", "c"))]  # arrival order


def test_an_accumulator_refires_with_its_late_items_folded_in() -> None:
    state = TumblingWindows(10).build(allowed_lateness=5, accumulators=Accumulators(operator.add, 0))
    state.add("k", 1.0, 0, 2, NEVER)
    assert spans(state.advance(10.0)) == [("k", 0.0, 10.0, 2)]
    assert state.add("k", 3.0, 0, 5, 12.0)  # late, within the allowed lateness
    (refired,) = state.advance(13.0)
    assert (refired.items, refired.refire) == ((7,), True)
    assert state.flush() == []


def test_initial_is_called_for_each_new_window_and_input_or_used_as_it_is() -> None:
    made: list[list[Any]] = []

    def fresh() -> list[Any]:
        made.append([])
        return made[-1]

    def add(held: list[Any], value: Any) -> list[Any]:
        held.append(value)
        return held

    state = TumblingWindows(10).build(inputs=2, accumulators=Accumulators(add, fresh))
    feed(state, [("k", 1.0, "a"), ("k", 2.0, "b"), ("k", 12.0, "c"), ("j", 3.0, "d")])
    fired = state.flush()
    assert [(w.key, w.start, w.items) for w in fired] == [
        ("k", 0.0, (["a", "b"], [])),
        ("j", 0.0, (["d"], [])),
        ("k", 10.0, (["c"], [])),
    ]
    assert len(made) == 6  # three windows, two inputs each
    assert all(held is not other for held in made for other in made if held is not other)
    shared = TumblingWindows(10).build(inputs=2, accumulators=Accumulators(operator.add, 0))
    feed(shared, [("k", 1.0, 4), ("k", 2.0, 5)], index=1)
    assert [w.items for w in shared.flush()] == [(0, 9)]


class Refused(Exception):
    pass


def refuse_big(total: int, value: int) -> int:
    if total + value > 10:
        raise Refused(f"{total} + {value}")
    return total + value


def refuse_merging(earlier: int, later: int) -> int:
    raise Refused("no merging")


def test_an_add_that_raises_for_any_window_of_an_item_leaves_no_trace() -> None:
    # Sliding windows [0, 10) and [5, 15): the item at 7 fits [5, 15) (sum 0) but not [0, 10)
    # (sum 6), and neither window keeps it; the one at 12 makes a window of its own.
    config = SlidingWindows(10, 5)
    state = config.build(accumulators=Accumulators(refuse_big, 0))
    state.add("k", 1.0, 0, 6, NEVER)
    with pytest.raises(Refused):
        state.add("k", 7.0, 0, 5, NEVER)
    assert state.open_windows() == 2  # [-5, 5) and [0, 10), as before
    assert state.add("k", 12.0, 0, 5, NEVER)
    assert spans(state.flush()) == [
        ("k", -5.0, 5.0, 6),
        ("k", 0.0, 10.0, 6),
        ("k", 5.0, 15.0, 5),
        ("k", 10.0, 20.0, 5),
    ]


def test_a_merge_or_add_that_raises_for_a_bridging_item_leaves_the_sessions_apart() -> None:
    for accumulators in (
        Accumulators(operator.add, 0, refuse_merging),
        Accumulators(refuse_big, 0, operator.add),
    ):
        state = SessionWindows(10).build(accumulators=accumulators)
        state.add("k", 0.0, 0, 5, NEVER)
        state.add("k", 20.0, 0, 5, NEVER)
        with pytest.raises(Refused):
            state.add("k", 10.0, 0, 1, NEVER)  # bridges both: 5 + 5 + 1 > 10, or no merge at all
        assert state.open_windows() == 2
        assert spans(state.flush()) == [("k", 0.0, 10.0, 5), ("k", 20.0, 30.0, 5)]


def test_a_new_window_whose_first_add_raises_is_not_made() -> None:
    for config in (TumblingWindows(10), SlidingWindows(10, 5), SessionWindows(10)):
        state = config.build(accumulators=Accumulators(refuse_big, 0, operator.add))
        with pytest.raises(Refused):
            state.add("k", 3.0, 0, 11, NEVER)
        assert (state.open_windows(), state.next_deadline(), state.flush()) == (0, math.inf, [])
        late: list[Any] = []
        if state.tumbling:
            state.add("k", 1.0, 0, 1, NEVER)
            taken, error = state.add_run(0, [2, 11], [1.0, 2.0], ["k", "j"], lambda p: NEVER, late)
            assert (taken, type(error)) == (1, Refused)  # the fast path, then a new window for "j"
            assert spans(state.flush()) == [("k", 0.0, 10.0, 3)]


def test_aggregating_sessions_needs_a_merge_and_accumulators_need_functions() -> None:
    with pytest.raises(ValueError, match="aggregating session windows needs merge"):
        SessionWindows(5).build(accumulators=Accumulators(operator.add, 0))
    TumblingWindows(5).build(accumulators=Accumulators(operator.add, 0))  # no merge needed
    with pytest.raises(TypeError, match="accumulators must be Accumulators or None"):
        TumblingWindows(5).build(accumulators=operator.add)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="add must be callable"):
        Accumulators(0, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="merge must be callable or None"):
        Accumulators(operator.add, 0, merge="+")  # type: ignore[arg-type]

    async def later(total: int, value: int) -> int:
        return total + value

    for arguments in ((later, 0, None), (operator.add, 0, later), (operator.add, later, None)):
        with pytest.raises(TypeError, match="must be a plain function, not async"):
            Accumulators(*arguments)


# -- the range of timestamps, and windows per item -------------------------------------------------

WINDOW_LENGTHS = st.one_of(
    st.sampled_from([1e-300, 1e-9, 0.1, 0.3, 1.0, 3.0, 60.0, 1e10, 1e300]),
    st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False),
)


@st.composite
def stamp_near_a_boundary(draw: st.DrawFn, length: float) -> float:
    """A finite timestamp anywhere, or a few floats away from the start of window number k."""
    if draw(st.booleans()):
        return draw(st.floats(allow_nan=False, allow_infinity=False))
    k = draw(st.one_of(st.integers(-(2**52), 2**52), st.integers(-100, 100)))
    stamp = k * length
    for _ in range(draw(st.integers(0, 3))):
        stamp = math.nextafter(stamp, draw(st.sampled_from([math.inf, -math.inf])))
    return stamp if math.isfinite(stamp) else draw(st.floats(-1e300, 1e300))


def in_range(timestamp: float, config: WindowConfig) -> bool:
    """The documented range: less than 2**50 window lengths from 0, the windows within float range."""
    length = config.slide if isinstance(config, SlidingWindows) else config.size  # type: ignore[union-attr]
    reach = config.size + length  # type: ignore[union-attr]
    return abs(timestamp / length) < 2**50 and math.isfinite(abs(timestamp) + 2 * reach)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(data=st.data(), length=WINDOW_LENGTHS, tumbling=st.booleans())
def test_an_item_is_put_in_the_windows_that_hold_it_or_refused_as_out_of_range(
    data: st.DataObject, length: float, tumbling: bool
) -> None:
    # Huge and tiny timestamps and window lengths, and timestamps a few floats from a window
    # start: every window an item goes to holds it; out of range, it is an error that leaves
    # no trace. Sliding windows here hold each item in 3 windows (size = 3 * slide, 1 at the ends).
    timestamp = data.draw(stamp_near_a_boundary(length))
    config: WindowConfig = TumblingWindows(length) if tumbling else SlidingWindows(3 * length, length)
    if not math.isfinite(4 * length):
        config = TumblingWindows(length)
    state = config.build()
    if not in_range(timestamp, config):
        with pytest.raises(ValueError, match="out of the range of windows"):
            state.add("k", timestamp, 0, "x", NEVER)
        assert state.open_windows() == 0
        return
    assert state.add("k", timestamp, 0, "x", NEVER)
    fired = state.flush()
    assert all(w.start <= timestamp < w.end for w in fired)
    if isinstance(config, TumblingWindows):
        assert len(fired) == 1
    else:  # 3 windows hold it, give or take one at a window start (floats round each bound)
        assert 2 <= len(fired) <= 4
        starts = [w.start for w in fired]
        assert starts == sorted(set(starts))


@pytest.mark.parametrize("timestamp", [1e22, -1e22, 1e24, 1e26, 1e300, -1e300])
@pytest.mark.parametrize("config", [TumblingWindows(60), SlidingWindows(60, 10), SessionWindows(60)])
def test_a_timestamp_too_far_from_zero_for_the_window_length_is_an_error_of_its_item(
    timestamp: float, config: WindowConfig
) -> None:
    state = config.build()
    assert state.add("k", 5.0, 0, "before", NEVER)
    with pytest.raises(ValueError, match=r"timestamp .* is out of the range of windows of .* 2\*\*50"):
        state.add("k", timestamp, 0, "huge", NEVER)
    fired = state.flush()
    assert [items for _, _, _, items in spans(fired)] == [("before",)] * len(fired)
    assert len(fired) == (6 if isinstance(config, SlidingWindows) else 1)


@pytest.mark.parametrize("timestamp", [1e22, 1e24, 1e26])
def test_a_huge_timestamp_within_range_of_long_windows_is_assigned_exactly(timestamp: float) -> None:
    size = timestamp / 2**40  # 2**40 windows from zero: in range
    for config in (TumblingWindows(size), SlidingWindows(2 * size, size)):
        state = config.build()
        assert state.add("k", timestamp, 0, "x", NEVER)
        fired = state.flush()
        assert [(w.start <= timestamp < w.end) for w in fired] == [True] * (1 if config.size == size else 2)


def test_the_tumbling_fast_path_refuses_an_out_of_range_timestamp_at_its_position() -> None:
    state = TumblingWindows(60).build()
    time, late, fired = EventTime(NEVER), [], []  # type: ignore[var-annotated]
    stamps = [5.0, 70.0, 1e26, 130.0]
    fed, error = feed_batch(state, time, 0, ["a", "b", "huge", "c"], stamps, [None] * 4, late, fired)
    assert (fed, type(error), time.watermark) == (2, ValueError, 70.0)
    assert "out of the range of windows" in str(error)
    assert spans(fired) == [(None, 0.0, 60.0, ("a",))]
    assert spans(state.flush()) == [(None, 60.0, 120.0, ("b",))]


def test_sliding_windows_refuse_more_windows_per_item_than_the_bound() -> None:
    assert SlidingWindows(10_000, 1) == SlidingWindows(10_000.0, 1.0)  # 10,000 windows: the bound
    with pytest.raises(ValueError, match="36,000,000 windows") as caught:
        SlidingWindows(3600, 0.0001)
    assert str(caught.value) == (
        "SlidingWindows(size=3600.0, slide=0.0001) would put every item in 36,000,000 windows,"
        " more than the 10,000 allowed (MAX_WINDOWS_PER_ITEM): each item is stored in, and each"
        " window fires for, every one of them; use a larger slide"
    )
    with pytest.raises(ValueError, match="in 10,001 windows, more than the 10,000 allowed"):
        window_config("sliding", 10_001, 1)
    with pytest.raises(ValueError, match="in 10,001 windows"):
        SlidingWindows(10_000.5, 1)  # 10,000 or 10,001 windows, depending on the timestamp


def test_a_timestamp_that_rounding_leaves_out_of_every_sliding_window_is_an_error_of_its_item() -> None:
    # slide is 0.3 less a few floats: window -229760227683117 ends, in floats, before the item
    # that the division puts in it, and the next window starts after it.
    config = SlidingWindows(0.3, 0.29999999999999993)
    state = config.build()
    with pytest.raises(ValueError, match=r"falls between the windows of SlidingWindows\(size=0.3"):
        state.add("k", -68928068304934.79, 0, "x", NEVER)
    assert state.open_windows() == 0
