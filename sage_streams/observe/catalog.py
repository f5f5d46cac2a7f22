"""The metrics both exporters publish, defined once: name, kind, help, labels and how to read them.

Every metric is read from one :class:`~sage_streams.MetricsSnapshot` of an environment, taken
when a scraper (Prometheus) or a reader (OpenTelemetry) asks, so exporting costs nothing per
item. The names follow OpenMetrics: a counter is named without its ``_total`` suffix here
(``sage_records_in``) and its sample carries it (``sage_records_in_total``); the pipeline's
name is a label (``pipeline``), never part of a name, and no label ever holds an item's key.

Labels, besides ``pipeline`` on every metric:

- ``operator``: the operator's (or stream's) unique name in its graph; ``kind`` on
  ``sage_errors_total`` is the operator's kind (``map``, ``operator``, ...).
- ``edge``: the channel's name: ``"producer->consumer"``, ``"producer->consumer[i]"`` for input
  ``i`` of an operator of several inputs, ``"stream.inbox"`` for a push stream's inbox,
  ``"stream.reader"`` for an async source's feed.
- ``reason`` on ``sage_dropped_total``: ``"drop"`` or ``"drop_oldest"`` on a channel with that
  backpressure strategy (every item such a channel discards is the strategy's doing), else
  ``"error_policy"`` (a ``block`` channel only loses items that an error policy let go after a
  ``BackpressureTimeout``; a ``buffer`` channel those it could not read back).
- ``input`` on the watermark metrics: ``""``. A window holds one watermark over all of its
  inputs (the least of theirs), so there is nothing per input to show; the label is there so
  that a per-input watermark can be added without renaming a series.
- ``state``: the name of a ``StreamState`` (``name#2`` for a second state of that name).

Counters count the current (or last) run: a new run of the graph starts them from zero,
which Prometheus reads as a counter reset.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

from sage_streams.metrics import MetricsSnapshot

if TYPE_CHECKING:
    from sage_streams.api.environment import LocalEnvironment

__all__ = ["CATALOG", "Metric", "Sample", "drop_reasons", "missing_extra", "read", "snapshot"]

Sample: TypeAlias = tuple[tuple[str, ...], float]
"""The label values of one series (in the order of :attr:`Metric.labels`) and its value."""

SNAPSHOT_TIMEOUT = 5.0
"""The longest a scrape from another thread waits for the event loop of a running graph."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What the readers of one environment's metrics get: its snapshot and what else they need."""

    pipeline: str
    snapshot: MetricsSnapshot
    drop_reasons: dict[str, str]
    """The ``reason`` label of each channel's drops, by channel name (see :func:`drop_reasons`)."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric family: its OpenMetrics name, kind, help text, labels and reader.

    ``read`` yields the label values after ``pipeline`` (which every metric has first) and the
    value of each series, from one :class:`Reading`.
    """

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    labels: tuple[str, ...]
    read: Callable[[Reading], Iterator[Sample]]
    unit: str = ""
    """The OpenTelemetry unit (``s``, ``By``), or ``""``."""

    @property
    def sample_name(self) -> str:
        """The name of its samples: a counter's ends in ``_total``."""
        return f"{self.name}_total" if self.kind == "counter" else self.name


def missing_extra(module: str, package: str, extra: str) -> ImportError:
    """The error of an exporter whose client library is not installed, naming the extra."""
    return ImportError(f"{module} needs {package}: pip install 'sage-streams[{extra}]'")


def snapshot(env: LocalEnvironment) -> MetricsSnapshot:
    """``env.metrics()``, taken on the event loop of the graph's run when it is running.

    The runtime's counters are plain numbers the run's tasks update between two awaits, and
    taking a snapshot folds the counts of every chain into them: from another thread (an HTTP
    server's, an OpenTelemetry reader's) that would race the loop and lose counts. So a caller
    off the loop hands the read to the loop and waits for it (at most
    :data:`SNAPSHOT_TIMEOUT` seconds); on the loop, or with no run in progress, it reads at once.
    """
    plan = env.running_plan()
    if plan is None:
        return env.metrics()
    try:
        on_loop = asyncio.get_running_loop() is plan.loop
    except RuntimeError:
        on_loop = False
    if on_loop:
        return env.metrics()
    result: concurrent.futures.Future[MetricsSnapshot] = concurrent.futures.Future()

    def take() -> None:
        if result.set_running_or_notify_cancel():
            try:
                result.set_result(env.metrics())
            except BaseException as exc:
                result.set_exception(exc)

    try:
        plan.loop.call_soon_threadsafe(take)
    except RuntimeError:  # the loop has closed since: the run is over, nothing moves
        return env.metrics()
    try:
        return result.result(SNAPSHOT_TIMEOUT)
    except TimeoutError:
        result.cancel()
        raise TimeoutError(
            f"the event loop of environment {env.name!r} did not answer for its metrics within "
            f"{SNAPSHOT_TIMEOUT:g} s (is it blocked by code that does not await?)"
        ) from None


