"""What a join's lookups share, generated or plain: buckets, the missing mark, key errors."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any, Final

from sage_streams.errors import _short_repr

__all__ = ["MISSING", "Bucket", "Probe", "lookup_error", "none_key"]


class Bucket(list[Any]):
    """Two or more buffered items of one key, in arrival order."""

    __slots__ = ()


MISSING: Final = object()
"""What a lookup of a key with no buffered item returns (``None`` may be an item)."""

Probe = Callable[
    [Iterator[Any], list[Any], dict[Hashable, Any] | None],
    tuple[int, Any, Exception | None, Exception | None],
]
"""``probe(items, out, mine) -> (hits, failed_item, error, cause)``: see ``compile_probe``."""


def lookup_error(key: Any, exc: Exception) -> Exception:
    """The error for a key that failed a dict lookup: unhashable, or its own ``__eq__`` raised."""
    try:
        hash(key)
    except TypeError:
        error = TypeError(f"key function returned an unhashable value {_short_repr(key)}")
        error.__cause__ = exc
        return error
    return exc


def none_key(item: Any) -> ValueError:
    """The error for an item whose key function returned ``None``."""
    return ValueError(f"key function returned None for item {_short_repr(item)}; None keys never join")
