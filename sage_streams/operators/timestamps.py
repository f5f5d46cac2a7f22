"""Reading an item's event time: a field name or a function, checked item by item.

A missing or bad timestamp is an error of its item, raised as
:class:`~sage_streams.operators.base.ItemError`, never of the whole graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeAlias

from sage_streams.errors import _short_repr
from sage_streams.operators.base import ItemError

__all__ = ["TimestampReader", "TimestampSpec", "timestamp_reader"]


TimestampSpec: TypeAlias = str | Callable[[Any], Any]
"""A field name, or a function of the item."""


TimestampReader: TypeAlias = Callable[[Any], float]
"""``item -> seconds``, raising :class:`ItemError` for a bad or missing timestamp."""


def timestamp_reader(spec: TimestampSpec) -> TimestampReader:
    """A function reading and validating the timestamp of an item according to ``spec``.

    The reader remembers whether it has seen naive or aware datetimes and refuses the other kind
    afterwards: mixing them would order events silently wrong.
    """
    if isinstance(spec, str):
        field = spec

        def extract(item: Any) -> Any:
            try:
                return item[field]
            except (KeyError, IndexError, TypeError) as exc:
                raise ItemError(item, KeyError(f"item has no timestamp field {field!r}")) from exc

    elif callable(spec):
        function = spec

        def extract(item: Any) -> Any:
            try:
                return function(item)
            except Exception as exc:
                raise ItemError(item, exc) from exc

    else:
        raise TypeError(f"timestamp must be a field name or a function, got {spec!r}")

    naive_seen: list[bool] = []  # empty until the first datetime decides the kind

    def read(item: Any) -> float:
        value = extract(item)
        # The common cases first: a finite float (x - x is 0.0 only when x is finite), an int.
        if type(value) is float and value - value == 0.0:
            return value
        return _checked(item, value)

    def _checked(item: Any, value: Any) -> float:
        if isinstance(value, datetime):
            return _datetime_seconds(item, value, naive_seen)
        if isinstance(value, bool) or not isinstance(value, int | float):
            message = f"timestamp must be a number or datetime, got {_short_repr(value)}"
            raise ItemError(item, TypeError(message))
        try:
            seconds = float(value)
        except OverflowError:
            raise ItemError(item, ValueError(f"timestamp must be finite, got {_short_repr(value)}")) from None
        if not math.isfinite(seconds):
            raise ItemError(item, ValueError(f"timestamp must be finite, got {value!r}"))
        return seconds

    return read


def _datetime_seconds(item: Any, value: datetime, naive_seen: list[bool]) -> float:
    naive = value.tzinfo is None or value.utcoffset() is None
    if not naive_seen:
        naive_seen.append(naive)
    elif naive_seen[0] != naive:
        kinds = ("naive", "timezone-aware") if naive_seen[0] else ("timezone-aware", "naive")
        raise ItemError(item, ValueError(f"timestamps mix {kinds[0]} and {kinds[1]} datetimes"))
    return (value.replace(tzinfo=UTC) if naive else value).timestamp()