def drop_reasons(env: LocalEnvironment) -> dict[str, str]:
    """The ``reason`` of the drops of every channel whose strategy drops, by channel name.

    Only an operator's input channels can be configured (``configure_backpressure``); every
    other channel blocks, so what it loses is an error policy's doing (``"error_policy"``).
    """
    reasons: dict[str, str] = {}
    for node in env._nodes:
        config = node.channel_config
        if config is None or config.strategy not in ("drop", "drop_oldest"):
            continue
        for index, producer in enumerate(node.inputs):
            reasons[f"{producer.name}->{node.name}[{index}]"] = config.strategy
    return reasons


def read(env: LocalEnvironment) -> Reading:
    """One consistent reading of ``env``: its snapshot (see :func:`snapshot`) and drop reasons."""
    return Reading(env.name, snapshot(env), drop_reasons(env))


# -- the readers ---------------------------------------------------------------------------------


def _field(table: Literal["operators", "channels"], field: str) -> Callable[[Reading], Iterator[Sample]]:
    """``field`` of every operator's (or channel's) record, labelled with its name."""

    def samples(reading: Reading) -> Iterator[Sample]:
        for name, record in getattr(reading.snapshot, table).items():
            yield (name,), float(getattr(record, field))

    return samples


def _errors(reading: Reading) -> Iterator[Sample]:
    for name, op in reading.snapshot.operators.items():
        yield (name, op.kind), float(op.errors)


def _details(
    *keys: str, finite: bool = False, extra: tuple[str, ...] = ()
) -> Callable[[Reading], Iterator[Sample]]:
    """The first of ``keys`` in each operator's details that has it (absent: no series);
    ``finite`` leaves out infinite values (a window's watermark before its first item)."""

    def samples(reading: Reading) -> Iterator[Sample]:
        for name, op in reading.snapshot.operators.items():
            value = next((op.details[key] for key in keys if key in op.details), None)
            if value is None or (finite and not math.isfinite(value)):
                continue
            yield (name, *extra), value

    return samples


def _hit_ratio(reading: Reading) -> Iterator[Sample]:
    """A join's ``hit_rate``; a table join's ``hits / probes`` (0.0 before its first probe)."""
    for name, op in reading.snapshot.operators.items():
        details = op.details
        if "hit_rate" in details:
            yield (name,), details["hit_rate"]
        elif "table_rows" in details and "hits" in details:
            probes = details.get("probes", 0.0)
            yield (name,), details["hits"] / probes if probes else 0.0


def _dropped(reading: Reading) -> Iterator[Sample]:
    for name, stats in reading.snapshot.channels.items():
        yield (name, reading.drop_reasons.get(name, "error_policy")), float(stats.dropped)


def _states(reading: Reading) -> Iterator[Sample]:
    for name, size in reading.snapshot.states.items():
        yield (name,), float(size)


def _checkpoints(key: str) -> Callable[[Reading], Iterator[Sample]]:
    def samples(reading: Reading) -> Iterator[Sample]:
        if key in reading.snapshot.checkpoints:
            yield (), reading.snapshot.checkpoints[key]

    return samples


def _restarts(reading: Reading) -> Iterator[Sample]:
    yield (), float(reading.snapshot.restarts)


def _elapsed(reading: Reading) -> Iterator[Sample]:
    yield (), reading.snapshot.elapsed


OP = ("operator",)
EDGE = ("edge",)

