"""Operator fusion: a chain of stateless steps compiled into one Python loop.

Flink chains ``map -> filter -> sink`` into one task so that a chain costs one loop, not one
queue per operator. We go one step further and generate the loop's source, as ``dataclasses``
does for ``__init__``: measured on CPython 3.11, one generated ``for`` loop that calls the user
functions directly beats ``map()``/``filter()`` over a batch (C code cannot inline the calls into
the interpreter loop) and beats a chain of generators (no frame switch per item per step).

For ``map f`` then ``filter p``, the generated code reads::

    def fused(it, *, _hash=hash, s0=f, s1=p):
        out = [v
            for v in it
            for v in [s0(v)]
            if s1(v)
        ]
        return (out,), (0,)

An *emission point* ``k`` is the output of step ``k - 1`` collected into a list that the runtime
hands on downstream (fan-out, taps, collectors). Counters make per-operator metrics exact with no
per-item cost for maps: a filter counts its rejects, a flat_map its outputs, and the last such
step of a comprehension is derived from the output's length.

With ``inline=True`` a step whose function qualifies (:mod:`sage_streams._inline`) is not
called: its code is pasted in, which halves the cost of a cheap step. A comprehension takes only
one-expression functions (``lambda x: x * 2``); a loop also takes straight-line bodies, such as
a sink that tallies into a closure's list. The function then runs with that function's module
globals and cells; the built-ins the loop itself needs come in as defaults, and a function that
reads a global named like one of the loop's locals is called instead. Step ``i``'s locals are
named ``u{i}_...``.

A *lookup* step is a keyed inner join whose other side has ended and holds one item per key (a
dimension table): the join has nothing left to buffer, so it is a stateless step, and the
runtime hands it to the chain after the join (``_runtime.chain``). Fused, a profile lookup and
the enrichment after it are one loop, and the pair need not exist: an inlined next step that
unpacks it (``event, profile = pair``) is given ``(v0, p0)`` to unpack, which CPython compiles
without building the tuple.

When a step raises, :meth:`FusedChain.explain` reads the failing step and its input item off the
traceback (the line number and the frame's ``v``), so the fast path pays nothing for error reports.

A *resumable* chain (one under an error handler) is compiled so that a failure can be survived
without losing or repeating work: it is always a loop, it counts the items entering each step
(``e{i}``), and a flat_map's results are listed before they are iterated (``g{i}``), so that
``explain`` can hand back the partial outputs, the counts, and the flat_map results not yet
processed. The runtime then goes on from the failing step (see ``_runtime.ChainTask``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType, TracebackType
from typing import Any, Literal, TypeAlias

from sage_streams._inline import Inlinable, define, inlinable
from sage_streams._join_probe import MISSING, lookup_error, none_key

__all__ = ["FusedChain", "Lookup", "Step", "StepKind", "is_async_callable"]

StepKind: TypeAlias = Literal["map", "filter", "flat_map", "key_by", "sink", "lookup"]

_COUNTED = frozenset({"filter", "flat_map", "lookup"})
"""Steps whose output count differs from their input count, so they keep a counter."""


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns an awaitable (``async def``, partials, async ``__call__``)."""
    while hasattr(fn, "func"):  # functools.partial, possibly nested
        fn = fn.func
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - instances with an async __call__
    return not inspect.isfunction(fn) and call is not None and inspect.iscoroutinefunction(call)


