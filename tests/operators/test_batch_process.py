"""``joined.process(fn)`` takes each batch in slices of at most ``PROCESS_SLICE`` pairs.

The slices are the fast path (the lists a process function builds stay small); a slice size
larger than any batch is its plain twin, which calls ``fn`` once per batch as before. Both must
give the same outputs, and the same errors, failing item for failing item, slice for slice.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sage_streams import ConnectedStreams, LocalEnvironment, StreamState
from sage_streams._graph.policy import DeadLetter
from sage_streams.operators import process as operators

Pair = tuple[dict[str, Any], dict[str, Any]]


def joined_process(
    env: LocalEnvironment, n: int, fn: Any, decision: str | None = None
) -> tuple[list[Any], list[DeadLetter]]:
    """``n`` activities joined with their profiles, ``fn`` on the pairs, outputs and dead letters."""
    activities = env.from_collection([{"u": i % 7, "seq": i} for i in range(n)], name="activities")
    profiles = env.from_collection([{"u": u, "name": f"p{u}"} for u in range(7)], name="profiles")
    connected = ConnectedStreams([activities, profiles])
    if decision is not None:
        connected.on_error(lambda stream_id, error, context: decision)
    out: list[Any] = []
    letters: list[DeadLetter] = []
    connected.join("inner", key_func=lambda item: item["u"]).process(fn, name="enrich").sink(out.append)
    connected.errors().sink(letters.append)
    return out, letters


def enriched(pairs: list[Pair]) -> list[tuple[int, str]]:
    return [(activity["seq"], profile["name"]) for activity, profile in pairs]


async def test_process_gets_at_most_a_slice_and_its_output_goes_on_before_the_next_call() -> None:
    env = LocalEnvironment(batch_size=1024)
    sizes: list[int] = []
    seen_at_call: list[int] = []
    out: list[Any] = []

    def enrich(pairs: list[Pair], state: StreamState) -> list[tuple[int, str]]:
        sizes.append(len(pairs))
        seen_at_call.append(len(out))
        return enriched(pairs)

    activities = env.from_collection([{"u": i % 7, "seq": i} for i in range(3000)], name="activities")
    profiles = env.from_collection([{"u": u, "name": f"p{u}"} for u in range(7)], name="profiles")
    joined = ConnectedStreams([activities, profiles]).join("inner", key_func=lambda item: item["u"])
    joined.process(enrich).sink(out.append)
    await env.execute()
    assert sorted(out) == [(i, f"p{i % 7}") for i in range(3000)]
    assert sum(sizes) == 3000
    assert max(sizes) == operators.PROCESS_SLICE == 256
    # Each call's results reached the sink before the next call: nothing waits for the batch.
    assert seen_at_call == [sum(sizes[:k]) for k in range(len(sizes))]


async def test_a_failing_slice_is_the_failed_item_and_the_rest_of_the_batch_goes_on() -> None:
    env = LocalEnvironment(batch_size=1024)

    def enrich(pairs: list[Pair], state: StreamState) -> list[tuple[int, str]]:
        if any(activity["seq"] == 300 for activity, _ in pairs):
            raise ValueError("bad pair 300")
        return enriched(pairs)

    out, letters = joined_process(env, 1000, enrich, "continue")
    await env.execute()
    (letter,) = letters
    assert letter.operator == "enrich"
    assert isinstance(letter.error, ValueError)
    failed = [activity["seq"] for activity, _ in letter.item]
    assert 300 in failed
    assert len(failed) <= operators.PROCESS_SLICE
    assert sorted(out) == [(i, f"p{i % 7}") for i in range(1000) if i not in failed]


def _run(n: int, batch_size: int, slice_size: int, bad: set[int], transient: bool, decision: str) -> Any:
    """Outputs, failed calls' sequence numbers, and every call's input, for one configuration."""
    import asyncio

    calls: list[list[int]] = []
    failed_once: set[int] = set()

    def enrich(pairs: list[Pair], state: StreamState) -> list[tuple[int, str]]:
        seqs = [activity["seq"] for activity, _ in pairs]
        calls.append(seqs)
        hit = sorted(set(seqs) & bad - (failed_once if transient else set()))
        if hit:
            failed_once.update(hit)
            pairs.clear()  # a function that changes its list before failing: the item is unchanged
            raise ValueError(f"bad {hit[0]}")
        return enriched(pairs)

    async def main() -> tuple[list[Any], list[DeadLetter]]:
        env = LocalEnvironment(batch_size=batch_size)
        out, letters = joined_process(env, n, enrich, decision)
        await env.execute()
        return out, letters

    original = operators.PROCESS_SLICE
    operators.PROCESS_SLICE = slice_size
    try:
        out, letters = asyncio.run(main())
    finally:
        operators.PROCESS_SLICE = original
    dead = [[activity["seq"] for activity, _ in letter.item] for letter in letters]
    return out, letters, dead, calls


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 700),
    batch_size=st.integers(1, 600),
    slice_size=st.sampled_from([1, 2, 7, 64, 256]),
    bad=st.sets(st.integers(0, 699), max_size=4),
    decision=st.sampled_from(["continue", "retry"]),
)
def test_slices_agree_with_whole_batches(
    n: int, batch_size: int, slice_size: int, bad: set[int], decision: str
) -> None:
    transient = decision == "retry"  # a pair that always fails would stop the graph after 3 retries
    out, letters, dead, calls = _run(n, batch_size, slice_size, bad, transient, decision)
    plain_out, _, plain_dead, plain_calls = _run(n, batch_size, 10**9, bad, transient, decision)
    everything = [(i, f"p{i % 7}") for i in range(n)]
    # Every call gets a slice of at most slice_size pairs; together the calls see every pair
    # (a retried slice again), each slice in the order the join emitted it.
    assert all(0 < len(seqs) <= slice_size for seqs in calls)
    assert sorted({s for seqs in calls for s in seqs}) == list(range(n))
    assert all(len(letter.item) <= slice_size and letter.operator == "enrich" for letter in letters)
    assert all(isinstance(letter.error, ValueError) for letter in letters)
    for result, failed in ((out, dead), (plain_out, plain_dead)):
        # A failed call's pairs are its dead letter, unchanged, and nothing else is lost.
        lost = {s for seqs in failed for s in seqs}
        assert sorted(result) == [pair for pair in everything if pair[0] not in lost]
        assert all(set(seqs) & bad for seqs in failed)
    if transient and decision == "retry":  # each bad pair fails once: a retry recovers all
        assert dead == plain_dead == []
        assert sorted(out) == sorted(plain_out) == everything
    if not bad:
        assert out == plain_out  # the same pairs in the same order
        assert sorted(out) == everything
        assert dead == plain_dead == []
    if slice_size >= max(map(len, plain_calls), default=0):
        assert (out, dead, calls) == (plain_out, plain_dead, plain_calls)


@pytest.mark.parametrize("decision", ["continue", "retry"])
def test_a_retried_slice_is_called_again_on_the_same_pairs(decision: str) -> None:
    out, _, dead, calls = _run(600, 600, 256, {5, 300}, transient=True, decision=decision)
    failing = [seqs for seqs in calls if {5, 300} & set(seqs)]
    if decision == "retry":
        assert dead == []
        first, again = [seqs for seqs in failing if 5 in seqs]
        assert first == again
        assert len(first) == 256
        assert sorted(out) == [(i, f"p{i % 7}") for i in range(600)]
    else:
        assert sorted(map(sorted, dead)) == sorted(map(sorted, failing))
        assert len(dead) == 2
