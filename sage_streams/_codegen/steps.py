"""What a fused chain is made of: its steps, the lookup a join hands it, and how it failed."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from sage_streams.functions import is_async_callable

__all__ = ["Failure", "Lookup", "Step", "StepKind"]


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
