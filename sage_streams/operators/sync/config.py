"""Synchronization configurations: how inputs are aligned, validated when declared.

A frozen :class:`SyncConfig` is made by :func:`sync_config` from the arguments of
``ConnectedStreams.synchronize``; the synchronizers of :mod:`sage_streams.operators.sync.state` run it, as
join and window configs live apart from the state that runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

from sage_streams._typing import check_choice, check_positive_int, check_seconds
from sage_streams.operators.timestamps import TimestampSpec, timestamp_reader

__all__ = ["SYNC_TYPES", "SyncConfig", "SyncType", "sync_config"]

SyncType: TypeAlias = Literal["timestamp", "event"]
"""How inputs are aligned: by timestamps within a tolerance, or at marker events."""

SYNC_TYPES: Final[tuple[str, ...]] = get_args(SyncType)


@dataclass(frozen=True)
class SyncConfig:
    """A validated synchronization configuration; build it with :func:`sync_config`."""

    n_inputs: int
    sync_type: SyncType = "timestamp"
    tolerance: float = 1.0
    timestamp: TimestampSpec = "timestamp"
    sync_event: Any = None
    max_buffered: int = 1000


def sync_config(
    n_inputs: int,
    sync_type: str = "timestamp",
    tolerance: float = 1.0,
    *,
    timestamp: TimestampSpec = "timestamp",
    sync_event: Any = None,
    max_buffered: int = 1000,
) -> SyncConfig:
    """Validate the arguments of a synchronization and return them as a :class:`SyncConfig`.

    ``tolerance`` and ``timestamp`` are used by ``"timestamp"`` synchronization only (only then is
    ``timestamp`` checked); ``sync_event`` is required by ``"event"`` and refused otherwise.

    Raises:
        ValueError: a value out of range, an unknown ``sync_type``, a missing ``sync_event``.
        TypeError: an argument of the wrong type.
    """
    if check_positive_int("n_inputs", n_inputs) < 2:
        raise ValueError(f"synchronization needs at least 2 inputs, got {n_inputs}")
    check_choice(sync_type, SYNC_TYPES, "sync_type")
    check_seconds("tolerance", tolerance)
    check_positive_int("max_buffered", max_buffered)
    if sync_type == "event" and sync_event is None:
        raise ValueError(
            "event synchronization needs sync_event: a value matched against item['type'], "
            "or a predicate item -> bool"
        )
    if sync_type == "timestamp":
        if sync_event is not None:
            raise ValueError("sync_event is only used by sync_type='event'")
        timestamp_reader(timestamp)  # raises TypeError for a spec that is neither name nor function
    return SyncConfig(n_inputs, sync_type, float(tolerance), timestamp, sync_event, max_buffered)  # type: ignore[arg-type]
