"""The window configs: frozen, validated when made (directly or by ``window_config``), and each
one's ``build()`` makes the logic that keeps its windows."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from sage_streams.operators.windows.config import (
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    window_config,
)
from sage_streams.operators.windows.contents import Accumulators
from sage_streams.operators.windows.state import WindowState

NEVER = -math.inf


def fired(state: WindowState, watermark: float) -> list[tuple[Any, float, float, list[list[Any]]]]:
    """``(key, start, end, items per input)`` of the windows ``advance(watermark)`` fires."""
    return [(w.key, w.start, w.end, [list(items) for items in w.items]) for w in state.advance(watermark)]


@pytest.mark.parametrize("codegen", [True, False])
def test_tumbling_build_keeps_tumbling_windows(codegen: bool) -> None:
    state = TumblingWindows(10.0).build(codegen=codegen)
    assert state.tumbling
    assert state.add("a", 3.0, 0, "x", NEVER)
    assert state.add("a", 12.0, 0, "y", 3.0)
    assert fired(state, 12.0) == [("a", 0.0, 10.0, [["x"]])]
    assert state.add("a", 4.0, 0, "late", 12.0) is False
    assert [(w.start, w.end) for w in state.flush()] == [(10.0, 20.0)]


def test_sliding_build_puts_an_item_in_each_of_its_windows() -> None:
    state = SlidingWindows(10.0, 5.0).build()
    assert not state.tumbling
    assert state.add("a", 7.0, 0, "x", NEVER)
    assert fired(state, 15.0) == [("a", 0.0, 10.0, [["x"]]), ("a", 5.0, 15.0, [["x"]])]


def test_session_build_merges_items_within_the_gap_over_two_inputs() -> None:
    state = SessionWindows(5.0).build(inputs=2)
    assert state.add("k", 0.0, 0, "a", NEVER)
    assert state.add("k", 5.0, 1, "b", 0.0)
    assert state.add("k", 20.0, 0, "c", 5.0)
    assert fired(state, 10.0) == [("k", 0.0, 10.0, [["a"], ["b"]])]
    assert [(w.start, w.end) for w in state.flush()] == [(20.0, 25.0)]


def test_build_passes_lateness_and_accumulators_on() -> None:
    count = Accumulators(lambda n, _: n + 1, 0)
    state = TumblingWindows(10.0).build(allowed_lateness=5.0, accumulators=count)
    assert state.add(None, 1.0, 0, "x", NEVER)
    assert state.add(None, 2.0, 0, "y", NEVER)
    assert [(w.start, w.items, w.refire) for w in state.advance(10.0)] == [(0.0, (2,), False)]
    assert state.add(None, 3.0, 0, "late", 12.0)  # within the lateness: the window fires again
    assert [(w.start, w.items, w.refire) for w in state.advance(12.0)] == [(0.0, (3,), True)]
    assert state.add(None, 4.0, 0, "too late", 15.0) is False


def test_each_build_is_new_state() -> None:
    config = TumblingWindows(10.0)
    config.build().add("a", 1.0, 0, "x", NEVER)
    assert config.build().flush() == []


def test_build_refuses_bad_arguments_with_the_states_messages() -> None:
    with pytest.raises(ValueError, match="at least 1 input"):
        SessionWindows(1.0).build(inputs=0)
    with pytest.raises(ValueError, match="allowed_lateness must be finite and >= 0"):
        SlidingWindows(2.0, 1.0).build(allowed_lateness=-1.0)
    with pytest.raises(ValueError, match="aggregating session windows needs merge"):
        SessionWindows(1.0).build(accumulators=Accumulators(lambda n, _: n + 1, 0))


def test_errors_name_the_windows_by_the_configs_repr() -> None:
    with pytest.raises(TypeError, match=r"add_run needs tumbling windows, not SessionWindows\(gap=1.0\)"):
        SessionWindows(1.0).build().add_run(0, ["x"], [0.0], [None], lambda _: NEVER, [])


@pytest.mark.parametrize(
    ("config", "field", "value"),
    [
        (TumblingWindows(10.0), "size", 5.0),
        (SlidingWindows(10.0, 5.0), "slide", 1.0),
        (SessionWindows(3.0), "gap", 1.0),
    ],
)
def test_configs_cannot_be_assigned(config: Any, field: str, value: float) -> None:
    before = dataclasses.asdict(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, field, value)
    assert dataclasses.asdict(config) == before


@pytest.mark.parametrize(
    ("args", "kwargs", "direct"),
    [
        (("tumbling", 0), {}, lambda: TumblingWindows(0)),
        (("tumbling", "10"), {}, lambda: TumblingWindows("10")),  # type: ignore[arg-type]
        (("sliding", 10, 0), {}, lambda: SlidingWindows(10, 0)),
        (("sliding", 5, 10), {}, lambda: SlidingWindows(5, 10)),
        (("sliding", 3600, 0.0001), {}, lambda: SlidingWindows(3600, 0.0001)),
        (("session",), {"timeout": -1}, lambda: SessionWindows(-1)),
    ],
)
def test_window_config_raises_what_the_config_raises(
    args: tuple[Any, ...], kwargs: dict[str, Any], direct: Any
) -> None:
    with pytest.raises((TypeError, ValueError)) as made:
        window_config(*args, **kwargs)
    with pytest.raises(type(made.value)) as constructed:
        direct()
    assert str(made.value) == str(constructed.value)
