"""Type variables and the named shapes of user functions.

Every user function may be a plain function or an ``async def`` (the runtime awaits what is
awaitable), and every place that takes one also takes the name of a registered function.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any, TypeAlias, TypeVar

T = TypeVar("T")

UserFunction: TypeAlias = Callable[..., Any] | str
"""A plain or ``async`` function, or the name it was registered under."""

Source: TypeAlias = Iterable[Any] | AsyncIterable[Any] | Callable[[], AsyncIterable[Any]]
"""What a pull stream reads: an iterable, an async iterable, or an async generator function."""


def check_choice(value: object, choices: tuple[str, ...], what: str) -> None:
    """Refuse a mode that is not one of ``choices`` with a message listing the valid ones.

    Modes are ``Literal`` aliases; ``choices`` is their ``get_args``.
    """
    if value not in choices:
        valid = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"unknown {what} {value!r}; expected one of {valid}")


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
