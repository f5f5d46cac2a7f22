"""Synchronization configurations: how inputs are aligned, validated when declared.

A frozen :class:`SyncConfig` is made by :func:`sync_config` from the arguments of
``ConnectedStreams.synchronize`` and validates itself; its :meth:`~SyncConfig.build` makes a
synchronizer of :mod:`sage_streams.operators.sync.state`, which runs it, as join and window
configs live apart from the state that runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

from sage_streams._typing import check_choice, check_positive_int, check_seconds
from sage_streams.operators.sync.state import EventSync, TimestampSync
from sage_streams.operators.timestamps import TimestampSpec, timestamp_reader

__all__ = ["SYNC_TYPES", "SyncConfig", "SyncType", "sync_config"]

SyncType: TypeAlias = Literal["timestamp", "event"]
"""How inputs are aligned: by timestamps within a tolerance, or at marker events."""

SYNC_TYPES: Final[tuple[str, ...]] = get_args(SyncType)


@dataclass(frozen=True)
class SyncConfig:
    """How two or more inputs are aligned, validated when made.

    ``tolerance`` and ``timestamp`` are used by ``"timestamp"`` synchronization only (only then is
    ``timestamp`` checked); ``sync_event`` is required by ``"event"`` and refused otherwise.
    :meth:`build` makes the synchronizer that runs it, one per run.

    Raises:
        ValueError: a value out of range, an unknown ``sync_type``, a missing ``sync_event``.
        TypeError: an argument of the wrong type.

    Example::

        SyncConfig(2, "event", sync_event="tick").build()  # an EventSync
    """

    n_inputs: int
    sync_type: SyncType = "timestamp"
    tolerance: float = 1.0
    timestamp: TimestampSpec = "timestamp"
    sync_event: Any = None
    max_buffered: int = 1000

    def __post_init__(self) -> None:
        if check_positive_int("n_inputs", self.n_inputs) < 2:
            raise ValueError(f"synchronization needs at least 2 inputs, got {self.n_inputs}")
        check_choice(self.sync_type, SYNC_TYPES, "sync_type")
        tolerance = check_seconds("tolerance", self.tolerance)
        check_positive_int("max_buffered", self.max_buffered)
        if self.sync_type == "event" and self.sync_event is None:
            raise ValueError(
                "event synchronization needs sync_event: a value matched against item['type'], "
                "or a predicate item -> bool"
            )
        if self.sync_type == "timestamp":
            if self.sync_event is not None:
                raise ValueError("sync_event is only used by sync_type='event'")
            timestamp_reader(self.timestamp)  # raises TypeError for a spec neither name nor function
        object.__setattr__(self, "tolerance", tolerance)

    def build(self) -> TimestampSync | EventSync:
        """A new synchronizer running this config (see :class:`TimestampSync` and
        :class:`EventSync` for the semantics)."""
        if self.sync_type == "timestamp":
            return TimestampSync(
                self.n_inputs,
                tolerance=self.tolerance,
                timestamp=self.timestamp,
                max_buffered=self.max_buffered,
            )
        return EventSync(self.n_inputs, sync_event=self.sync_event, max_buffered=self.max_buffered)


def sync_config(
    n_inputs: int,
    sync_type: str = "timestamp",
    tolerance: float = 1.0,
    *,
    timestamp: TimestampSpec = "timestamp",
    sync_event: Any = None,
    max_buffered: int = 1000,
) -> SyncConfig:
    """A :class:`SyncConfig` from the arguments of ``ConnectedStreams.synchronize``, validated
    by the config itself.

    Example::

        sync_config(3, "event", sync_event="tick").build()
    """
    return SyncConfig(n_inputs, sync_type, tolerance, timestamp, sync_event, max_buffered)  # type: ignore[arg-type]
