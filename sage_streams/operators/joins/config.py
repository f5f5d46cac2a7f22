"""Join configurations: what a join matches on, validated when the join is declared.

A frozen :class:`JoinConfig` is made by :func:`join_config` from the arguments of
``ConnectedStreams.join`` and validates itself; its :meth:`~JoinConfig.build` makes the
:class:`~sage_streams.operators.joins.state.JoinState` that runs it, one per run. Keeping the
config apart from the join's state follows the window configs: a bad argument fails where the
graph is built, and the state's module holds only the join itself.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

from sage_streams._typing import check_choice, check_seconds
from sage_streams.operators.joins.state import JoinState
from sage_streams.operators.timestamps import TimestampSpec

__all__ = ["JOIN_TYPES", "JoinConfig", "JoinType", "join_config"]

JoinType: TypeAlias = Literal["inner", "left", "right", "outer"]
"""Which unmatched items a join keeps: none, the left ones, the right ones, or both."""

JOIN_TYPES: Final[tuple[str, ...]] = get_args(JoinType)


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
    left_key: Callable[[Any], Hashable] | None
    if key_func is None:
        left_key = right_key = None
    elif callable(key_func):
        left_key = right_key = key_func
    elif isinstance(key_func, tuple | list) and len(key_func) == 2:
        left_key, right_key = key_func
        if not (callable(left_key) and callable(right_key)):
            raise TypeError(f"key_func pair must hold two functions (left_key, right_key), got {key_func!r}")
    else:
        raise TypeError(
            f"key_func must be a function or a pair of functions (left_key, right_key), got {key_func!r}"
        )
    return JoinConfig(join_type, left_key, right_key, condition, within, timestamp)
