"""StreamState: every operation, its errors, async updates under a per-key lock, and a model check
against a plain dict."""

from __future__ import annotations

import asyncio
import copy
import functools
import re
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.errors import StreamError
from sage_streams.functions import register_function
from sage_streams.state import StreamState


@register_function("state_test_double")
def double(value: int | None) -> int:
    return 2 * (value or 0)


@register_function("state_test_add_ten")
async def add_ten(value: int | None) -> int:
    await asyncio.sleep(0)  # a yield, so the update really suspends; not a wait
    return (value or 0) + 10


# -- construction, get, set, delete, keys ---------------------------------------------------------


def test_name_defaults_to_state_and_repr_shows_name_and_size() -> None:
    assert StreamState().name == "state"
    state = StreamState("orders")
    state.set("a", 1)
    state.set("b", 2)
    assert state.name == "orders"
    assert repr(state) == "StreamState(name='orders', keys=2)"
    assert repr(StreamState()) == "StreamState(name='state', keys=0)"


def test_empty_name_is_refused() -> None:
    with pytest.raises(ValueError, match="a state's name must be a non-empty string, got ''"):
        StreamState("")


def test_get_returns_the_value_or_the_default() -> None:
    state = StreamState()
    state.set("present", 0)
    assert state.get("present") == 0
    assert state.get("present", 5) == 0
    assert state.get("missing") is None
    assert state.get("missing", "fallback") == "fallback"


def test_set_replaces_and_stores_the_object_itself() -> None:
    state = StreamState()
    value = [1]
    state.set("k", "old")
    state.set("k", value)
    assert state.get("k") is value


def test_delete_removes_and_ignores_a_missing_key() -> None:
    state = StreamState()
    state.set("a", 1)
    state.delete("a")
    state.delete("never-there")
    assert "a" not in state
    assert len(state) == 0


def test_keys_len_and_contains() -> None:
    state = StreamState()
    for key in ("b", "a", ("tuple", 1)):
        state.set(key, None)
    state.delete("b")
    state.set("b", None)
    assert state.keys() == ["a", ("tuple", 1), "b"]
    assert len(state) == 3
    assert state.len() == 3
    assert "a" in state
    assert ("tuple", 1) in state
    assert "c" not in state


def test_keys_returns_a_new_list() -> None:
    state = StreamState()
    state.set("a", 1)
    state.keys().append("b")
    assert state.keys() == ["a"]


def test_the_seed_uses_it_without_await() -> None:
    def update_stats(stats: dict[str, int] | None) -> dict[str, int]:
        stats = stats or {"count": 0}
        return {"count": stats["count"] + 1}

    state = StreamState()
    state.set("counter", 0)
    state.increment("counter")
    state.append("events", {"id": 1})
    state.update("statistics", update_stats)
    state.update("statistics", update_stats)
    assert state.snapshot() == {"counter": 1, "events": [{"id": 1}], "statistics": {"count": 2}}


# -- increment ---------------------------------------------------------------------------------------


def test_increment_starts_at_zero_and_returns_the_new_value() -> None:
    state = StreamState()
    assert state.increment("n") == 1
    assert state.increment("n") == 2
    assert state.increment("n", 10) == 12
    assert state.increment("n", -2) == 10
    assert state.increment("x", 0.5) == 0.5
    assert state.increment("d", Decimal("1.5")) == Decimal("1.5")
    assert state.get("n") == 10


@pytest.mark.parametrize(
    ("current", "type_name"), [("1", "str"), ([1], "list"), (None, "NoneType"), (True, "bool")]
)
def test_increment_of_a_value_that_is_not_a_number_names_the_key(current: Any, type_name: str) -> None:
    state = StreamState()
    state.set("n", current)
    message = f"cannot increment state key 'n': its value is a {type_name}, not a number"
    with pytest.raises(TypeError, match=re.escape(message)):
        state.increment("n")
    assert state.get("n") == current


@pytest.mark.parametrize(("amount", "type_name"), [("1", "str"), (True, "bool"), (None, "NoneType")])
def test_increment_by_an_amount_that_is_not_a_number_names_the_key(amount: Any, type_name: str) -> None:
    state = StreamState()
    with pytest.raises(
        TypeError,
        match=re.escape(f"cannot increment state key 'n': the amount must be a number, got a {type_name}"),
    ):
        state.increment("n", amount)
    assert "n" not in state


def test_increment_with_numbers_that_do_not_mix_names_the_key() -> None:
    state = StreamState()
    state.set("n", Decimal(1))
    with pytest.raises(
        TypeError, match="cannot increment state key 'n': cannot add a float to a Decimal"
    ) as info:
        state.increment("n", 0.5)
    assert isinstance(info.value.__cause__, TypeError)
    assert state.get("n") == Decimal(1)


# -- append ------------------------------------------------------------------------------------------


def test_append_creates_the_list_then_appends() -> None:
    state = StreamState()
    state.append("events", "a")
    state.append("events", "b")
    assert state.get("events") == ["a", "b"]


