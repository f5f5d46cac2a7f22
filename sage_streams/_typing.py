"""Type variables and the named shapes of user functions.

Every user function may be a plain function or an ``async def`` (the runtime awaits what is
awaitable), and every place that takes one also takes the name of a registered function.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any, Literal, TypeAlias, TypedDict, TypeVar

from sage_streams.errors import UnknownNameError

T = TypeVar("T")
"""The items of a stream."""
R = TypeVar("R")
"""The items a user function makes of them (``map``, ``flat_map``)."""

UserFunction: TypeAlias = Callable[..., Any] | str
"""A plain or ``async`` function, or the name it was registered under."""

Source: TypeAlias = Iterable[Any] | AsyncIterable[Any] | Callable[[], AsyncIterable[Any]]
"""What a pull stream reads: an iterable, an async iterable, or an async generator function."""

Ordering: TypeAlias = bool | Literal["key"]
"""The order results of overlapping calls leave in: ``True`` (input order), ``False``
(completion order) or ``"key"`` (one key's calls one at a time, in input order)."""


class CallOptions(TypedDict, total=False):
    """How ``map``, ``filter``, ``flat_map`` and ``sink`` call their function (see
    :mod:`sage_streams.operators.calls.config`)."""

    concurrency: int
    ordered: Ordering
    timeout: float | None
    in_thread: bool
    key_func: Callable[[Any], Any] | str | None


CALL_OPTIONS: frozenset[str] = CallOptions.__optional_keys__
"""The names of the call options (``windowed.process`` takes them out of ``fn``'s kwargs)."""


def check_choice(value: object, choices: tuple[str, ...], what: str) -> None:
    """Refuse a mode that is not one of ``choices`` with a message listing the valid ones.

    Modes are ``Literal`` aliases; ``choices`` is their ``get_args``. A value that is not a
    string is a ``TypeError``; a string that is not a choice an :class:`UnknownNameError` (a
    ``LookupError`` and a ``ValueError``).
    """
    if value in choices:
        return
    valid = ", ".join(repr(choice) for choice in choices)
    if not isinstance(value, str):
        raise TypeError(f"{what} must be one of {valid}, got {value!r}")
    raise UnknownNameError(f"unknown {what} {value!r}; expected one of {valid}")


def check_seconds(name: str, value: object, *, allow_zero: bool = True, why: str = "") -> float:
    """``value`` as a float if it is a finite number of seconds, ``>= 0`` (or ``> 0`` without
    ``allow_zero``); else a ``TypeError`` (not a number) or ``ValueError`` naming the argument,
    followed by ``why`` when given."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}" + (f": {why}" if why else ""))
    return float(value)


def check_positive_int(name: str, value: object, *, why: str = "") -> int:
    """``value`` if it is an ``int`` ``>= 1``; else a ``TypeError`` (not an int: ``bool`` and
    ``1.0`` are refused too, a count is never a flag or a float) or a ``ValueError`` naming the
    argument, followed by ``why`` when given. The one check of buffer sizes, batch sizes and
    other counts, as :func:`check_seconds` is for durations."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}" + (f": {why}" if why else ""))
    return value
