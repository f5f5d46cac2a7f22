"""A StreamState's checkpoint entries: one per key, plain apart from the user's values, stable
once taken, and restored into a fresh state exactly."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import StreamState
from sage_streams.errors import StreamError
from tests.operators.snapshot_support import check_plain

Change = Callable[[StreamState], Any]

keys = st.one_of(st.integers(0, 3), st.sampled_from(["a", "b"]), st.tuples(st.integers(0, 1), st.just("x")))


def change(kind: str, key: Any, value: int) -> Change:
    """One change of a state, returning what it returns or the error it raises."""

    def run(state: StreamState) -> Any:
        try:
            if kind == "set":
                state.set(key, [value] if value % 2 else value)
            elif kind == "increment":
                return state.increment(key, value)
            elif kind == "append":
                state.append(key, value)
            else:
                state.delete(key)
        except TypeError as exc:
            return str(exc)
        return copy.deepcopy(state.get(key))  # as it is now: a list may grow later

    return run


changes = st.builds(
    change, st.sampled_from(["set", "increment", "append", "delete"]), keys, st.integers(0, 9)
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(prefix=st.lists(changes, max_size=10), suffix=st.lists(changes, max_size=10))
def test_a_state_resumes_from_its_entries(prefix: list[Change], suffix: list[Change]) -> None:
    whole = StreamState("s")
    expected = [run(whole) for run in prefix + suffix]
    first = StreamState("s")
    observed = [run(first) for run in prefix]
    entries = first.snapshot_entries()
    kept = copy.deepcopy(entries)
    check_plain(entries)
    second = StreamState("s")
    second.restore_entries(copy.deepcopy(entries))
    observed += [run(second) for run in suffix]
    assert observed == expected
    assert second.snapshot() == whole.snapshot()
    assert list(second.keys()) == list(whole.keys())
    for run in suffix:
        run(first)
    assert entries == kept


def test_entries_are_one_per_key_and_an_append_after_them_leaves_them_be() -> None:
    state = StreamState("s")
    state.append("log", 1)
    state.set("n", 2)
    entries = state.snapshot_entries()
    state.append("log", 2)
    assert entries == {("key", "log"): [1], ("key", "n"): 2}


async def test_restoring_a_state_during_an_async_update_is_refused() -> None:
    state = StreamState("s")
    release = asyncio.Event()

    async def slow(value: Any) -> int:
        await release.wait()
        return 1

    update = asyncio.ensure_future(state.update("k", slow))
    await asyncio.sleep(0)
    with pytest.raises(StreamError, match="async update of it is running"):
        state.restore_entries({})
    release.set()
    assert await update == 1
