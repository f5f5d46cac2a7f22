"""Inlining against plain Python: generated user functions, run under every ``inline`` setting.

Each case writes a module of seeded-random user functions (closures whose variables are named
like the generated code's locals, globals of those names, shadowed built-ins, constants that
compare equal such as ``1``, ``1.0`` and ``True`` in several lambdas of one line, decorated and
multi-statement ``def``s, expressions that fail at some items) and runs them through fused
chains (with and without an error handler), a join's keys, a window's keys and ``aggregate``'s
``add``, with ``inline=True``, ``"all"`` and ``False``. Each result must be what calling the same
function objects item by item in plain Python gives; results are compared by ``repr``, so
``2`` and ``2.0`` differ.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sage_streams import LocalEnvironment, PipelineError
from sage_streams._codegen.inline import tracing
from sage_streams._codegen.window_loops import each, key_reader
from sage_streams.operators.joins.config import join_config
from sage_streams.operators.joins.state import JoinItemError
from tests.support import load_module

pytestmark = pytest.mark.skipif(tracing(), reason="nothing is inlined under a tracer (coverage, pdb)")

SETTINGS: list[Any] = [True, "all", False]

CLASHING = [
    *("v", "v0", "v1", "v2", "v3", "o0", "o1", "a0", "a1", "s0", "s1", "t0", "it", "out", "k0", "k1"),
    *("e0", "e1", "g0", "g1", "p0", "y0", "x0", "c0", "c1", "r", "u0_y", "u1_y", "key", "hits"),
    *("emit", "get", "mine", "item", "exc", "acc", "cell", "cells", "number", "append", "keys"),
    *("type", "len", "hash", "iter", "list", "Exception", "KeyError", "_hash", "_len", "_type"),
]
"""Names the generated loops use (or used) for their own variables, and built-ins they call."""

EQUAL_CONSTANTS = [("1", "1.0", "True"), ("0", "0.0", "False", "-0.0"), ("2", "2.0")]


class _Writer:
    """Builds the source of one module of random user functions, and what each one is."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lines: list[str] = ["def ident(f):", "    return f", ""]
        self.globals: list[str] = []
        self.count = 0
        for name in self.rng.sample(CLASHING, 6):
            self.lines.append(f"{name} = {self.rng.randint(-3, 5)}")
            self.globals.append(name)
        self.lines.append("")

    def _name(self) -> str:
        self.count += 1
        return f"f{self.count}"

    def expression(self, names: list[str], depth: int = 0, *, fails: bool = True) -> str:
        """An int (or float, or bool) expression of ``x`` and ``names``."""
        rng = self.rng
        choice = rng.random()
        if depth >= 2 or choice < 0.3:
            atoms = ["x", "x", str(rng.randint(-2, 4)), *names]
            return rng.choice(atoms)
        if fails and choice < 0.4:
            return f"(7 // (x - {rng.randint(-3, 6)}))"  # ZeroDivisionError at one value
        if choice < 0.5:
            return f"abs({self.expression(names, depth + 1, fails=fails)})"
        op = rng.choice(["+", "-", "*", "+"])
        left = self.expression(names, depth + 1, fails=fails)
        return f"({left} {op} {self.expression(names, depth + 1, fails=fails)})"

    def function(self, shape: str, *, fails: bool = True, arity: int = 1) -> str:
        """Define a function of one argument (``x``; with ``arity`` 2, ``acc, x``) returning a
        value built by ``shape``, and return its name."""
        rng = self.rng
        name = self._name()
        params = "x" if arity == 1 else "acc, x"
        closed = rng.sample(CLASHING, rng.randint(0, 3))
        if rng.random() < 0.3 and "v" not in closed:
            closed.append("v")  # the name the generated code once read the failing item by
        names = closed + self.globals
        body = self.expression(names, fails=fails)
        if closed:  # every closed name is read: a free variable of the function
            body = f"({body} + {' + '.join(closed)})"
        value = {
            "int": body,
            "bool": f"{body} % 3 != 0",
            "list": rng.choice([f"[x, {body}]", f"(x,) * (abs({body}) % 3)", "[]"]),
            "key": rng.choice([f"{body} % 5", f"str({body} % 3)", f"str(({body}) * {self._constant()})"]),
            "add": f"acc + {body}",
            "store": f"store.append({body})",
        }[shape]
        form = rng.choice(["lambda", "def", "statements", "decorated", "line"])
        if form == "line" and shape in ("int", "add"):
            # several lambdas on one line, their constants equal but of different types
            family = rng.choice(EQUAL_CONSTANTS)
            targets = [f"_{name}_{i}" for i in range(len(family))]
            targets[rng.randrange(len(family))] = name  # any of them may be the one used
            texts = [f"(lambda {params}: {value} * {c})" for c in family]
            self._closure(name, closed, f"{', '.join(targets)} = {', '.join(texts)}")
            return name
        if form == "statements":
            statements = [
                f"y = {value}",
                f"if {self.expression(names, fails=False)} > 1:",
                f"    y = {value}",
                "return y",
            ]
            definition = [f"def {name}({params}):", *(f"    {line}" for line in statements)]
        elif form in ("def", "decorated"):
            definition = [*(["@ident"] if form == "decorated" else []), f"def {name}({params}):"]
            definition.append(f"    return {value}")
        else:
            definition = [f"{name} = lambda {params}: {value}"]
        self._closure(name, closed, *definition)
        return name

    def _constant(self) -> str:
        return self.rng.choice(self.rng.choice(EQUAL_CONSTANTS))

    def _closure(self, name: str, closed: list[str], *definition: str) -> None:
        """``definition`` at module level, or, with ``closed`` names, inside ``make_<name>``,
        which gives them values and returns it (a ``store`` is always a closure's)."""
        stores = "store" in " ".join(definition)
        cells = [*closed, *(["store"] if stores else [])]
        if not cells:
            self.lines += [*definition, ""]
            return
        self.lines.append(f"def make_{name}({', '.join(cells)}):")
        self.lines += [f"    {line}" for line in definition]
        self.lines += [f"    return {name}", ""]
        if not stores:
            values = ", ".join(str(self.rng.randint(-3, 5)) for _ in closed)
            self.lines += [f"{name} = make_{name}({values})", ""]
        else:
            values = "".join(f"{self.rng.randint(-3, 5)}, " for _ in closed)
            self.lines += [f"def make_sink_{name}(store):", f"    return make_{name}({values}store)", ""]

    def generator(self) -> str:
        """A generator flat_map (always called) that may raise while it is iterated."""
        name = self._name()
        self.lines += [f"def {name}(x):", "    yield x", f"    yield {self.expression(self.globals)}", ""]
        return name


