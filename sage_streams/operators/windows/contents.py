"""What a window holds per input: its items, or an accumulator folded from them.

``process`` hands a window function every item of a window, so a window keeps them, per input,
in arrival order (:class:`ItemLists`). ``aggregate`` needs only a fold of them, as Flink's
``AggregateFunction`` and Bytewax's ``fold_window`` do: each item is folded into its window's
accumulator when it arrives (:class:`Accumulators`), so that nothing is stored, and nothing is
walked again when the window fires. A keyed aggregation over many windows gains most: a window's
items, stored as they arrive, lie scattered in memory among those of the other keys.

:class:`~sage_streams.operators.windows.state.WindowState` keeps a window's contents as a list with one entry
per input, and asks either kind for the same few things: empty contents, an item folded in, the
contents of merged sessions, and what a fired window carries. Folding computes the new entry and
leaves storing it to the caller, so that an ``add`` or ``merge`` that raises leaves no trace.

Example::

    sums = Accumulators(lambda total, item: total + item, initial=0)
    contents = sums.empty(inputs=1)  # [0]
    contents[0] = sums.folded(contents[0], 5, seq=0)  # [5]
    sums.fired(contents)  # (5,)
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Callable, Sequence
from functools import reduce
from typing import Any, TypeAlias

from sage_streams._codegen import RunLoop, run_loop
from sage_streams.functions import is_async_callable

__all__ = ["Accumulators", "ItemLists", "WindowContents"]


class ItemLists:
    """Per input, the window's items in arrival order.

    ``sequenced`` (sessions): items are held as ``(arrival number, item)`` pairs, so that the
    sessions an item bridges merge back into arrival order.
    """

    __slots__ = ("codegen", "sequenced")

    def __init__(self, *, sequenced: bool = False, codegen: bool = True) -> None:
        self.sequenced = sequenced
        self.codegen = codegen

    def empty(self, inputs: int) -> list[Any]:
        return [[] for _ in range(inputs)]

    def folded(self, held: list[Any], item: Any, seq: int) -> list[Any]:
        held.append((seq, item) if self.sequenced else item)  # cannot fail: stored at once
        return held

    def merged(self, contents: Sequence[list[Any]]) -> list[Any]:
        """The contents of sessions merged into one, each input's items in arrival order."""
        return [list(heapq.merge(*held)) for held in zip(*contents, strict=True)]

    def fired(self, contents: list[Any]) -> tuple[Any, ...]:
        """Per input, a tuple of its items."""
        if self.sequenced:
            return tuple(tuple(item for _, item in held) for held in contents)
        return tuple(tuple(held) for held in contents)

    def copied(self, contents: Sequence[Any]) -> list[Any]:
        """Contents with lists of their own, sharing the items: for a checkpoint, and back."""
        return [list(held) for held in contents]

    def cell(self, contents: list[Any], index: int) -> Any:
        """What :attr:`run` puts input ``index``'s items in: that input's list."""
        return contents[index]

    @property
    def run(self) -> RunLoop:
        """The loop appending runs of items to their tumbling windows."""
        return run_loop(codegen=self.codegen)


class Accumulators:
    """Per input, an accumulator: ``add(accumulator, item)`` folds each item in as it arrives.

    ``initial`` is every window's starting accumulator for each input, or a function of no
    arguments making one (called for each new window and input: a fresh list, say, where the
    accumulator is changed in place). ``merge(earlier, later)`` combines the accumulators of two
    sessions that an item bridges, the earlier session's first (three sessions merge as
    ``merge(merge(first, second), third)``); then the bridging item is folded into the result.
    ``add`` and ``merge`` must be plain functions: they run inside the window operator, item by
    item, where nothing can be awaited. With ``inline``, an ``add`` of one expression is pasted
    into the loop for tumbling windows (:mod:`sage_streams._codegen.window_loops`).

    An ``add`` that raises leaves the accumulator as it was when it returns a new value (numbers,
    tuples, frozen records); one that changes a mutable accumulator in place must raise before it
    changes anything, or the change stays.
    """

    __slots__ = ("_run", "add", "codegen", "initial", "inline", "merge")

    def __init__(
        self,
        add: Callable[[Any, Any], Any],
        initial: Any,
        merge: Callable[[Any, Any], Any] | None = None,
        *,
        inline: bool = False,
        codegen: bool = True,
    ) -> None:
        if not callable(add):
            raise TypeError(f"add must be callable, got {add!r}")
        if merge is not None and not callable(merge):
            raise TypeError(f"merge must be callable or None, got {merge!r}")
        for role, function in (("add", add), ("merge", merge), ("initial", initial)):
            if callable(function) and is_async_callable(function):
                raise TypeError(
                    f"{role} must be a plain function, not async: the window operator calls it as"
                    f" items arrive, where nothing is awaited (got {function!r})"
                )
        self.add = add
        self.initial = initial
        self.merge = merge
        self.inline = inline
        self.codegen = codegen
        self._run: RunLoop | None = None

    def compiled(self, inline: bool, codegen: bool) -> Accumulators:
        """The same accumulators, with ``add`` pasted into the loop for tumbling windows or not,
        and that loop generated or its plain twin."""
        return Accumulators(self.add, self.initial, self.merge, inline=inline, codegen=codegen)

    def empty(self, inputs: int) -> list[Any]:
        initial = self.initial
        return [initial() if callable(initial) else initial for _ in range(inputs)]

    def folded(self, held: Any, item: Any, seq: int) -> Any:
        return self.add(held, item)

    def merged(self, contents: Sequence[list[Any]]) -> list[Any]:
        """The contents of sessions merged into one: per input, ``merge`` from the earliest on."""
        if self.merge is None:
            raise TypeError("sessions cannot be merged without a merge function")
        return [reduce(self.merge, held) for held in zip(*contents, strict=True)]

    def fired(self, contents: list[Any]) -> tuple[Any, ...]:
        """Per input, its accumulator."""
        return tuple(contents)

    def copied(self, contents: Sequence[Any]) -> list[Any]:
        """Contents of their own: for a checkpoint, and back. With a function for ``initial``
        the accumulators may change in place, so each is copied too (one level deep)."""
        if callable(self.initial):
            return [copy.copy(accumulator) for accumulator in contents]
        return list(contents)

    def cell(self, contents: list[Any], index: int) -> Any:
        """What :attr:`run` folds input ``index``'s items into: the list of accumulators."""
        return contents

    @property
    def run(self) -> RunLoop:
        """The loop folding runs of items into their tumbling windows, made when first needed."""
        if self._run is None:
            self._run = run_loop(self.add, inline=self.inline, codegen=self.codegen)
        return self._run


WindowContents: TypeAlias = ItemLists | Accumulators
"""Either kind of window contents."""
