"""Operator fusion: a chain of stateless steps compiled into one Python loop.

Flink chains ``map -> filter -> sink`` into one task so that a chain costs one loop, not one
queue per operator. We go one step further and generate the loop's source, as ``dataclasses``
does for ``__init__``: measured on CPython 3.11, one generated ``for`` loop that calls the user
functions directly beats ``map()``/``filter()`` over a batch (C code cannot inline the calls into
the interpreter loop) and beats a chain of generators (no frame switch per item per step).

For ``map f`` then ``filter p`` emitting the filter's output, the generated code reads::

    def fused(it, *, _hash=hash, _iter=iter, _list=list, s0=s0, s1=s1
              , _fail=_fail, _Exception=Exception):
        o2 = []
        a2 = o2.append
        v0 = v1 = v2 = None
        try:
            for v0 in it:
                v1 = s0(v0)
                if not s1(v1):
                    continue
                a2(v1)
        except _Exception as _x:
            _fail(_x, (v0, v1, v2, ), (o2, ), ())
            raise
        return (o2, ), ()

An *emission point* ``k`` is the output of step ``k - 1`` collected into a list that the runtime
hands on downstream (fan-out, taps, collectors). Counters make per-operator metrics exact with no
per-item cost for maps: a filter counts its rejects, a flat_map its outputs, and the last such
step before the chain's output is derived from the output's length. (A comprehension
would be ~10% faster for called steps, but slower for pasted ones, and its variables cannot be
handed to a failure handler.)

With ``inline=True`` a step whose function qualifies (:mod:`sage_streams._codegen.inline`) is not
called: its code is pasted in, which halves the cost of a cheap step. Only one-expression
functions are pasted (``lambda x: x * 2``), unless ``inline="all"``: then a loop also takes
straight-line bodies, such as a sink that tallies into a closure's list. The function then runs
with that function's module globals and cells; every name the loop itself needs (built-ins
included) comes in as a default, and a function that reads a global or free variable named like
one of the loop's locals is called instead. Step ``i``'s locals are named ``u{i}_...``.

A *lookup* step is a keyed inner join whose other side has ended and holds one item per key (a
dimension table): the join has nothing left to buffer, so it is a stateless step, and the
runtime hands it to the chain after the join (``_runtime.chain``). Fused, a profile lookup and
the enrichment after it are one loop, and the pair need not exist: an inlined next step that
unpacks it (``event, profile = pair``) is given ``(v0, p0)`` to unpack, which CPython compiles
without building the tuple.

When a step raises, the loop's handler hands its own variables to :meth:`FusedChain._fail`, which
records the step (from the line the error passed the loop on) and that step's input item, so the
fast path pays nothing for error reports and nothing reads a frame: a pasted function's closure
can never stand in for the loop's variables. The plain twin, :class:`~sage_streams._codegen.plain.PlainChain`,
keeps the same contract without generating anything.

CPython allows 20 statically nested blocks and 100 levels of indentation in a function, and each
flat_map of a loop nests one: a chain with more flat_maps than one loop can hold runs as several
loops, each handing its last point's list to the next (:attr:`FusedChain.parts`).

A *resumable* chain (one under an error handler) is compiled so that a failure can be survived
without losing or repeating work: it counts the items entering each step
(``e{i}``), and a flat_map's results are listed before they are iterated (``g{i}``), so that
``explain`` can hand back the partial outputs, the counts, and the flat_map results not yet
processed. The runtime then goes on from the failing step (see ``_runtime.chain.ChainTask``).
"""

from __future__ import annotations

import ast
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from functools import cache
from typing import Any, TypeAlias

from sage_streams._codegen.inline import Inlinable, Inline, define, inlinable
from sage_streams._codegen.lookups import MISSING, lookup_error, none_key
from sage_streams._codegen.plain import PlainChain
from sage_streams._codegen.steps import Failure, Step, StepChain
from sage_streams.functions import is_async_generator_function