def _load(tmp_path: Path, seed: int, source: str) -> ModuleType:
    return load_module(tmp_path / f"generated_udfs_{seed}.py", source, register=True)


# -- chains ---------------------------------------------------------------------------------------

KINDS = {"map": "int", "filter": "bool", "flat_map": "list", "key_by": "key"}


def _chain(writer: _Writer) -> tuple[list[tuple[str, str]], str]:
    """Random steps ``(kind, function name)`` and the name of the sink's factory."""
    steps = []
    for _ in range(writer.rng.randint(1, 5)):
        kind = writer.rng.choice(sorted(KINDS))
        if kind == "flat_map" and writer.rng.random() < 0.2:
            steps.append((kind, writer.generator()))
        else:
            steps.append((kind, writer.function(KINDS[kind])))
    sink = writer.function("store")
    return steps, f"make_sink_{sink}"


class _Stop(Exception):
    pass


def _reference(items: list[int], steps: list[tuple[str, Any]], handled: bool) -> tuple[Any, ...]:
    """Plain Python, item by item: the sink's store and the tap's items, and the skipped items
    (handled) or the first failure."""
    seen: list[Any] = []
    tapped: list[Any] = []

    def push(value: Any, i: int) -> None:
        kind, fn = steps[i]
        try:
            if kind == "map":
                results = [fn(value)]
            elif kind == "filter":
                results = [value] if fn(value) else []
            elif kind == "key_by":
                hash(fn(value))
                results = [value]
            elif kind == "flat_map":
                results = list(fn(value))
            else:
                fn(value)
                results = []
        except Exception as error:
            if not handled:
                raise _Stop(f"op{i}", repr(value), type(error).__name__) from error
            seen.append((f"op{i}", repr(value), type(error).__name__))
            return
        for result in results:
            if i == 0 and len(steps) > 2:  # as _run taps
                tapped.append(result)
            push(result, i + 1)

    try:
        for item in items:
            push(item, 0)
    except _Stop as stop:
        return stop.args
    return seen, tapped