CATALOG: tuple[Metric, ...] = (
    Metric(
        "sage_records_in",
        "counter",
        "Items an operator received (a source: read or given).",
        OP,
        _field("operators", "items_in"),
    ),
    Metric(
        "sage_records_out",
        "counter",
        "Items an operator passed downstream.",
        OP,
        _field("operators", "items_out"),
    ),
    Metric(
        "sage_errors",
        "counter",
        "Errors raised while processing items (each failed try).",
        ("operator", "kind"),
        _errors,
    ),
    Metric(
        "sage_retries", "counter", "Tries made again on a retry decision.", OP, _field("operators", "retries")
    ),
    Metric(
        "sage_dead_letters",
        "counter",
        "Items let go to the dead letters on a continue decision.",
        OP,
        _field("operators", "dead_letters"),
    ),
    Metric(
        "sage_channel_depth",
        "gauge",
        "Items queued in a channel's memory now.",
        EDGE,
        _field("channels", "depth"),
    ),
    Metric(
        "sage_channel_capacity", "gauge", "A channel's bound, in items.", EDGE, _field("channels", "capacity")
    ),
    Metric(
        "sage_channel_peak_depth",
        "gauge",
        "The largest depth a channel has had in this run.",
        EDGE,
        _field("channels", "peak"),
    ),
    Metric(
        "sage_channel_blocked_seconds",
        "counter",
        "Seconds producers waited for room in a channel.",
        EDGE,
        _field("channels", "blocked_seconds"),
        unit="s",
    ),
    Metric(
        "sage_dropped",
        "counter",
        "Items a channel discarded, by why (its strategy or an error policy).",
        ("edge", "reason"),
        _dropped,
    ),
    Metric(
        "sage_spilled",
        "counter",
        "Items a buffer channel spilled to its overflow store.",
        EDGE,
        _field("channels", "spilled"),
    ),
    Metric(
        "sage_channel_overflow",
        "gauge",
        "Items in a buffer channel's overflow store now.",
        EDGE,
        _field("channels", "overflow"),
    ),
    Metric(
        "sage_watermark_seconds",
        "gauge",
        "A window's event-time watermark (absent before its first).",
        ("operator", "input"),
        _details("watermark", finite=True, extra=("",)),
        unit="s",
    ),
    Metric(
        "sage_watermark_lag_seconds",
        "gauge",
        "How far a window's watermark trails the latest timestamp.",
        ("operator", "input"),
        _details("watermark_lag", extra=("",)),
        unit="s",
    ),
    Metric(
        "sage_late_records",
        "counter",
        "Items that arrived behind the watermark (windows, table joins).",
        OP,
        _details("late_items", "late_events"),
    ),
    Metric("sage_windows_open", "gauge", "Windows open now.", OP, _details("open_windows")),
    Metric(
        "sage_join_hit_ratio", "gauge", "The share of a join's probes that found a partner.", OP, _hit_ratio
    ),
    Metric("sage_state_bytes", "gauge", "Estimated size of a StreamState.", ("state",), _states, unit="By"),
    Metric(
        "sage_checkpoint_epoch", "gauge", "The last committed checkpoint epoch.", (), _checkpoints("epoch")
    ),
    Metric(
        "sage_checkpoint_duration_seconds",
        "gauge",
        "Seconds from the last committed epoch's start to its commit.",
        (),
        _checkpoints("duration"),
        unit="s",
    ),
    Metric(
        "sage_checkpoint_bytes",
        "gauge",
        "State bytes the last commit wrote (only what changed).",
        (),
        _checkpoints("bytes"),
        unit="By",
    ),
    Metric(
        "sage_checkpoints_committed",
        "counter",
        "Checkpoint epochs committed in this run.",
        (),
        _checkpoints("committed"),
    ),
    Metric(
        "sage_checkpoint_alignment_seconds",
        "gauge",
        "The longest an operator held inputs back to align an epoch of this run.",
        (),
        _checkpoints("alignment"),
        unit="s",
    ),
    Metric(
        "sage_restore_duration_seconds",
        "gauge",
        "Seconds the restore from checkpoints took at the start.",
        (),
        _checkpoints("restore_duration"),
        unit="s",
    ),
    Metric(
        "sage_restarts",
        "counter",
        "Runs rebuilt by the restart policy of running(restart=...).",
        (),
        _restarts,
    ),
    Metric(
        "sage_run_seconds",
        "gauge",
        "Seconds since the current run started, or the last run's duration.",
        (),
        _elapsed,
        unit="s",
    ),
)
"""Every metric, in the order the exporters publish them."""
