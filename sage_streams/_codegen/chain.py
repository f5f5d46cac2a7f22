"""Operator fusion: a chain of stateless steps compiled into one Python loop.

Flink chains ``map -> filter -> sink`` into one task so that a chain costs one loop, not one
queue per operator. We go one step further and generate the loop's source, as ``dataclasses``
does for ``__init__``: measured on CPython 3.11, one generated ``for`` loop that calls the user
functions directly beats ``map()``/``filter()`` over a batch (C code cannot inline the calls into
the interpreter loop) and beats a chain of generators (no frame switch per item per step).

For ``map f`` then ``filter p``, the generated code reads::

    def fused(it, *, _hash=hash, s0=f, s1=p):
        out = [v1
            for v0 in it
            for v1 in [s0(v0)]
            if s1(v1)
        ]
        return (out,), (0,)

An *emission point* ``k`` is the output of step ``k - 1`` collected into a list that the runtime
hands on downstream (fan-out, taps, collectors). Counters make per-operator metrics exact with no
per-item cost for maps: a filter counts its rejects, a flat_map its outputs, and the last such
step of a comprehension is derived from the output's length.

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

When a step raises, :meth:`FusedChain.explain` reads the failing step and its input item off the
traceback, so the fast path pays nothing for error reports: the step from the line (or, for an
iterator that raised, from the variable its loop binds), the item from the step's input variable
``v{i}``. It reads only variables that are the generated code's own locals, which no pasted
function can read or write (:func:`~sage_streams._codegen.inline.define` calls a function that names
one), never a name a user function's closure could supply.

CPython allows 20 statically nested blocks and 100 levels of indentation in a function, and each
flat_map of a loop nests one: a chain with more flat_maps than one loop can hold runs as several
loops, each handing its last point's list to the next (:attr:`FusedChain.parts`). Comprehension
clauses do not nest blocks, so a comprehension is never split.

A *resumable* chain (one under an error handler) is compiled so that a failure can be survived
without losing or repeating work: it is always a loop, it counts the items entering each step
(``e{i}``), and a flat_map's results are listed before they are iterated (``g{i}``), so that
``explain`` can hand back the partial outputs, the counts, and the flat_map results not yet
processed. The runtime then goes on from the failing step (see ``_runtime.ChainTask``).
"""

from __future__ import annotations

import dis
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from types import CodeType, FrameType, TracebackType
from typing import Any, TypeAlias

from sage_streams._codegen.inline import Inlinable, Inline, define, inlinable
from sage_streams._codegen.join_probe import MISSING, lookup_error, none_key
from sage_streams._codegen.steps import Failure, Lookup, Step, StepKind
from sage_streams.functions import is_async_callable, is_async_generator_function

__all__ = ["FusedChain", "Lookup", "Step", "StepKind", "is_async_callable"]


_COUNTED = frozenset({"filter", "flat_map", "lookup"})
"""Steps whose output count differs from their input count, so they keep a counter."""

_Result: TypeAlias = tuple[tuple[list[Any], ...], tuple[int, ...]]
"""What a chain returns: the outputs per point, and the counters."""

_MAX_NESTED = 16
"""flat_maps per generated loop: each nests a ``for`` block in the item loop, a lookup's ``try``
nests one more, and CPython refuses a 21st statically nested block."""


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


