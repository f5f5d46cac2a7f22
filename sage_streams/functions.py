"""The registry of named functions (the seed's Functions API).

``@register_function`` records a function under its ``__name__`` (or a name you give); every API
that takes a function also takes a registered name, resolved when the graph is built so that a
misspelt name fails at once rather than in the middle of a run.

Example::

    @register_function
    def double(x):
        return 2 * x

    stream.map("double")
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

from sage_streams.errors import StreamError, UnknownNameError

__all__ = [
    "emitted",
    "get_function",
    "is_async_callable",
    "is_async_generator_function",
    "items_of",
    "register_function",
    "resolve_function",
    "window_results",
]

F = TypeVar("F", bound=Callable[..., Any])

_registry: dict[str, Callable[..., Any]] = {}


@overload
def register_function(fn: F, /) -> F: ...
@overload
def register_function(name: str, /) -> Callable[[F], F]: ...
def register_function(fn_or_name: F | str, /) -> F | Callable[[F], F]:
    """Record a function in the registry, as ``@register_function`` or ``@register_function("name")``.

    Registering a different function under a name already taken is an error; registering the
    same function again is allowed (module reloads do it).
    """
    if isinstance(fn_or_name, str):
        name = fn_or_name

        def decorator(fn: F) -> F:
            return _register(name, fn)

        return decorator
    if not callable(fn_or_name):
        raise TypeError(f"register_function takes a function or a name, got {fn_or_name!r}")
    return _register(getattr(fn_or_name, "__name__", repr(fn_or_name)), fn_or_name)


def _register(name: str, fn: F) -> F:
    if not name:
        raise ValueError("a registered function needs a non-empty name")
    if not callable(fn):
        raise TypeError(f"cannot register {fn!r} as {name!r}: it is not callable")
    existing = _registry.get(name)
    if existing is not None and existing is not fn:
        raise StreamError(f"a different function is already registered as {name!r}")
    _registry[name] = fn
    return fn


def get_function(name: str) -> Callable[..., Any]:
    """Return the function registered as ``name``.

    Raises:
        UnknownNameError: nothing is registered as ``name`` (the message lists what is); a
            :class:`LookupError`, rather than a bare ``KeyError`` whose message is only the name.
        TypeError: ``name`` is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"a registered function's name is a string, got {name!r}")
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "none"
        raise UnknownNameError(f"no function registered as {name!r} (registered: {known})") from None


def resolve_function(fn: Callable[..., Any] | str, role: str) -> Callable[..., Any]:
    """A callable for ``fn``: itself, or the registered function of that name.

    ``role`` says what the function is for, for the error message ("map function", ...).
    """
    if isinstance(fn, str):
        return get_function(fn)
    if not callable(fn):
        raise TypeError(f"{role} must be callable or a registered name, got {fn!r}")
    return fn


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


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns an awaitable (``async def``, partials, async ``__call__``)."""
    while hasattr(fn, "func"):  # functools.partial, possibly nested
        fn = fn.func
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - instances with an async __call__
    return not inspect.isfunction(fn) and call is not None and inspect.iscoroutinefunction(call)


def is_async_generator_function(fn: Callable[..., Any]) -> bool:
    while hasattr(fn, "func"):
        fn = fn.func
    return inspect.isasyncgenfunction(fn)
