"""What a chain of stateless steps is made of, what it returns, and how it failed.

A chain runs one batch through its steps and returns ``(outputs, counters)``: one list per
emission point, and counters :meth:`StepChain.counts` turns into per-step metrics. Two
implementations keep this contract: the generated loop (:class:`~sage_streams._codegen.chain.FusedChain`)
and its interpreted twin (:class:`~sage_streams._codegen.plain.PlainChain`), the oracle the tests
hold the generated one to. When a step raises, the chain itself records where (:meth:`StepChain.record`)
before the error goes on, so that nothing reads a frame to explain a failure.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeAlias

from sage_streams.functions import is_async_callable

__all__ = ["COUNTED", "Failure", "Lookup", "Step", "StepChain", "StepKind"]


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


@dataclass(frozen=True, slots=True)
class Failure:
    """Where a fused chain failed: the step (or -1 for none) and the item it was given.

    For a resumable chain also what it had done: the partial ``outputs`` (one list per point),
    the ``entries`` per step, and ``pending``: per enclosing flat_map step, from the innermost
    out, the iterator over its results not yet processed. A chain of several loops may also
    have items ``ahead`` of the failed one, which passed its step: ``(step, items)`` to run from
    ``step`` on before anything else.
    """

    step: int
    item: Any
    consumed: int
    outputs: tuple[list[Any], ...] = ()
    entries: tuple[int, ...] = ()
    pending: tuple[tuple[int, Iterator[Any]], ...] = ()
    ahead: tuple[tuple[int, Iterator[Any]], ...] = ()


StepKind: TypeAlias = Literal["map", "filter", "flat_map", "key_by", "sink", "lookup"]


COUNTED = frozenset({"filter", "flat_map", "lookup"})
"""Steps whose output count differs from their input count, so they keep a counter."""


class StepChain(ABC):
    """What every chain of ``steps`` shares: its emission points, counters and failure record.

    Point ``0`` is the chain's input, point ``len(steps)`` its output; a sink step emits nothing.
    A chain's counters are, per step in :attr:`counted`, the items it rejected (a filter, a
    lookup's misses) or produced (a flat_map); a *resumable* chain (one under an error handler)
    instead counts the items entering each step, and the items reaching the end.

    Counting costs an add per item, so one count is left to be derived: when the chain emits
    its last point and only maps or key_bys follow its last counted step, that step's output
    is the last point's length (:attr:`derived`; ``derive=False`` counts every step).
    """

    inlined: Mapping[int, Any] = {}
    """The steps whose code was pasted in, by index (none, unless generated)."""

    def __init__(
        self, steps: Sequence[Step], points: Sequence[int], *, resumable: bool, derive: bool = True
    ) -> None:
        self.steps = tuple(steps)
        self.resumable = resumable
        self.points = tuple(sorted(set(points)))
        n = len(self.steps)
        if any(not 0 <= k <= n for k in self.points):
            raise ValueError(f"emission points {self.points} outside 0..{n}")
        self.is_async = any(step.is_async for step in self.steps)
        counted = [i for i, step in enumerate(self.steps) if step.kind in COUNTED]
        self.derived: int | None = None
        derivable = derive and counted and not resumable and n in self.points
        if derivable and all(step.kind in ("map", "key_by") for step in self.steps[counted[-1] + 1 :]):
            self.derived = counted.pop()
        self.counted = tuple(counted)
        """The steps whose counts the chain returns (not :attr:`derived`)."""
        self._failed: tuple[BaseException, Failure] | None = None

    @abstractmethod
    def __call__(self, it: Iterator[Any]) -> Any:
        """Run over ``it``: ``(outputs, counters)``, or a coroutine of them if a step is async."""

    def _settled(self, run: Coroutine[Any, Any, Any]) -> Any:
        """``run`` itself when a step is async; else its result, for it never awaits."""
        if self.is_async:
            return run
        try:  # no step awaits: the coroutine ends at its first step
            run.send(None)
        except StopIteration as done:
            return done.value
        raise AssertionError("a chain of sync steps awaited")  # pragma: no cover

    def record(self, error: BaseException, failure: Failure) -> None:
        """Keep where ``error`` happened, for :meth:`explain`: called by the chain's own loop."""
        self._failed = (error, failure)

    def explain(self, error: BaseException, batch_size: int, it: Iterator[Any]) -> Failure:
        """The failure the chain recorded for ``error`` (step ``-1`` if it recorded none).

        ``it`` is the iterator the chain was consuming: a list iterator stands just past the
        item that was being processed, which gives how many items the chain had consumed.
        """
        consumed = batch_size - it.__length_hint__()  # type: ignore[attr-defined]
        failed, self._failed = self._failed, None
        if failed is None or failed[0] is not error:
            return Failure(-1, None, consumed)
        return replace(failed[1], consumed=consumed)

    def counts(self, consumed: int, counters: Sequence[int], produced: int) -> list[tuple[int, int]]:
        """``(items_in, items_out)`` per step of a chain that is not resumable.

        Args:
            consumed: items the chain took from its input.
            counters: what the chain returned (filter rejects, flat_map outputs).
            produced: items at the last point (the derived step's output).
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