async def _run(items: list[int], steps: list[tuple[str, Any]], handled: bool, inline: Any, batch: int) -> Any:
    env = LocalEnvironment(inline=inline, batch_size=batch)
    stream = env.from_collection(items)
    seen: list[Any] = []

    def skip(stream_id: str, error: BaseException, context: Any) -> str:
        seen.append((context.operator, repr(context.item), type(error).__name__))
        return "continue"

    if handled:
        stream = stream.on_error(skip)
    tapped: list[Any] = []
    for i, (kind, fn) in enumerate(steps):
        stream = getattr(stream, kind)(fn, name=f"op{i}")
        if i == 0 and len(steps) > 2:
            stream.sink(tapped.append)  # a second output point: a loop, not a comprehension
    try:
        await env.execute()
    except PipelineError as error:
        return error.operator, repr(error.item), type(error.__cause__).__name__
    return seen, tapped


@pytest.mark.parametrize("seed", range(20))
def test_chains_give_what_plain_python_gives(tmp_path: Path, seed: int) -> None:
    writer = _Writer(seed)
    cases = [_chain(writer) for _ in range(3)]
    module = _load(tmp_path, seed, "\n".join(writer.lines))
    rng = random.Random(seed)
    for names, sink in cases:
        items = [rng.randint(-4, 8) for _ in range(rng.randint(0, 14))]
        batch = rng.randint(1, 5)
        steps = [(kind, getattr(module, name)) for kind, name in names]
        for handled in (False, True):
            store: list[Any] = []
            expected = _reference(items, [*steps, ("sink", getattr(module, sink)(store))], handled)
            expected_store = repr(store)
            every = _reference(items, [*steps, ("sink", getattr(module, sink)([]))], True)[0]
            results = []
            for inline in SETTINGS:
                store = []
                got = asyncio.run(
                    _run(items, [*steps, ("sink", getattr(module, sink)(store))], handled, inline, batch)
                )
                results.append(got)
                if len(got) == 3 and len(steps) > 1:
                    # The tap splits the chain in two tasks: which failure comes first depends
                    # on how batches interleave, the same under every setting.
                    assert got in every, (inline, items, names)
                    continue
                if len(steps) > 1 and len(got) == 2:  # two tasks: errors in either's order
                    got = (sorted(got[0]), got[1])
                    assert got == (sorted(expected[0]), expected[1]), (inline, handled, items, names)
                else:
                    assert got == expected, (inline, handled, items, names)
                if len(expected) == 2:  # ran to the end: the sink saw the same
                    assert repr(store) == expected_store, (inline, handled, items, names)
            assert results.count(results[-1]) == len(SETTINGS), (items, names)


# -- join keys, window keys, aggregate adds ---------------------------------------------------------


