"""The plain twins hold the generated loops to account: random chains, probes and run loops
give the same outputs, counters, errors and failure records both ways.

The user functions fail at some items (and on items of the wrong type, after a lookup's pairs),
deterministically, so both ways must fail alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams._codegen import Lookup, Step, StepChain, compile_chain, compile_probe, run_loop
from sage_streams._codegen.lookups import Bucket
from sage_streams._codegen.plain import PlainChain

pytestmark = pytest.mark.slow

TABLE = {k: f"p{k}" for k in range(0, 40, 3)}


@dataclass(frozen=True)
class Spec:
    """A step: its kind, a parameter, and the items it raises on (``x % m == r``; ``m`` 0: never)."""

    kind: str
    a: int
    m: int
    r: int
    is_async: bool


def _function(spec: Spec) -> Callable[[Any], Any]:
    """The user function of ``spec``: small lambdas, so that inlining pastes them."""
    a, m, r = spec.a, spec.m, spec.r
    if spec.kind == "map":
        plain = lambda x: (  # noqa: E731
            (x[0] if type(x) is tuple else x) * a % 41
            + 0 // (not m or x % m != r if type(x) is not tuple else 1)
        )
    elif spec.kind == "filter":
        plain = lambda x: (x if type(x) is not tuple else x[0]) % (a + 2) != 1 or 0 // (not m or x % m != r)  # noqa: E731
    elif spec.kind == "flat_map":
        plain = lambda x: [x, x + a][: x % 3] + [] * (0 // (not m or x % m != r))  # noqa: E731
    elif spec.kind == "generator":

        def plain(x: Any) -> Iterator[Any]:
            yield x
            if m and x % m == r:
                raise KeyError(x)  # after its first output
            if x % 2:
                yield x + a

    elif spec.kind == "key_by":
        plain = lambda x: [] if m and (x if type(x) is not tuple else x[0]) % m == r else x  # noqa: E731
    elif spec.kind == "lookup":
        plain = lambda x: None if m and x % m == r else x  # noqa: E731 - a None key fails
    else:  # sink
        seen: list[Any] = []
        plain = lambda x: seen.append(x) or 0 // (not m or x % m != r if type(x) is not tuple else 1)  # noqa: E731
    if not spec.is_async or spec.kind == "lookup":
        return plain
    if spec.kind == "generator":

        async def generated(x: Any) -> Any:
            for y in plain(x):
                yield y

        return generated

    async def called(x: Any) -> Any:
        return plain(x)

    return called


specs = st.builds(
    Spec,
    st.sampled_from(["map", "filter", "flat_map", "generator", "key_by", "lookup"]),
    st.integers(1, 7),
    st.sampled_from([0, 0, 0, 5, 7, 11]),
    st.integers(0, 4),
    st.booleans(),
)


def _steps(chain: list[Spec], sink: Spec | None) -> list[Step]:
    steps = []
    for i, spec in enumerate(chain):
        kind = "flat_map" if spec.kind == "generator" else spec.kind
        lookup = Lookup(TABLE, spec.a % 2 == 0) if kind == "lookup" else None
        steps.append(Step(kind, _function(spec), f"s{i}", lookup))  # type: ignore[arg-type]
    if sink is not None:
        steps.append(Step("sink", _function(Spec("sink", 0, sink.m, sink.r, sink.is_async)), "sink"))
    return steps


def _outcome(chain: StepChain, items: list[int]) -> tuple[Any, ...]:
    """What a run of ``chain`` over ``items`` shows: its result, or its error and failure."""
    iterator = iter(items)
    try:
        result = chain(iterator)
        if chain.is_async:
            result = asyncio.run(result)
    except Exception as exc:
        failure = chain.explain(exc, len(items), iterator)
        pending = [(i, list(rest)) for i, rest in failure.pending]
        return ("error", type(exc), str(exc), failure.step, failure.item, failure.consumed,
                failure.outputs, failure.entries, pending)  # fmt: skip
    return ("done", result)


@settings(max_examples=300, deadline=None)
@given(
    chain=st.lists(specs, min_size=0, max_size=8),
    sink=st.none() | specs,
    points=st.sets(st.integers(0, 9)),
    resumable=st.booleans(),
    items=st.lists(st.integers(0, 40), max_size=25),
    inline=st.sampled_from([False, True, "all"]),
)
def test_a_generated_chain_does_what_its_plain_twin_does(
    chain: list[Spec], sink: Spec | None, points: set[int], resumable: bool, items: list[int], inline: Any
) -> None:
    steps = _steps(chain, sink)
    emitted = [k for k in points if k <= len(steps) and not (sink is not None and k == len(steps))]
    plain = compile_chain(steps, emitted, resumable=resumable, inline=False, codegen=False)
    generated = compile_chain(steps, emitted, resumable=resumable, inline=inline, codegen=True)
    assert isinstance(plain, PlainChain)
    assert _outcome(generated, items) == _outcome(plain, items)


def _key(x: Any) -> Any:
    if x % 13 == 12:
        raise ValueError(x)
    return None if x % 17 == 16 else x % 5


@settings(max_examples=200, deadline=None)
@given(
    theirs=st.dictionaries(st.integers(0, 4), st.lists(st.integers(), min_size=1, max_size=3)),
    items=st.lists(st.integers(0, 40), max_size=20),
    side=st.sampled_from([0, 1]),
    buffering=st.booleans(),
    inline=st.booleans(),
)
def test_a_generated_probe_does_what_its_plain_twin_does(
    theirs: dict[int, list[int]], items: list[int], side: int, buffering: bool, inline: bool
) -> None:
    def buckets() -> dict[Any, Any]:
        return {k: v[0] if len(v) == 1 else Bucket(v) for k, v in theirs.items()}

    results = []
    for codegen in (True, False):
        mine: dict[Any, Any] | None = {} if buffering else None
        out: list[Any] = []
        iterator = iter(items)
        probe = compile_probe(side, _key, buckets(), buffering=buffering, inline=inline, codegen=codegen)
        hits, item, error, cause = probe(iterator, out, mine)
        shown = (
            None
            if mine is None
            else {k: (type(v), list(v) if type(v) is Bucket else v) for k, v in mine.items()}
        )
        results.append((hits, item, repr(error), repr(cause), out, shown, list(iterator)))
    assert results[0] == results[1]


def _number_of(stamp: float, size: float) -> int:
    return int(stamp // size)


@settings(max_examples=200, deadline=None)
@given(
    triples=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 60), st.integers(0, 3)), max_size=20),
    folding=st.booleans(),
    inline=st.booleans(),
)
def test_a_generated_run_loop_does_what_its_plain_twin_does(
    triples: list[tuple[int, int, int]], folding: bool, inline: bool
) -> None:
    def add(total: int, item: int) -> int:
        if item == 29:
            raise ArithmeticError(item)
        return total + item

    results = []
    for codegen in (True, False):
        loop = run_loop(add if folding else None, inline=inline, codegen=codegen)
        due: dict[int, dict[Any, Any]] = {}
        iterator = iter([(item, float(stamp), key) for item, stamp, key in triples])
        state: tuple[Any, ...] | None = (-1, 0.0, 0.0, {})
        seen = []
        try:
            while state is not None:
                number, start, end, cells = state[-4:]
                state = loop.function(
                    iterator, 0, 10.0, lambda t, s: int(t // s), due, number, start, end, cells
                )
                if state is not None:  # a miss: make the cell, go on from the next item
                    item, key, number, start, end, cells = state
                    cells[key] = [item]  # the items, or input 0's accumulator
                    seen.append((item, key, number))
                    state = (number, start, end, cells)
        except ArithmeticError as exc:
            seen.append(("error", repr(exc)))
        results.append((seen, due, list(iterator)))
    assert results[0] == results[1]
