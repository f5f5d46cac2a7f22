"""Join configurations: what a join matches on, validated when the join is declared.

A frozen :class:`JoinConfig` is made by :func:`join_config` from the arguments of
``ConnectedStreams.join`` and validates itself; its :meth:`~JoinConfig.build` makes the
:class:`~sage_streams.operators.joins.state.JoinState` that runs it, one per run. Keeping the
config apart from the join's state follows the window configs: a bad argument fails where the
graph is built, and the state's module holds only the join itself. A
:class:`TableJoinConfig` (made by :func:`table_join_config` from the arguments of
``DataStream.join_table``) does the same for the
:class:`~sage_streams.operators.joins.table.TableJoinState`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

from sage_streams._typing import check_choice, check_seconds
from sage_streams.operators.joins.state import JoinState
from sage_streams.operators.joins.table import TableJoinState
from sage_streams.operators.timestamps import TimestampSpec

__all__ = [
    "JOIN_TYPES",
    "TABLE_JOIN_TYPES",
    "JoinConfig",
    "JoinType",
    "TableJoinConfig",
    "TableJoinType",
    "join_config",
    "table_join_config",
]

JoinType: TypeAlias = Literal["inner", "left", "right", "outer"]
"""Which unmatched items a join keeps: none, the left ones, the right ones, or both."""

JOIN_TYPES: Final[tuple[str, ...]] = get_args(JoinType)

TableJoinType: TypeAlias = Literal["inner", "left"]
"""What a table join does with an event that has no row: drops it, or keeps it with ``None``."""

TABLE_JOIN_TYPES: Final[tuple[str, ...]] = get_args(TableJoinType)


@dataclass(frozen=True)
class JoinConfig:
    """What a join matches on, validated when it is made.

    Keys come as a pair, one function per side (give the same one twice for both); a join needs
    keys, a condition, or both. ``within`` is in seconds of event time, read from each item with
    ``timestamp`` (a field name or a function, as for windows) only when ``within`` is set.

    Example::

        JoinConfig("outer", condition=lambda left, right: left["t"] == right["t"])
    """

    join_type: JoinType = "inner"
    left_key: Callable[[Any], Hashable] | None = None
    right_key: Callable[[Any], Hashable] | None = None
    condition: Callable[[Any, Any], bool] | None = None
    within: float | None = None
    timestamp: TimestampSpec = "timestamp"

    def __post_init__(self) -> None:
        check_choice(self.join_type, JOIN_TYPES, "join_type")
        for name in ("left_key", "right_key", "condition"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be a function, got {value!r}")
        if (self.left_key is None) != (self.right_key is None):
            raise ValueError("left_key and right_key come as a pair: give both or neither")
        if self.left_key is None and self.condition is None:
            raise ValueError("a join needs a key function, a condition, or both")
        _check_within(self.within)
        if not isinstance(self.timestamp, str) and not callable(self.timestamp):
            raise TypeError(f"timestamp must be a field name or a function, got {self.timestamp!r}")

    def build(self, *, inline: bool = False, codegen: bool = True) -> JoinState:
        """A new join state running this config; ``inline`` pastes a one-expression key function
        into its generated probe loops, ``codegen=False`` runs their plain twins."""
        return JoinState(
            join_type=self.join_type,
            keys=(self.left_key, self.right_key),
            condition=self.condition,
            within=self.within,
            timestamp=self.timestamp,
            inline=inline,
            codegen=codegen,
        )


def _check_within(within: object) -> None:
    if within is not None:
        check_seconds("within", within)


def join_config(
    join_type: JoinType = "inner",
    key_func: Any = None,
    condition: Callable[[Any, Any], bool] | None = None,
    *,
    within: float | None = None,
    timestamp: TimestampSpec = "timestamp",
) -> JoinConfig:
    """A :class:`JoinConfig` from the arguments of ``ConnectedStreams.join``.

    ``key_func`` is one function used for both sides, or a pair ``(left_key, right_key)`` as a
    tuple or list; ``None`` means no keys (then ``condition`` is required).

    Raises:
        TypeError: a ``key_func`` that is neither a function nor a pair of functions, or another
            argument of the wrong type.
        ValueError: an unknown ``join_type``, a bad ``within``, neither keys nor condition.

    Example::

        join_config("inner", (lambda a: a["user_id"], lambda p: p["id"]), within=60.0)
    """
    left_key, right_key = (None, None) if key_func is None else _key_pair(key_func, ("left_key", "right_key"))
    return JoinConfig(join_type, left_key, right_key, condition, within, timestamp)


def _key_pair(key_func: Any, names: tuple[str, str]) -> tuple[Callable[[Any], Hashable], ...]:
    """``key_func`` for both sides, or its two functions, named ``names`` in the errors."""
    if callable(key_func):
        return key_func, key_func
    pair = ", ".join(names)
    if isinstance(key_func, tuple | list) and len(key_func) == 2:
        if not all(callable(fn) for fn in key_func):
            raise TypeError(f"key_func pair must hold two functions ({pair}), got {key_func!r}")
        return tuple(key_func)
    raise TypeError(f"key_func must be a function or a pair of functions ({pair}), got {key_func!r}")


@dataclass(frozen=True)
class TableJoinConfig:
    """What a table join looks up, validated when it is made.

    ``event_key`` reads an event's key, ``row_key`` a row's; ``value`` makes the value kept for a
    row (``None``: the row itself; a value of ``None`` deletes the key). With ``timestamp`` (a
    field name or a function) the join is in event time. The semantics are in
    :mod:`sage_streams.operators.joins.table`.

    Example::

        TableJoinConfig(lambda event: event["user"], lambda row: row["id"], "left")
    """

    event_key: Callable[[Any], Hashable]
    row_key: Callable[[Any], Hashable]
    join_type: TableJoinType = "inner"
    value: Callable[[Any], Any] | None = None
    timestamp: TimestampSpec | None = None

    def __post_init__(self) -> None:
        check_choice(self.join_type, TABLE_JOIN_TYPES, "join_type")
        for name in ("event_key", "row_key"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name} must be a function, got {getattr(self, name)!r}")
        if self.value is not None and not callable(self.value):
            raise TypeError(f"value must be a function or None, got {self.value!r}")
        timestamp = self.timestamp
        if timestamp is not None and not isinstance(timestamp, str) and not callable(timestamp):
            raise TypeError(f"timestamp must be a field name, a function or None, got {timestamp!r}")

    def build(self, *, inline: bool = False, codegen: bool = True) -> TableJoinState:
        """A new, empty table join running this config (one per run); ``inline`` and
        ``codegen`` are those of :meth:`JoinConfig.build`, for its probe loop."""
        return TableJoinState(
            join_type=self.join_type,
            keys=(self.event_key, self.row_key),
            value=self.value,
            timestamp=self.timestamp,
            inline=inline,
            codegen=codegen,
        )


def table_join_config(
    join_type: TableJoinType = "inner",
    key_func: Any = None,
    *,
    value_func: Callable[[Any], Any] | None = None,
    timestamp: TimestampSpec | None = None,
) -> TableJoinConfig:
    """A :class:`TableJoinConfig` from the arguments of ``DataStream.join_table``.

    ``key_func`` is one function for events and rows, or a pair ``(event_key, row_key)``.

    Raises:
        TypeError: a ``key_func`` that is neither a function nor a pair of functions, or another
            argument of the wrong type.
        ValueError: an unknown ``join_type``, no ``key_func``.

    Example::

        table_join_config("inner", (lambda e: e["user_id"], lambda p: p["id"]), timestamp="ts")
    """
    if key_func is None:
        raise ValueError("a table join needs key_func: one function, or a pair (event_key, row_key)")
    event_key, row_key = _key_pair(key_func, ("event_key", "row_key"))
    return TableJoinConfig(event_key, row_key, join_type, value_func, timestamp)