def test_append_to_none_stored_explicitly_is_refused() -> None:
    state = StreamState()
    state.set("events", None)
    with pytest.raises(
        TypeError, match="cannot append to state key 'events': its value is a NoneType, not a list"
    ):
        state.append("events", 1)


def test_append_to_a_value_that_is_not_a_list_names_the_key() -> None:
    state = StreamState()
    state.set("events", (1, 2))
    with pytest.raises(
        TypeError, match=re.escape("cannot append to state key 'events': its value is a tuple, not a list")
    ):
        state.append("events", 3)
    assert state.get("events") == (1, 2)


# -- update, synchronous -------------------------------------------------------------------------


def test_update_applies_a_sync_function_at_once() -> None:
    state = StreamState()
    seen: list[Any] = []

    def add_one(value: int | None) -> int:
        seen.append(value)
        return (value or 0) + 1

    assert state.update("n", add_one) == 1
    assert state.update("n", add_one) == 2
    assert seen == [None, 1]
    assert state.get("n") == 2


def test_update_takes_a_registered_name() -> None:
    state = StreamState()
    state.set("n", 4)
    assert state.update("n", "state_test_double") == 8
    assert state.get("n") == 8


def test_update_with_an_unknown_name_or_a_non_callable_is_refused() -> None:
    state = StreamState()
    with pytest.raises(StreamError, match="no function registered as 'state_test_nope'"):
        state.update("n", "state_test_nope")
    with pytest.raises(TypeError, match="update function must be callable or a registered name, got 42"):
        state.update("n", 42)  # type: ignore[call-overload]
    assert "n" not in state


def test_a_failing_sync_update_stores_nothing() -> None:
    state = StreamState()
    state.set("n", 1)
    with pytest.raises(ZeroDivisionError):
        state.update("n", lambda value: value / 0)
    assert state.get("n") == 1


def test_a_sync_function_returning_a_coroutine_is_refused() -> None:
    state = StreamState()
    with pytest.raises(
        TypeError,
        match=re.escape(
            "the update function for state key 'n' returned a coroutine; define it with 'async def'"
        ),
    ):
        state.update("n", lambda value: add_ten(value))  # type: ignore[unused-coroutine]
    assert "n" not in state


# -- update, asynchronous ------------------------------------------------------------------------


async def test_async_update_awaits_the_function_and_stores_the_result() -> None:
    state = StreamState()
    pending = state.update("n", add_ten)
    assert "n" not in state  # nothing happens until it is awaited
    assert await pending == 10
    assert await state.update("n", add_ten) == 20
    assert state.get("n") == 20


async def test_async_update_takes_a_registered_name_and_partials() -> None:
    async def add(value: int | None, amount: int) -> int:
        return (value or 0) + amount

    state = StreamState()
    assert await state.update("n", "state_test_add_ten") == 10
    assert await state.update("n", functools.partial(add, amount=5)) == 15


async def test_concurrent_async_updates_of_one_key_never_interleave() -> None:
    state = StreamState()
    state.set("log", [])

    def appending(tag: str) -> Callable[[list[str]], Any]:
        async def fn(current: list[str]) -> list[str]:
            # A yield, not a wait: without the lock, the other task would read the same list.
            await asyncio.sleep(0)
            return [*current, tag]

        return fn

    async with asyncio.TaskGroup() as group:
        first = group.create_task(state.update("log", appending("a")))
        second = group.create_task(state.update("log", appending("b")))
    assert first.result() == ["a"]
    assert second.result() == ["a", "b"]
    assert state.get("log") == ["a", "b"]
    assert state._guards == {}  # the per-key locks are dropped once nobody uses them


async def test_async_updates_of_different_keys_run_concurrently() -> None:
    state = StreamState()
    order: list[str] = []

    def tracing(tag: str) -> Callable[[Any], Any]:
        async def fn(current: Any) -> str:
            order.append(f"{tag} start")
            await asyncio.sleep(0)  # a yield: the other key's update runs meanwhile; not a wait
            order.append(f"{tag} end")
            return tag

        return fn

    await asyncio.gather(state.update("x", tracing("x")), state.update("y", tracing("y")))
    assert order == ["x start", "y start", "x end", "y end"]
    assert state.snapshot() == {"x": "x", "y": "y"}


async def test_a_failing_async_update_stores_nothing_and_frees_the_key() -> None:
    async def fail(value: Any) -> Any:
        await asyncio.sleep(0)  # a yield, so the update fails after suspending; not a wait
        raise ValueError("no")

    state = StreamState()
    state.set("n", 1)
    with pytest.raises(ValueError, match="no"):
        await state.update("n", fail)
    assert state.get("n") == 1
    state.set("n", 2)
    assert state._guards == {}


