"""Metrics: frozen snapshots of what every operator and channel of a graph has done.

``env.metrics()`` reads counters that the runtime keeps per batch (never per item) and the
statistics record of every channel, so taking a snapshot costs nothing while the graph runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sage_streams.channel import ChannelStatistics

__all__ = ["MetricsSnapshot", "OperatorMetrics"]


@dataclass(frozen=True, slots=True)
class OperatorMetrics:
    """What one stream or operator has done.

    Attributes:
        name: the operator's unique name in its graph.
        kind: ``"map"``, ``"filter"``, ``"push"`` (a push stream), ``"pull"`` (a pull stream),
            ``"operator"`` (a window, join, ...), ``"aggregate"`` (a window's aggregates), ...
        items_in: items it received (for a source: items it read or was given).
        items_out: items it passed downstream (a sink passes none on).
        rate: ``items_in`` per second of the current or last run (0.0 before any run).
        details: operator-specific numbers: for a join ``probes``, ``matches``, ``misses``,
            ``hit_rate``, ``buffered_left``, ``buffered_right`` and their total ``buffered``
            (an arrival is a probe once the other side has had an item or has ended; see
            ``JoinStats``); for a table join ``table_rows``, ``probes``, ``hits``, ``misses``,
            ``buffered`` (and in event time ``versions``, ``held_events``, ``late_events``; see
            ``TableJoinStats``); for a window
            ``open_windows``, ``fired_windows``, ``late_items``, ``watermark`` and
            ``watermark_lag`` (how far the watermark trails the latest timestamp seen, never
            negative); for an operator with shared state ``state_bytes``; for one whose calls
            overlap (``concurrency``, ``timeout``, ``in_thread``) ``concurrency``,
            ``in_flight``, ``held``, ``completed`` (items whose call is done, with a result or
            a dead letter), ``timed_out``, ``latency_p50`` and ``latency_p99`` (seconds, over
            the last 1,024 calls).
        mode: how an operator runs, where it can run more than one way: a join ``"hash"``
            (it probes and buffers both inputs) or ``"lookup"`` (its other input ended with one
            item per key, so it is a lookup fused into the steps after it); a table join
            ``"table"``, or ``"lookup"`` once its table has ended (inner, processing time);
            an operator whose calls overlap ``"ordered"``, ``"unordered"`` or ``"key"``;
            ``None`` otherwise.
        errors: errors raised while processing its items (each failed try counts).
        retries: tries made again on a ``"retry"`` decision.
        dead_letters: items dropped on a ``"continue"`` decision (kept in ``errors()``).
    """

    name: str
    kind: str
    items_in: int
    items_out: int
    rate: float
    details: dict[str, float] = field(default_factory=dict)
    mode: str | None = None
    errors: int = 0
    retries: int = 0
    dead_letters: int = 0


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """A snapshot of a graph: per operator and per channel, keyed by name."""

    operators: dict[str, OperatorMetrics] = field(default_factory=dict)
    channels: dict[str, ChannelStatistics] = field(default_factory=dict)
    elapsed: float = 0.0
    """Seconds since the current run started, or the duration of the last run."""
    states: dict[str, int] = field(default_factory=dict)
    """Estimated size in bytes of every ``StreamState`` handed to an operator, by state name
    (``name#2``... when two states share a name)."""
    checkpoints: dict[str, float] = field(default_factory=dict)
    """With checkpoints on: ``epoch`` (the last committed), ``completed`` (the last epoch every
    task passed: one in which nothing changed writes nothing), ``committed`` (epochs committed in
    this run), ``duration`` (seconds from the last committed epoch's start to its commit),
    ``bytes`` (state bytes its commit wrote: only what changed), ``alignment`` (the longest an
    operator held inputs back to align an epoch of this run) and ``restore_duration``
    (seconds the restore at the start took); empty without checkpoints."""
    restarts: int = 0
