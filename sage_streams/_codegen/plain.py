"""The plain twins of the generated loops: the same contracts, interpreted, nothing compiled.

Every function :mod:`sage_streams._codegen` generates has a twin here that a reader can follow
line by line and a debugger can step through: :class:`PlainChain` for a fused chain,
:func:`plain_probe` for a join's probe, :func:`plain_run_loop` for a window's run loop (a key
reader's twin is :func:`~sage_streams._codegen.window_loops.each`). ``LocalEnvironment(codegen=False)``
or ``SAGE_STREAMS_CODEGEN=0`` runs them instead of the generated code, and the tests hold the
generated code to them: same outputs, counters, errors and failure records for random chains,
batches and user functions.

They are slower (a chain runs each item through a loop over its steps) and never paste user
code, so a traceback always shows the user function's own frame.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any

from sage_streams._codegen.lookups import MISSING, Bucket, Probe, lookup_error, none_key
from sage_streams._codegen.steps import Failure, Step, StepChain
from sage_streams.functions import is_async_generator_function

__all__ = ["PlainChain", "plain_probe", "plain_run_loop"]


class PlainChain(StepChain):
    """A chain that runs each item through its steps in turn (see :class:`StepChain`).

    Its counters and failure records are the generated loop's: a flat_map's results are
    iterated as they come, or listed first when the chain is resumable, so that a failure can
    hand back the ones not yet processed.
    """

    def __call__(self, it: Iterator[Any]) -> Any:
        """Run over ``it``: ``(outputs, counters)``, or a coroutine of them if a step is async."""
        return self._settled(_Run(self).over(it))


class _Run:
    """One call of a :class:`PlainChain`: its outputs, counters and what failed."""

    def __init__(self, chain: PlainChain) -> None:
        self.chain = chain
        self.steps = chain.steps
        self.outputs: dict[int, list[Any]] = {k: [] for k in chain.points}
        n = len(chain.steps)
        self.counters = [0] * (n + 1 if chain.resumable else n)  # entries, or counted steps' counts
        self.pending: list[tuple[int, Iterator[Any]]] = []
        self.failed: Failure | None = None

    async def over(self, it: Iterator[Any]) -> tuple[tuple[list[Any], ...], tuple[int, ...]]:
        chain = self.chain
        try:
            for item in it:
                await self._enter(0, item)
        except Exception as exc:
            if self.failed is not None:
                outputs, entries = self._results() if chain.resumable else ((), ())
                failed = self.failed
                chain.record(exc, Failure(failed.step, failed.item, 0, outputs, entries, tuple(self.pending)))
            raise
        return self._results()

    def _results(self) -> tuple[tuple[list[Any], ...], tuple[int, ...]]:
        outputs = tuple(self.outputs[k] for k in self.chain.points)
        if self.chain.resumable:
            return outputs, tuple(self.counters)
        return outputs, tuple(self.counters[i] for i in self.chain.counted)

    async def _enter(self, i: int, value: Any) -> None:
        """``value`` reaches point ``i``: emit it there, then run it through steps ``i`` on."""
        while True:
            if i in self.outputs:
                self.outputs[i].append(value)
            if self.chain.resumable:
                self.counters[i] += 1
            if i == len(self.steps):
                return
            step = self.steps[i]
            if step.kind == "flat_map":
                await self._flat_map(i, step, value)
                return
            try:
                passed, value = await self._apply(step, value)
            except Exception:
                self.failed = Failure(i, value, 0)
                raise
            if not passed:
                if step.kind != "sink" and not self.chain.resumable:
                    self.counters[i] += 1  # a rejected item, or a lookup's miss
                return
            i += 1

    async def _apply(self, step: Step, value: Any) -> tuple[bool, Any]:
        """Step ``step`` on ``value``: whether it goes on, and as what."""
        if step.kind == "lookup":
            assert step.lookup is not None
            key = step.fn(value)
            if key is None:
                raise none_key(value)
            try:
                partner = step.lookup.table.get(key, MISSING)
            except Exception as exc:
                raise lookup_error(key, exc)  # noqa: B904 - the join's own error and cause
            if partner is MISSING:
                return False, None
            return True, (value, partner) if step.lookup.item_first else (partner, value)
        result = step.fn(value)
        if step.is_async:
            result = await result
        if step.kind == "map":
            return True, result
        if step.kind == "filter":
            return bool(result), value
        if step.kind == "key_by":
            hash(result)
            return True, value
        return False, None  # a sink: nothing goes on

    async def _flat_map(self, i: int, step: Step, value: Any) -> None:
        """Each result of flat_map step ``i`` on ``value`` goes on, in turn."""
        try:
            if is_async_generator_function(step.fn):
                results: Any = step.fn(value)
                if self.chain.resumable:
                    results = iter([result async for result in results])
            else:
                results = step.fn(value)
                if step.is_async:
                    results = await results
                results = iter(list(results) if self.chain.resumable else results)
        except Exception:
            self.failed = Failure(i, value, 0)
            raise
        is_async = not isinstance(results, Iterator)
        while True:
            try:
                result = await anext(results) if is_async else next(results)
            except (StopIteration, StopAsyncIteration):
                return
            except Exception:
                self.failed = Failure(i, value, 0)
                raise
            if not self.chain.resumable:
                self.counters[i] += 1
            try:
                await self._enter(i + 1, result)
            except Exception:
                if self.chain.resumable:
                    self.pending.append((i, results))
                raise


def plain_probe(
    side: int, key_func: Callable[[Any], Any], theirs: dict[Hashable, Any], *, buffering: bool
) -> Probe:
    """The plain twin of :func:`~sage_streams._codegen.join_probe.compile_probe`, same contract."""

    def probe(
        it: Iterator[Any], out: list[Any], mine: dict[Hashable, Any] | None
    ) -> tuple[int, Any, Exception | None, Exception | None]:
        hits = 0
        for item in it:
            try:
                key = key_func(item)
            except Exception as exc:
                return hits, item, exc, exc
            if key is None:
                return hits, item, none_key(item), None
            try:
                partners = theirs.get(key, MISSING)
            except Exception as exc:
                return hits, item, lookup_error(key, exc), exc
            if partners is not MISSING:
                hits += 1
                for partner in partners if type(partners) is Bucket else (partners,):
                    out.append((item, partner) if side == 0 else (partner, item))
            if buffering:
                assert mine is not None
                held = mine.get(key, MISSING)
                if held is MISSING:
                    mine[key] = item
                elif type(held) is Bucket:
                    held.append(item)  # in place: a hot key's bucket is not copied per item
                else:
                    mine[key] = Bucket((held, item))
        return hits, None, None, None

    return probe


def plain_run_loop(add: Callable[[Any, Any], Any] | None) -> Callable[..., tuple[Any, ...] | None]:
    """The plain twin of a :class:`~sage_streams._codegen.window_loops.RunLoop`'s function."""

    def run(
        triples: Iterator[tuple[Any, float, Any]],
        index: int,
        size: float,
        number_of: Callable[[float, float], int],
        due: dict[int, dict[Any, Any]],
        number: int,
        start: float,
        end: float,
        cells: dict[Any, Any],
    ) -> tuple[Any, ...] | None:
        for item, stamp, key in triples:
            if not start <= stamp < end:
                number = number_of(stamp, size)
                start, end = number * size, (number + 1) * size
                cells = due.setdefault(number, {})
            if key not in cells:
                return item, key, number, start, end, cells
            if add is None:
                cells[key].append(item)
            else:
                cells[key][index] = add(cells[key][index], item)
        return None

    return run
