"""Type variables and the named shapes of user functions.

Every user function may be a plain function or an ``async def`` (the runtime awaits what is
awaitable), and every place that takes one also takes the name of a registered function.
"""

from __future__ import annotations

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
