"""The return conventions of user functions that emit (process, window functions).

For ``process``: a list, tuple or generator emits each element; ``None`` emits nothing; any
other value is emitted as one item (a dict, a set, a string: one item each). An ``async``
function's result is awaited first, and an async generator is drained.

For window functions the contract says "one result per window (or a list for several, or
None)": a list or a generator gives several results, and a tuple is one result, so that
``return (key, total)`` emits that pair.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Sequence
from typing import Any

__all__ = ["emitted", "items_of", "window_results"]


def items_of(result: Any) -> Sequence[Any]:
    """The items a synchronous result stands for."""
    if result is None:
        return ()
    if isinstance(result, list | tuple):
        return result
    if isinstance(result, types.GeneratorType):
        return list(result)
    return (result,)


async def emitted(result: Any) -> Sequence[Any]:
    """The items a result stands for, awaiting it or draining an async generator first."""
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, types.AsyncGeneratorType):
        return [item async for item in result]
    return items_of(result)


def window_results(result: Any) -> Sequence[Any]:
    """The results of one window function call: a tuple is one result."""
    if isinstance(result, tuple):
        return (result,)
    return items_of(result)
