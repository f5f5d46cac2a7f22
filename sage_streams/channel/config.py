"""How a channel is built (bound, strategy, timeout, codec) and what it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, get_args

from sage_streams._typing import check_choice
from sage_streams.channel.overflow import Codec

__all__ = ["STRATEGIES", "ChannelConfig", "ChannelStatistics", "Strategy", "validate_strategy"]

Strategy: TypeAlias = Literal["block", "drop", "drop_oldest", "buffer"]
"""What a producer does when it meets a full channel."""

STRATEGIES: Final[tuple[str, ...]] = get_args(Strategy)


@dataclass(frozen=True, slots=True)
class ChannelStatistics:
    """A snapshot of one channel, as read by the metrics.

    Attributes:
        name: the channel's name (``"producer->consumer"`` in a graph).
        depth: items queued in memory now.
        capacity: the bound, in items.
        peak: the largest depth seen.
        dropped: items discarded by ``"drop"``/``"drop_oldest"``, or given up by an error policy
            (:meth:`Sender.discard`, e.g. after a ``BackpressureTimeout``).
        blocked_seconds: total time producers spent waiting for room.
        open_senders: sender ends not yet closed.
        receiver_open: whether the receiving end is still open.
        spilled: items ever spilled to the overflow store (``"buffer"`` only).
        overflow: items in the overflow store now (``"buffer"`` only).
    """

    name: str
    depth: int
    capacity: int
    peak: int
    dropped: int
    blocked_seconds: float
    open_senders: int
    receiver_open: bool
    spilled: int = 0
    overflow: int = 0


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """How to build a channel: its bound, strategy, ``block`` timeout and ``buffer`` codec."""

    capacity: int
    strategy: Strategy = "block"
    timeout: float | None = None
    codec: str | Codec = "pickle"


def validate_strategy(strategy: str) -> Strategy:
    """Return ``strategy`` if it is a known backpressure strategy, else raise ``ValueError``."""
    check_choice(strategy, STRATEGIES, "backpressure strategy")
    return strategy  # type: ignore[return-value]
