"""EventTime.after against pass_item: the watermark an item would bring, without changing anything."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sage_streams.time import EventTime

stamps = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@pytest.mark.slow
@given(
    st.lists(stamps, max_size=30),
    stamps,
    st.floats(min_value=0, max_value=100, allow_nan=False),
    st.one_of(st.just(math.inf), stamps),
)
def test_after_is_the_watermark_pass_item_would_leave(
    history: list[float], stamp: float, delay: float, cap: float
) -> None:
    time = EventTime(-math.inf, delay=delay, cap=cap)
    for earlier in history:
        time.pass_item(earlier)
    before = copy.copy(time)
    probe = copy.copy(time)
    probe.pass_item(stamp)
    assert time.after(stamp) == probe.watermark
    assert time == before  # nothing changed


def test_after_an_item_below_the_mark_keeps_the_watermark() -> None:
    time = EventTime(-math.inf, delay=2.0)
    time.pass_item(10.0)
    assert (time.after(9.0), time.after(13.0), time.watermark) == (8.0, 11.0, 8.0)
    capped = EventTime(-math.inf, cap=5.0)
    assert capped.after(7.0) == 5.0