def _is_async_generator_function(fn: Callable[..., Any]) -> bool:
    while hasattr(fn, "func"):
        fn = fn.func
    return inspect.isasyncgenfunction(fn)


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a ``lookup`` step pairs its items with: ``table`` holds one partner per key and no
    longer changes (a join whose other input has ended, each key buffered once). The pair is
    ``(item, partner)`` when ``item_first``, else ``(partner, item)``."""

    table: Mapping[Hashable, Any]
    item_first: bool


@dataclass(frozen=True, slots=True)
class Step:
    """One stateless operator of a chain: what it does and to whom errors are attributed.

    A ``lookup`` step is a keyed inner join against a finished table: ``fn`` is the key
    function (always called synchronously, as the join calls it), ``lookup`` the table. An
    item whose key has a partner goes on as the pair; one without is dropped, as a filter
    drops it; a key that is ``None`` or unhashable is the item's error.
    """

    kind: StepKind
    fn: Callable[..., Any]
    operator: str
    lookup: Lookup | None = None

    @property
    def is_async(self) -> bool:
        return self.kind != "lookup" and is_async_callable(self.fn)


def _inlinable_steps(steps: Sequence[Step], *, statements: bool) -> dict[int, Inlinable]:
    """The steps whose functions can be inlined (with ``statements``, also those of more than
    one expression): all from one module, whose globals the fused function then runs with (the
    first inlinable step's)."""
    found: dict[int, Inlinable] = {}
    for i, step in enumerate(steps):
        candidate = inlinable(step.fn, statements=statements)
        if candidate is not None and (
            not found or candidate.function.__globals__ is next(iter(found.values())).function.__globals__
        ):
            found[i] = candidate
    return found


@dataclass(frozen=True, slots=True)
class Failure:
    """Where a fused chain failed: the step (or -1 for none) and the item it was given.

    For a resumable chain also what it had done: the partial ``outputs`` (one list per point),
    the ``entries`` per step, and ``pending``: per enclosing flat_map step, from the innermost
    out, the iterator over its results not yet processed.
    """

    step: int
    item: Any
    consumed: int
    outputs: tuple[list[Any], ...] = ()
    entries: tuple[int, ...] = ()
    pending: tuple[tuple[int, Iterator[Any]], ...] = ()


class FusedChain:
    """``steps`` compiled into one function from an input iterator to per-point output lists.

    Point ``0`` is the chain's input, point ``len(steps)`` its output; a sink step emits nothing.
    Calling the chain returns ``(outputs, counters)``: one list per point in :attr:`points`, and
    the counters :meth:`counts` turns into per-step metrics (a coroutine when a step is async).

    A chain whose only output is its last point compiles to one list comprehension, the fastest
    shape CPython has; it is all-or-nothing per batch. Other chains compile to a ``for`` loop
    whose partial outputs survive an error in the frame's locals.
    """

    def __init__(
        self, steps: Sequence[Step], points: Sequence[int], *, resumable: bool = False, inline: bool = False
    ) -> None:
        self.steps = tuple(steps)
        self.resumable = resumable
        self.points = tuple(sorted(set(points)))
        n = len(self.steps)
        if any(not 0 <= k <= n for k in self.points):
            raise ValueError(f"emission points {self.points} outside 0..{n}")
        self.is_async = any(step.is_async for step in self.steps)
        self.counted = tuple(i for i, step in enumerate(self.steps) if step.kind in _COUNTED)
        ends_in_sink = bool(self.steps) and self.steps[-1].kind == "sink"
        looks_up = any(step.kind == "lookup" for step in self.steps)
        self.is_comprehension = self.points in ((), (n,)) and not (ends_in_sink or resumable or looks_up)
        if self.is_comprehension:
            self.points = (n,)  # computed even when nobody reads it: the counters need it
        # In a comprehension the last counted step is derived from the output's length.
        self.derived = self.counted[-1] if self.is_comprehension and self.counted else None
        self._line_steps: dict[int, int] = {}
        self._elided: dict[int, str] = {}
        """The steps given their input as an expression (a lookup's pair), never as ``v{i}``."""
        self.inlined: dict[int, Inlinable] = {}
        label = "fused " + (" -> ".join(step.operator for step in self.steps) or "source")
        namespace: dict[str, Any] = {f"s{i}": step.fn for i, step in enumerate(self.steps)}
        namespace.update(
            {f"t{i}": step.lookup.table.get for i, step in enumerate(self.steps) if step.lookup is not None}
        )
        namespace.update(_MISSING=MISSING, _none_key=none_key, _lookup_error=lookup_error)
        candidates = _inlinable_steps(self.steps, statements=not self.is_comprehension) if inline else {}
        self.function, self.inlined = define(self._source, "fused", label, namespace, candidates)
        # The comprehension is a code object of its own on CPython 3.11 (inlined from 3.12 on).
        codes = {self.function.__code__}
        codes.update(c for c in self.function.__code__.co_consts if isinstance(c, CodeType))
        self._codes = frozenset(codes)

    def _source(self, inlined: Mapping[int, Inlinable]) -> list[str]:
        """The loop's source, with the steps of ``inlined`` pasted in."""
        self.inlined = dict(inlined)
        self._line_steps = {}
        self._elided = {}
        return self._comprehension() if self.is_comprehension else self._loop()

    def _header(self) -> list[str]:
        defaults = "".join(f", s{i}=s{i}" for i in range(len(self.steps)))
        tables = "".join(f", t{i}=t{i}" for i, step in enumerate(self.steps) if step.lookup is not None)
        keyword = "async def" if self.is_async else "def"
        # Built-ins come as defaults: the function may run with a user module's globals.
        lines = [f"{keyword} fused(it, *, _hash=hash, _len=len, _iter=iter, _list=list{defaults}{tables}"]
        if tables:
            lines.append("          , _MISSING=_MISSING, _none_key=_none_key, _lookup_error=_lookup_error")
        lines[-1] += "):"
        return lines

    def _call(self, i: int, arg: str) -> tuple[list[str], str]:
        """The code calling step ``i`` on ``arg``: the lines to run first and the expression of
        the result; when inlined, the function's own statements and expression."""
        if i in self.inlined:
            return self.inlined[i].block([arg], f"u{i}_")
        return [], f"{'await ' if self.steps[i].is_async else ''}s{i}({arg})"

    def _comprehension(self) -> list[str]:
        """``return ([v_n for v0 in it <clauses>],), (counters)`` with a clause per line."""
        lines = self._header()
        tallies = [i for i in self.counted if i != self.derived]
        lines += [f"    k{i} = []" for i in tallies]
        lines.append("    out = [v")
        lines.append("        for v in it")
        self._line_steps[len(lines)] = -1
        for i, step in enumerate(self.steps):
            _, call = self._call(i, "v")  # a comprehension inlines only expressions
            lines.append("        " + self._clause(i, step, call, counted=i in tallies))
            self._line_steps[len(lines)] = i
        lines.append("    ]")
        counters = "".join(f"_len(k{i}), " if i in tallies else "0, " for i in self.counted)
        lines.append(f"    return (out,), ({counters})")
        return lines

    @staticmethod
    def _clause(i: int, step: Step, call: str, *, counted: bool) -> str:
        if step.kind == "map":
            return f"for v in [{call}]"
        if step.kind == "filter":
            return f"if {call} or k{i}.append(None)" if counted else f"if {call}"
        if step.kind == "key_by":
            return f"if _hash({call}) or True"
        # flat_map (a sink never ends up in a comprehension)
        loop = f"async for v in s{i}(v)" if _is_async_generator_function(step.fn) else f"for v in {call}"
        return f"{loop} if k{i}.append(None) is None" if counted else loop

    def _loop(self) -> list[str]:
        """A ``for`` loop appending ``v{k}`` to ``o{k}`` for every point ``k``.

        Counters: ``c{i}`` for the counted steps, or, when resumable, ``e{i}`` for the items
        entering every step (``e{n}``: the items reaching the end).
        """
        resumable = self.resumable
        n = len(self.steps)
        lines = self._header()
        counters = [f"e{i}" for i in range(n + 1)] if resumable else [f"c{i}" for i in self.counted]
        lines += [f"    {name} = 0" for name in counters]
        lines += [f"    o{k} = []" for k in self.points]
        lines += [f"    a{k} = o{k}.append" for k in self.points]
        indent = "    "

        def add(code: str, step: int) -> None:
            lines.append(indent + code)
            self._line_steps[len(lines)] = step

        add("for v0 in it:", -1)
        indent += "    "
        if 0 in self.points:
            add("a0(v0)", -1)
        if resumable:
            add("e0 += 1", -1)
        for i, step in enumerate(self.steps):
            value = self._elided.get(i, f"v{i}")  # the step's input
            first, call = self._call(i, value)
            for code in first:
                add(code, i)
            nxt = f"v{i + 1}"
            if step.kind == "map":
                add(f"{nxt} = {call}", i)
            elif step.kind == "filter":
                reject = ["    continue"] if resumable else [f"    c{i} += 1", "    continue"]
                for code in (f"if not {call}:", *reject, f"{nxt} = {value}"):
                    add(code, i)
            elif step.kind == "key_by":
                add(f"_hash({call})", i)
                add(f"{nxt} = {value}", i)
            elif step.kind == "lookup":
                for code in self._lookup(i, call):
                    add(code, i)
                pair = self._pair(i)
                if i + 1 in self.inlined and i + 1 not in self.points:
                    self._elided[i + 1] = pair  # pasted into the next step: maybe never built
                else:
                    add(f"{nxt} = {pair}", i)
            elif step.kind == "flat_map":
                async_gen = _is_async_generator_function(step.fn)
                if resumable:
                    results = f"[r async for r in s{i}({value})]" if async_gen else f"_list({call})"
                    add(f"g{i} = _iter({results})", i)
                    add(f"for {nxt} in g{i}:", i)
                elif async_gen:
                    add(f"async for {nxt} in s{i}({value}):", i)
                else:
                    add(f"for {nxt} in {call}:", i)
                indent += "    "
                if not resumable:
                    add(f"c{i} += 1", i)
            elif call != "(None)":  # sink (an inlined one may have nothing left to evaluate)
                add(call, i)
            if step.kind == "sink":
                continue
            if resumable:
                add(f"e{i + 1} += 1", i)
            if i + 1 in self.points:
                add(f"a{i + 1}({nxt})", i)
        outputs = "".join(f"o{k}, " for k in self.points)
        lines.append(f"    return ({outputs}), ({''.join(f'{c}, ' for c in counters)})")
        return lines

    def _pair(self, i: int) -> str:
        """The output of lookup step ``i``: the item ``v{i}`` with its partner ``p{i}``."""
        lookup = self.steps[i].lookup
        assert lookup is not None
        return f"(v{i}, p{i})" if lookup.item_first else f"(p{i}, v{i})"

    def _lookup(self, i: int, key: str) -> list[str]:
        """Lookup step ``i`` on ``v{i}`` whose key is ``key``: ``p{i}`` is the partner, or the
        item is dropped (a miss). The errors are the join's own (see ``_join_probe``)."""
        miss = ["    continue"] if self.resumable else [f"    c{i} += 1", "    continue"]
        return [
            f"y{i} = {key}",
            f"if y{i} is None:",
            f"    raise _none_key(v{i})",
            "try:",
            f"    p{i} = t{i}(y{i}, _MISSING)",
            f"except Exception as x{i}:",
            f"    raise _lookup_error(y{i}, x{i})",
            f"if p{i} is _MISSING:",
            *miss,
        ]

    def __call__(self, it: Iterator[Any]) -> Any:
        """Run over ``it``: ``(outputs, counters)``, or a coroutine of them if async."""
        return self.function(it)

    def counts(self, consumed: int, counters: Sequence[int], produced: int) -> list[tuple[int, int]]:
        """``(items_in, items_out)`` per step.

        Args:
            consumed: items the chain took from its input.
            counters: what the chain returned (filter rejects, flat_map outputs).
            produced: items at the last point (used for the derived counter).
        """
        by_step = dict(zip(self.counted, counters, strict=True))
        result = []
        n_in = consumed
        for i, step in enumerate(self.steps):
            if i == self.derived:
                n_out = produced
            elif step.kind in ("filter", "lookup"):
                n_out = n_in - by_step[i]
            elif step.kind == "flat_map":
                n_out = by_step[i]
            elif step.kind == "sink":
                n_out = 0
            else:
                n_out = n_in
            result.append((n_in, n_out))
            n_in = n_out
        return result

    def explain(self, error: BaseException, batch_size: int, it: Iterator[Any]) -> Failure:
        """Find the step that raised ``error`` and the item it was given.

        ``it`` is the iterator the loop was consuming: a list iterator stands just past the item
        that was being processed, which gives how many items the chain had consumed.
        """
        consumed = batch_size - it.__length_hint__()  # type: ignore[attr-defined]
        tb: TracebackType | None = error.__traceback__
        frame = None
        while tb is not None:  # the innermost frame of ours: the comprehension, if any
            if tb.tb_frame.f_code in self._codes:
                frame, lineno = tb.tb_frame, tb.tb_lineno
            tb = tb.tb_next
        if frame is None:
            return Failure(-1, None, consumed)
        step = self._line_steps.get(lineno, -1)
        names = frame.f_locals
        # The loop names the input of step i ``v{i}``; the comprehension rebinds one ``v``.
        item = names.get("v", names.get(f"v{max(step, 0)}"))
        if step in self._elided:
            item = (names[f"v{step - 1}"], names[f"p{step - 1}"])
            if not self.steps[step - 1].lookup.item_first:  # type: ignore[union-attr]
                item = item[::-1]
        if not self.resumable:
            return Failure(step, item, consumed)
        enclosing = [i for i in range(step) if self.steps[i].kind == "flat_map"]
        return Failure(
            step,
            item,
            consumed,
            outputs=tuple(names[f"o{k}"] for k in self.points),
            entries=tuple(names[f"e{i}"] for i in range(len(self.steps) + 1)),
            pending=tuple((i, names[f"g{i}"]) for i in reversed(enclosing)),
        )