class FusedChain:
    """``steps`` compiled into one function from an input iterator to per-point output lists.

    Point ``0`` is the chain's input, point ``len(steps)`` its output; a sink step emits nothing.
    Calling the chain returns ``(outputs, counters)``: one list per point in :attr:`points`, and
    the counters :meth:`counts` turns into per-step metrics (a coroutine when a step is async).

    A chain whose only output is its last point compiles to one list comprehension, the fastest
    shape CPython has; it is all-or-nothing per batch. Other chains compile to a ``for`` loop
    whose partial outputs survive an error in the frame's locals (``loop`` asks for one), or to
    several, :attr:`parts`, when one loop cannot nest all their flat_maps.
    """

    def __init__(
        self,
        steps: Sequence[Step],
        points: Sequence[int],
        *,
        resumable: bool = False,
        inline: Inline = False,
        loop: bool = False,
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
        self.is_comprehension = (
            not loop and self.points in ((), (n,)) and not (ends_in_sink or resumable or looks_up)
        )
        if self.is_comprehension:
            self.points = (n,)  # computed even when nobody reads it: the counters need it
        # In a comprehension the last counted step is derived from the output's length.
        self.derived = self.counted[-1] if self.is_comprehension and self.counted else None
        self._line_steps: dict[int, int] = {}
        self._inputs: dict[int, str] = {}
        """The expression of each step's input: ``v{i}``, or a lookup's pair ``(v{j}, p{j})``."""
        self.inlined: dict[int, Inlinable] = {}
        self.parts: tuple[tuple[int, FusedChain], ...] = ()
        """The loops of a chain split by nesting: ``(first step, loop)`` each."""
        self._done: tuple[dict[int, list[Any]], list[int], list[Iterator[Any]]] = ({}, [], [])
        if not self.is_comprehension and (starts := _part_starts(self.steps))[1:]:
            self._split(starts, inline)
        else:
            self._compile(inline)

    def _compile(self, inline: Inline) -> None:
        label = "fused " + (" -> ".join(step.operator for step in self.steps[:8]) or "source")
        if len(self.steps) > 8:
            label += f" -> ... ({len(self.steps)} steps)"
        namespace: dict[str, Any] = {f"s{i}": step.fn for i, step in enumerate(self.steps)}
        namespace.update(
            {f"t{i}": step.lookup.table.get for i, step in enumerate(self.steps) if step.lookup is not None}
        )
        namespace.update(_MISSING=MISSING, _none_key=none_key, _lookup_error=lookup_error)
        statements = inline == "all" and not self.is_comprehension
        candidates = _inlinable_steps(self.steps, statements=statements) if inline else {}
        self.function, self.inlined = define(self._source, "fused", label, namespace, candidates)
        # The comprehension is a code object of its own on CPython 3.11 (inlined from 3.12 on).
        codes = {self.function.__code__}
        codes.update(c for c in self.function.__code__.co_consts if isinstance(c, CodeType))
        self._codes = frozenset(codes)

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
                self.steps[start:end], points, resumable=self.resumable, inline=inline, loop=True
            )
            parts.append((start, chain))
        self.parts = tuple(parts)
        self.inlined = {start + i: found for start, chain in self.parts for i, found in chain.inlined.items()}
        self.function = self.parts[0][1].function  # the first loop's
        self._codes = frozenset()

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
        return self._comprehension() if self.is_comprehension else self._loop()

    def _header(self) -> list[str]:
        defaults = "".join(f", s{i}=s{i}" for i in range(len(self.steps)))
        tables = "".join(f", t{i}=t{i}" for i, step in enumerate(self.steps) if step.lookup is not None)
        keyword = "async def" if self.is_async else "def"
        # Built-ins come as defaults: the function may run with a user module's globals and cells.
        lines = [f"{keyword} fused(it, *, _hash=hash, _len=len, _iter=iter, _list=list{defaults}{tables}"]
        if tables:
            lines.append(
                "          , _MISSING=_MISSING, _none_key=_none_key, _lookup_error=_lookup_error"
                ", _Exception=Exception"
            )
        lines[-1] += "):"
        return lines

    def _call(self, i: int, arg: str) -> tuple[list[str], str]:
        """The code calling step ``i`` on ``arg``: the lines to run first and the expression of
        the result; when inlined, the function's own statements and expression."""
        if i in self.inlined:
            return self.inlined[i].block([arg], f"u{i}_")
        return [], f"{'await ' if self.steps[i].is_async else ''}s{i}({arg})"

    def _comprehension(self) -> list[str]:
        """``return ([v_n for v0 in it <clauses>],), (counters)`` with a clause per line; each
        step that binds a value binds a variable of its own, so every step's input stays."""
        lines = self._header()
        tallies = [i for i in self.counted if i != self.derived]
        lines += [f"    k{i} = []" for i in tallies]
        clauses = ["        for v0 in it"]
        self._line_steps[len(lines) + 2] = -1
        value = "v0"
        for i, step in enumerate(self.steps):
            self._inputs[i] = value
            _, call = self._call(i, value)  # a comprehension inlines only expressions
            clause, value = self._clause(i, step, call, value, counted=i in tallies)
            clauses.append("        " + clause)
            self._line_steps[len(lines) + 1 + len(clauses)] = i
        lines += [f"    out = [{value}", *clauses, "    ]"]
        counters = "".join(f"_len(k{i}), " if i in tallies else "0, " for i in self.counted)
        lines.append(f"    return (out,), ({counters})")
        return lines

    @staticmethod
    def _clause(i: int, step: Step, call: str, value: str, *, counted: bool) -> tuple[str, str]:
        """Step ``i``'s clause on ``value``, and the variable holding its output."""
        if step.kind == "map":
            return f"for v{i + 1} in [{call}]", f"v{i + 1}"
        if step.kind == "filter":
            return (f"if {call} or k{i}.append(None)" if counted else f"if {call}"), value
        if step.kind == "key_by":
            return f"if _hash({call}) or True", value
        # flat_map (a sink never ends up in a comprehension)
        loop = (
            f"async for v{i + 1} in s{i}({value})"
            if is_async_generator_function(step.fn)
            else f"for v{i + 1} in {call}"
        )
        return (f"{loop} if k{i}.append(None) is None" if counted else loop), f"v{i + 1}"

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
            value = self._inputs.setdefault(i, f"v{i}")  # a lookup's pair, or ``v{i}``
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
                if not resumable:
                    add(f"c{i} += 1", i)
            else:  # sink: an inlined one may have nothing left to evaluate, and a block needs a line
                add(call if call != "(None)" else "pass", i)
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
            f"except _Exception as x{i}:",
            f"    raise _lookup_error(y{i}, x{i})",
            f"if p{i} is _MISSING:",
            *miss,
        ]

    def __call__(self, it: Iterator[Any]) -> Any:
        """Run over ``it``: ``(outputs, counters)``, or a coroutine of them if async."""
        if not self.parts:
            return self.function(it)
        run = self._run_parts(it)
        if self.is_async:
            return run
        try:  # no step awaits: the coroutine ends at its first step
            run.send(None)
        except StopIteration as done:
            return done.value
        raise AssertionError("a chain of sync steps awaited")  # pragma: no cover

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
        if self.parts:
            return self._explain_parts(error, consumed)
        tb: TracebackType | None = error.__traceback__
        frame = None
        while tb is not None:  # the innermost frame of ours: the comprehension, if any
            if tb.tb_frame.f_code in self._codes:
                frame, lineno, offset = tb.tb_frame, tb.tb_lineno, tb.tb_lasti
            tb = tb.tb_next
        if frame is None:
            return Failure(-1, None, consumed)
        step = self._line_steps.get(lineno)
        if step is None:  # an iterator's ``next`` raised: the loop's header has no step's line
            step = _binding_step(frame.f_code, offset)
        item = _own(frame, self._inputs[step])
        if not self.resumable:
            return Failure(step, item, consumed)
        enclosing = [i for i in range(step) if self.steps[i].kind == "flat_map"]
        return Failure(
            step,
            item,
            consumed,
            outputs=tuple(_own(frame, f"o{k}") for k in self.points),
            entries=tuple(_own(frame, f"e{i}") for i in range(len(self.steps) + 1)),
            pending=tuple((i, _own(frame, f"g{i}")) for i in reversed(enclosing)),
        )

    def _explain_parts(self, error: BaseException, consumed: int) -> Failure:
        """:meth:`explain` for a chain of :attr:`parts`: the failing loop's failure, in steps of
        the chain, with the whole outputs of the loops before it, and the rest of its input as
        work pending at its first step."""
        outputs, counters, inputs = self._done
        index = len(inputs) - 1  # the loop that was running (loops may share code objects)
        codes = set()
        tb: TracebackType | None = error.__traceback__
        while tb is not None:
            codes.add(tb.tb_frame.f_code)
            tb = tb.tb_next
        if index < 0 or not self.parts[index][1]._codes & codes:
            return Failure(-1, None, consumed)
        start, chain = self.parts[index]
        inner = chain.explain(error, 0, inputs[index])
        step = start + inner.step if inner.step >= 0 else -1
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


def _binding_step(code: CodeType, offset: int) -> int:
    """The step whose iterator the instruction at ``offset`` of ``code`` advances: the one whose
    output variable ``v{k}`` (step ``k - 1``) is the next one stored."""
    for instruction in dis.get_instructions(code):
        if instruction.offset > offset and instruction.opname == "STORE_FAST":
            name = str(instruction.argval)
            if name[:1] == "v" and name[1:].isdigit():
                return int(name[1:]) - 1
    return -1


def _own(frame: FrameType, name: str) -> Any:
    """The value of ``name``, a local variable of the generated code of ``frame``: never a free
    variable, which a pasted function's closure supplies (``None`` while unbound)."""
    if name.startswith("("):  # a lookup's pair, never built: ``(v{j}, p{j})`` or ``(p{j}, v{j})``
        return tuple(_own(frame, part.strip()) for part in name[1:-1].split(","))
    if name not in frame.f_code.co_varnames:
        raise AssertionError(f"{name} is not a local of {frame.f_code.co_name}")
    return frame.f_locals.get(name)