def _join(items: tuple[list[int], list[int]], keys: tuple[Any, Any], inline: bool, ended: bool) -> Any:
    """Right items, then left items, through a keyed inner join; skipping failing items."""
    join = join_config("inner", key_func=keys).build(inline=inline)
    pairs: list[Any] = []
    failed: list[Any] = []
    for side in (1, 0):
        rest = items[side]
        while True:
            try:
                pairs += join.push(side, rest)
                break
            except JoinItemError as error:
                pairs += error.pairs
                failed.append((side, repr(error.item), type(error.error).__name__))
                rest = rest[error.index + 1 :]
        if side == 1 and ended:
            join.end(1)  # the probe then looks items up in a finished table
    return repr(pairs), failed


def _join_reference(items: tuple[list[int], list[int]], keys: tuple[Any, Any]) -> Any:
    table: dict[Any, list[int]] = {}
    pairs: list[Any] = []
    failed: list[Any] = []
    for side in (1, 0):
        for item in items[side]:
            try:
                key = keys[side](item)
                hash(key)
            except Exception as error:
                failed.append((side, repr(item), type(error).__name__))
                continue
            if side == 1:
                table.setdefault(key, []).append(item)
            else:
                pairs += [(item, partner) for partner in table.get(key, [])]
    return repr(pairs), failed


async def _aggregate(items: list[int], key: Any, add: Any, inline: Any) -> list[Any]:
    env = LocalEnvironment(inline=inline, batch_size=4)
    events = sorted(items, key=lambda x: abs(x) % 40)  # in time order: nothing is late
    windowed = env.from_collection(events).window(
        "tumbling", size=10, timestamp=lambda x: abs(x) % 40, key_func=key
    )
    rows = await windowed.aggregate(add, initial=0).collect()
    return sorted((row.start_time, repr(row.key), repr(row.value)) for row in rows)


def _aggregate_reference(items: list[int], key: Any, add: Any) -> list[Any]:
    folded: dict[tuple[float, Any], Any] = {}
    for x in sorted(items, key=lambda x: abs(x) % 40):
        window = (abs(x) % 40 // 10 * 10.0, key(x))
        folded[window] = add(folded.get(window, 0), x)
    return sorted((start, repr(k), repr(value)) for (start, k), value in folded.items())


@pytest.mark.parametrize("seed", range(25))
def test_join_keys_window_keys_and_adds_give_what_plain_python_gives(tmp_path: Path, seed: int) -> None:
    writer = _Writer(1000 + seed)
    join_keys = [(writer.function("key"), writer.function("key")) for _ in range(2)]
    window_keys = [writer.function("key") for _ in range(3)]
    safe_keys = [writer.function("key", fails=False) for _ in range(2)]
    adds = [writer.function("add", fails=False, arity=2) for _ in range(2)]
    module = _load(tmp_path, 1000 + seed, "\n".join(writer.lines))
    rng = random.Random(seed)
    for left, right in join_keys:
        keys = (getattr(module, left), getattr(module, right))
        items = ([rng.randint(-4, 8) for _ in range(8)], [rng.randint(-4, 8) for _ in range(6)])
        expected = _join_reference(items, keys)
        for inline in (True, False):
            for ended in (False, True):
                assert _join(items, keys, inline, ended) == expected, (inline, ended, left, right)
    items = [rng.randint(-4, 45) for _ in range(20)]
    for name in window_keys:
        function = getattr(module, name)
        keys, error = each(function, items)
        for inline in (True, False):
            got, got_error = key_reader(function, inline=inline)(items)
            assert (repr(got), type(got_error)) == (repr(keys), type(error)), (inline, name)
    for key_name, add_name in zip(safe_keys, adds, strict=True):
        key, add = getattr(module, key_name), getattr(module, add_name)
        expected_rows = _aggregate_reference(items, key, add)
        for inline in SETTINGS:
            assert asyncio.run(_aggregate(items, key, add, inline)) == expected_rows, (inline, key_name)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20, 100))
def test_more_chains_give_what_plain_python_gives(tmp_path: Path, seed: int) -> None:
    test_chains_give_what_plain_python_gives(tmp_path, seed)