__all__ = ["FusedChain", "compile_chain"]

_Result: TypeAlias = tuple[tuple[list[Any], ...], tuple[int, ...]]
"""What a chain returns: the outputs per point, and the counters."""

_MAX_NESTED = 15
"""flat_maps per generated loop: each nests a ``for`` block in the item loop, which stands in a
``try``; a lookup's ``try`` nests one more, and CPython refuses a 21st statically nested block."""


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


class FusedChain(StepChain):
    """``steps`` compiled into one ``for`` loop from an input iterator to per-point output lists.

    Calling the chain returns ``(outputs, counters)`` (see :class:`StepChain`), or a coroutine
    of them when a step is async. A chain whose flat_maps one loop cannot nest runs as several
    loops, :attr:`parts`.
    """

    def __init__(
        self,
        steps: Sequence[Step],
        points: Sequence[int],
        *,
        resumable: bool = False,
        inline: Inline = False,
        derive: bool = True,
    ) -> None:
        starts = _part_starts(steps)
        super().__init__(steps, points, resumable=resumable, derive=derive and not starts[1:])
        self._line_steps: dict[int, int] = {}
        self._inputs: dict[int, str] = {}
        """The expression of each step's input: ``v{i}``, or a lookup's pair ``(v{j}, p{j})``."""
        self._names: tuple[str, ...] = ()
        """The loop's own variables its failure handler hands to :meth:`_fail`, in order."""
        self.inlined: dict[int, Inlinable] = {}
        self.parts: tuple[tuple[int, FusedChain], ...] = ()
        """The loops of a chain split by nesting: ``(first step, loop)`` each."""
        self._done: tuple[dict[int, list[Any]], list[int], list[Iterator[Any]]] = ({}, [], [])
        if starts[1:]:
            self._split(starts, inline)
        else:
            self._compile(inline)
        self.source = "" if self.parts else "\n".join(self._lines) + "\n"
        """The generated code (empty for a chain of parts: see theirs)."""

    def _compile(self, inline: Inline) -> None:
        label = "fused " + (" -> ".join(step.operator for step in self.steps[:8]) or "source")
        if len(self.steps) > 8:
            label += f" -> ... ({len(self.steps)} steps)"
        namespace: dict[str, Any] = {f"s{i}": step.fn for i, step in enumerate(self.steps)}
        namespace.update(
            {f"t{i}": step.lookup.table.get for i, step in enumerate(self.steps) if step.lookup is not None}
        )
        namespace.update(_MISSING=MISSING, _none_key=none_key, _lookup_error=lookup_error, _fail=self._fail)
        candidates = _inlinable_steps(self.steps, statements=inline == "all") if inline else {}
        self.function, self.inlined = define(self._source, "fused", label, namespace, candidates)

    def _split(self, starts: list[int], inline: Inline) -> None:
        """Compile the steps as several loops, each starting at one of ``starts``. A loop emits
        the chain's points from its first step's input up to its last step's, and hands its
        last step's output to the next loop, which emits it as it reads it."""
        n = len(self.steps)
        ends = [*starts[1:], n]
        parts = []
        for start, end in zip(starts, ends, strict=True):
            points = [k - start for k in self.points if start <= k < end or k == end == n]
            if end < n:
                points.append(end - start)
            chain = FusedChain(
                self.steps[start:end], points, resumable=self.resumable, inline=inline, derive=False
            )
            parts.append((start, chain))
        self.parts = tuple(parts)
        self.inlined = {start + i: found for start, chain in self.parts for i, found in chain.inlined.items()}
        self.function = self.parts[0][1].function  # the first loop's

    def _owned(self, index: int, lists: Sequence[list[Any]]) -> dict[int, list[Any]]:
        """The chain's points among the outputs ``lists`` of loop ``index`` (not its hand-over)."""
        start, chain = self.parts[index]
        last = index + 1 == len(self.parts)
        return {
            start + k: out for k, out in zip(chain.points, lists, strict=True) if last or k < len(chain.steps)
        }

    def _source(self, inlined: Mapping[int, Inlinable]) -> list[str]:
        """The loop's source, with the steps of ``inlined`` pasted in."""
        self.inlined = dict(inlined)
        self._line_steps = {}
        self._inputs = {-1: "v0"}
        self._lines = self._loop()
        return self._lines

    def _header(self) -> list[str]:
        defaults = "".join(f", s{i}=s{i}" for i in range(len(self.steps)))
        tables = "".join(f", t{i}=t{i}" for i, step in enumerate(self.steps) if step.lookup is not None)
        keyword = "async def" if self.is_async else "def"
        # Built-ins come as defaults: the function may run with a user module's globals and cells.
        lines = [
            f"{keyword} fused(it, *, _hash=hash, _iter=iter, _list=list{defaults}{tables}",
            "          , _fail=_fail, _Exception=Exception",
        ]
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

    def _loop(self) -> list[str]:
        """A ``for`` loop appending ``v{k}`` to ``o{k}`` for every point ``k``.

        Counters: ``c{i}`` for the counted steps, or, when resumable, ``e{i}`` for the items
        entering every step (``e{n}``: the items reaching the end). The loop stands in a
        ``try`` (free on CPython 3.11+ until something raises) whose handler hands the loop's
        own variables to :meth:`_fail` before the error goes on.
        """
        resumable = self.resumable
        n = len(self.steps)
        lines = self._header()
        counters = [f"e{i}" for i in range(n + 1)] if resumable else [f"c{i}" for i in self.counted]
        lines += [f"    {name} = 0" for name in counters]
        lines += [f"    o{k} = []" for k in self.points]
        lines += [f"    a{k} = o{k}.append" for k in self.points]
        variables = len(lines)  # the handler's variables are set to None here, once all are known
        lines.append("    try:")
        indent = "        "

        def add(code: str, step: int) -> None:
            lines.append(indent + code)
            self._line_steps[len(lines)] = step

        add("for v0 in it:", -1)
        indent += "    "
        if 0 in self.points:
            add("a0(v0)", -1)
        if resumable:
            add("e0 += 1", -1)
        if not self.steps and 0 not in self.points:
            add("pass", -1)  # a source nobody reads: the loop only drains it
        for i, step in enumerate(self.steps):
            value = self._inputs.setdefault(i, f"v{i}")  # a lookup's pair, or ``v{i}``
            first, call = self._call(i, value)
            for code in first:
                add(code, i)
            nxt = f"v{i + 1}"
            if step.kind == "map":
                add(f"{nxt} = {call}", i)
            elif step.kind == "filter":
                reject = [f"    c{i} += 1", "    continue"] if self._tallies(i) else ["    continue"]
                for code in (f"if not {call}:", *reject):
                    add(code, i)
                nxt = self._inputs[i + 1] = value  # what passes a filter is its input
            elif step.kind == "key_by":
                add(f"_hash({call})", i)
                nxt = self._inputs[i + 1] = value
            elif step.kind == "lookup":
                for code in self._lookup(i, call):
                    add(code, i)
                pair = self._pair(i)
                if i + 1 in self.inlined and i + 1 not in self.points:
                    self._inputs[i + 1] = pair  # pasted into the next step: maybe never built
                else:
                    add(f"{nxt} = {pair}", i)
            elif step.kind == "flat_map":
                async_gen = is_async_generator_function(step.fn)
                if resumable:
                    results = f"[r async for r in s{i}({value})]" if async_gen else f"_list({call})"
                    add(f"g{i} = _iter({results})", i)
                    add(f"for {nxt} in g{i}:", i)
                elif async_gen:
                    add(f"async for {nxt} in s{i}({value}):", i)
                else:
                    add(f"for {nxt} in {call}:", i)
                indent += "    "
                if self._tallies(i):
                    add(f"c{i} += 1", i)
            elif call != "(None)" or not first:  # a sink; a pasted one may have nothing left to evaluate
                add(call if call != "(None)" else "pass", i)
            if step.kind == "sink":
                continue
            if resumable:
                add(f"e{i + 1} += 1", i)
            if i + 1 in self.points:
                add(f"a{i + 1}({nxt})", i)
        self._names = (
            *(f"v{i}" for i in range(n + (not self.steps or self.steps[-1].kind != "sink"))),
            *(f"p{i}" for i, step in enumerate(self.steps) if step.kind == "lookup"),
            *(f"g{i}" for i, step in enumerate(self.steps) if resumable and step.kind == "flat_map"),
        )
        outputs = "".join(f"o{k}, " for k in self.points)
        counted = "".join(f"{c}, " for c in counters)
        lines += [
            "    except _Exception as _x:",
            f"        _fail(_x, ({''.join(f'{name}, ' for name in self._names)}), ({outputs}), ({counted}))",
            "        raise",
            f"    return ({outputs}), ({counted})",
        ]
        lines.insert(variables, f"    {' = '.join(self._names)} = None")
        self._line_steps = {line + 1 if line > variables else line: i for line, i in self._line_steps.items()}
        return lines

    def _fail(
        self,
        error: BaseException,
        values: tuple[Any, ...],
        outputs: tuple[list[Any], ...],
        counters: tuple[int, ...],
    ) -> None:
        """Record the failure of the loop's step on whose line ``error`` passed the loop (none
        for the loop's own line: the input iterator raised), given the loop's variables."""
        tb = error.__traceback__
        step = -1 if tb is None else self._line_steps.get(tb.tb_lineno, -1)
        if step < 0:
            return
        known = dict(zip(self._names, values, strict=True))
        item = _value(_parsed(self._inputs[step]), known)
        if not self.resumable:
            self.record(error, Failure(step, item, 0))
            return
        enclosing = [i for i in reversed(range(step)) if self.steps[i].kind == "flat_map"]
        pending = tuple((i, known[f"g{i}"]) for i in enclosing)
        self.record(error, Failure(step, item, 0, outputs, counters, pending))

    def _tallies(self, i: int) -> bool:
        """Whether step ``i`` adds to a counter ``c{i}`` (not when resumable, nor derived)."""
        return not self.resumable and i in self.counted

    def _pair(self, i: int) -> str:
        """The output of lookup step ``i``: its input item with its partner ``p{i}``."""
        lookup = self.steps[i].lookup
        assert lookup is not None
        item = self._inputs[i]
        return f"({item}, p{i})" if lookup.item_first else f"(p{i}, {item})"

    def _lookup(self, i: int, key: str) -> list[str]:
        """Lookup step ``i`` on its input whose key is ``key``: ``p{i}`` is the partner, or the
        item is dropped (a miss). The errors are the join's own (see ``lookups``)."""
        miss = [f"    c{i} += 1", "    continue"] if self._tallies(i) else ["    continue"]
        return [
            f"y{i} = {key}",
            f"if y{i} is None:",
            f"    raise _none_key({self._inputs[i]})",
            "try:",
            f"    p{i} = t{i}(y{i}, _MISSING)",
            f"except _Exception as x{i}:",
            f"    raise _lookup_error(y{i}, x{i})",
            f"if p{i} is _MISSING:",
            *miss,
        ]

    def __call__(self, it: Iterator[Any]) -> Any:
        """Run over ``it``: ``(outputs, counters)``, or a coroutine of them if async."""
        if not self.parts:
            return self.function(it)
        return self._settled(self._run_parts(it))

    def _run_parts(self, it: Iterator[Any]) -> Coroutine[Any, Any, _Result]:
        """The loops of :attr:`parts` in turn, each over the list the one before handed over;
        what they did so far stays in ``_done`` for :meth:`explain`."""
        outputs: dict[int, list[Any]] = {}
        counters: list[int] = []
        inputs: list[Iterator[Any]] = []
        self._done = (outputs, counters, inputs)

        async def run() -> _Result:
            items = it
            for index, (_, chain) in enumerate(self.parts):
                inputs.append(items)
                result = chain(items)
                lists, counts = (await result) if chain.is_async else result
                outputs.update(self._owned(index, lists))
                # A resumable loop counts the items entering it: the loop before counted them.
                counters.extend(counts[1:] if self.resumable and index else counts)
                if index + 1 < len(self.parts):
                    items = iter(lists[-1])  # the hand-over
            return tuple(outputs[k] for k in self.points), tuple(counters)

        return run()

    def explain(self, error: BaseException, batch_size: int, it: Iterator[Any]) -> Failure:
        if not self.parts:
            return super().explain(error, batch_size, it)
        return self._explain_parts(error, batch_size - it.__length_hint__())  # type: ignore[attr-defined]

    def _explain_parts(self, error: BaseException, consumed: int) -> Failure:
        """:meth:`explain` for a chain of :attr:`parts`: the failing loop's failure, in steps of
        the chain, with the whole outputs of the loops before it, and the rest of its input as
        work pending at its first step."""
        outputs, counters, inputs = self._done
        index = len(inputs) - 1  # the loop that was running
        if index < 0:
            return Failure(-1, None, consumed)
        start, chain = self.parts[index]
        inner = chain.explain(error, 0, inputs[index])
        if inner.step < 0:
            return Failure(-1, None, consumed)
        step = start + inner.step
        if not self.resumable:
            return Failure(step, inner.item, consumed)
        end = start + len(chain.steps)
        partial = self._owned(index, inner.outputs)
        lists = tuple(outputs[k] if k < start else partial.get(k, []) for k in self.points)
        pending = tuple((start + i, rest) for i, rest in inner.pending)
        if index:
            pending += ((start - 1, inputs[index]),)  # the items the failing loop did not reach
        if end == len(self.steps):
            entries = (*counters[:start], *inner.entries)
            return Failure(step, inner.item, consumed, lists, entries, pending)
        # The items it handed over count as entering the next loop when they run from ``end``.
        entries = (*counters[:start], *inner.entries[:-1], *[0] * (len(self.steps) - end + 1))
        ahead = ((end, iter(inner.outputs[-1])),)
        return Failure(step, inner.item, consumed, lists, entries, pending, ahead)