@pytest.mark.parametrize(
    ("operation", "mutate"),
    [
        ("set", lambda state: state.set("n", 5)),
        ("increment", lambda state: state.increment("n")),
        ("append to", lambda state: state.append("n", 1)),
        ("update", lambda state: state.update("n", lambda value: value)),
        ("delete", lambda state: state.delete("n")),
    ],
)
async def test_a_sync_change_to_a_key_under_an_async_update_is_refused(
    operation: str, mutate: Callable[[StreamState], object]
) -> None:
    state = StreamState()
    state.set("n", [1])
    state.set("other", 0)
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(current: list[int]) -> list[int]:
        started.set()
        await release.wait()
        return [*current, 10]

    task = asyncio.create_task(state.update("n", slow))
    await started.wait()
    message = (
        f"cannot {operation} state key 'n' while an async update of it is running: the update would "
        "overwrite the change when it finishes; await the update first, or make the change with an "
        "async update function"
    )
    with pytest.raises(StreamError, match=re.escape(message)):
        mutate(state)
    assert state.get("n") == [1]  # reads are fine
    assert state.increment("other") == 1  # other keys are unaffected
    release.set()
    assert await task == [1, 10]
    state.delete("n")  # the key is free again
    mutate(state)


# -- snapshot and size ---------------------------------------------------------------------------


def test_snapshot_is_a_deep_copy_both_ways() -> None:
    state = StreamState()
    state.set("config", {"limits": [1, 2], "name": "x"})
    state.append("events", {"id": 1})
    snapshot = state.snapshot()
    assert snapshot == {"config": {"limits": [1, 2], "name": "x"}, "events": [{"id": 1}]}

    snapshot["config"]["limits"].append(3)
    snapshot["events"][0]["id"] = 99
    snapshot["new"] = True
    assert state.get("config") == {"limits": [1, 2], "name": "x"}
    assert state.get("events") == [{"id": 1}]
    assert "new" not in state

    state.append("events", {"id": 2})
    state.get("config")["limits"].append(4)
    assert snapshot == {"config": {"limits": [1, 2, 3], "name": "x"}, "events": [{"id": 99}], "new": True}


def test_size_bytes_of_an_empty_state_is_its_dict() -> None:
    assert StreamState().size_bytes() == sys.getsizeof({})


def test_size_bytes_counts_shared_and_cyclic_objects_once() -> None:
    shared = [1000, 2000]
    loop: list[Any] = []
    loop.append(loop)
    state = StreamState()
    mirror: dict[str, Any] = {}
    for key, value in (("a", shared), ("b", shared), ("loop", loop)):
        state.set(key, value)
        mirror[key] = value
    expected = sum(map(sys.getsizeof, [mirror, "a", "b", "loop", shared, 1000, 2000, loop]))
    assert state.size_bytes() == expected


def test_size_bytes_grows_with_a_big_value_and_shrinks_after_delete() -> None:
    state = StreamState()
    state.set("small", 1)
    before = state.size_bytes()
    big = {"rows": [str(i) * 10 for i in range(1000)]}
    state.set("big", big)
    with_big = state.size_bytes()
    assert with_big - before > sys.getsizeof(big["rows"]) + 1000 * sys.getsizeof("0" * 10)
    state.delete("big")
    assert state.size_bytes() == before


# -- a model check against a plain dict ----------------------------------------------------------

keys = st.sampled_from(["a", "b", "c"])
values = st.integers(-5, 5) | st.lists(st.integers(-5, 5), max_size=3) | st.text(max_size=2)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, values),
        st.tuples(st.just("increment"), keys, st.integers(-5, 5) | st.floats(-5, 5) | st.just("1")),
        st.tuples(st.just("append"), keys, st.integers(-5, 5)),
        st.tuples(st.just("delete"), keys, st.none()),
    ),
    max_size=40,
)


def apply_to_model(model: dict[str, Any], operation: str, key: str, argument: Any) -> Any:
    """What the operation does to a plain dict; ``TypeError`` where StreamState must refuse it."""
    if operation == "set":
        model[key] = copy.deepcopy(argument)
    elif operation == "increment":
        current = model.get(key, 0)
        if type(current) not in (int, float) or type(argument) not in (int, float):
            return TypeError
        model[key] = current + argument
        return model[key]
    elif operation == "append":
        if key not in model:
            model[key] = [argument]
        elif isinstance(model[key], list):
            model[key].append(argument)
        else:
            return TypeError
    else:
        model.pop(key, None)
    return None


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(operations)
def test_any_sequence_of_operations_matches_a_dict(ops: list[tuple[str, str, Any]]) -> None:
    state = StreamState()
    model: dict[str, Any] = {}
    for operation, key, argument in ops:
        expected = apply_to_model(model, operation, key, argument)
        method = getattr(state, operation)
        if expected is TypeError:
            with pytest.raises(TypeError, match=f"state key '{key}'"):
                method(key, argument)
        elif operation == "delete":
            state.delete(key)
        else:
            assert method(key, argument) == expected
    assert state.snapshot() == model
    assert state.keys() == list(model)
    assert len(state) == len(model)