@cache
def _parsed(expression: str) -> ast.expr:
    """A step's input expression parsed, once per process: handled chains may fail often."""
    return ast.parse(expression, mode="eval").body


def _value(expression: ast.expr, known: Mapping[str, Any]) -> Any:
    """The value of a step's input expression (a variable, or a pair of them) from ``known``."""
    if isinstance(expression, ast.Tuple):
        return tuple(_value(part, known) for part in expression.elts)
    assert isinstance(expression, ast.Name), ast.dump(expression)
    return known[expression.id]


def compile_chain(
    steps: Sequence[Step], points: Sequence[int], *, resumable: bool, inline: Inline, codegen: bool
) -> StepChain:
    """``steps`` as a :class:`FusedChain`, or, without ``codegen``, as its plain twin."""
    if not codegen:  # the same counters: derived where one loop would derive one
        return PlainChain(steps, points, resumable=resumable, derive=not _part_starts(steps)[1:])
    return FusedChain(steps, points, resumable=resumable, inline=inline)


def _part_starts(steps: Sequence[Step]) -> list[int]:
    """The first step of each loop a chain of ``steps`` needs: a new one before the flat_map
    that would nest more than ``_MAX_NESTED`` of them."""
    starts = [0]
    nested = 0
    for i, step in enumerate(steps):
        if step.kind == "flat_map":
            if nested == _MAX_NESTED:
                starts.append(i)
                nested = 0
            nested += 1
    return starts
