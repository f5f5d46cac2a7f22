"""One run's checkpoints: epochs triggered, barriers followed, snapshots gathered and committed.

Every ``interval`` seconds of the environment's clock the :class:`Checkpointer` starts epoch
``e`` (or, if epoch ``e - 1`` is still on its way then, an interval after it is through): it
rings every source head, which puts ``Barrier(e)`` in band at its next batch boundary
and reports its position (what it had given out before the barrier). The barrier travels with
the data: a chain passes it on after the batches before it; an operator of several inputs holds
each input whose barrier came until every open input's has, then snapshots its state, reports it
and passes the barrier on (``OperatorHead``); an operator whose calls overlap lets it pass once
every call before it has left (``CallHead``). When every chain has passed ``Barrier(e)`` (or
ended), epoch ``e`` is complete; epochs commit in order, each in one store transaction holding
the state entries that changed since the last commit, every source's position and (later) the
sinks' records. An epoch in which nothing changed writes nothing.

A chain that ends has nothing more to pass: it is no longer waited for, and an operator's state
at its end (it ended because all its inputs did, so everything it read came before every later
barrier) stands for it in the epochs after. Once every chain has ended, a last epoch commits
what is left, so a finished run's store says so.

Snapshots are encoded when they are taken (the operator goes on changing its state at once),
and compared with what the store holds, so a commit writes only what changed.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio

from sage_streams._runtime.failures import OperatorFailure
from sage_streams.checkpoint import Checkpoint, CheckpointStore, StateCodec, codec_label
from sage_streams.connectors import AcknowledgingSource, TransactionalSink
from sage_streams.connectors.ingest import IngestLog
from sage_streams.errors import CheckpointError
from sage_streams.time import Clock, TimerHandle

if TYPE_CHECKING:
    from sage_streams._graph.node import Node

__all__ = [
    "STATE_ENTRY",
    "CheckpointStats",
    "Checkpointer",
    "Participant",
    "close_sink",
    "paused_gc",
    "state_entries",
]


class Participant(Protocol):
    """A task the checkpoints wait for: one that passes every barrier or ends."""


class _Ringable(Protocol):
    def ring(self) -> None:
        """A new epoch has started: put its barrier in band at the next batch boundary."""


@dataclass(slots=True)
class _Epoch:
    """A triggered epoch: who it still waits for, and what has been reported for it."""

    epoch: int
    started: float
    waiting: set[Participant]
    states: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    gone: dict[str, list[bytes]] = field(default_factory=dict)
    """Of a state reported as its changes: the keys of the entries gone since its last report."""
    positions: dict[str, bytes] = field(default_factory=dict)
    sinks: dict[str, bytes] = field(default_factory=dict)
    alignment: float = 0.0
    """The longest an operator held an input back for this epoch's barriers, in seconds."""


@dataclass(slots=True)
class CheckpointStats:
    """What the checkpoints of a run did, for ``env.metrics()``."""

    epoch: int = 0
    """The last committed epoch."""
    completed: int = 0
    """The last epoch every task passed (one in which nothing changed is not written)."""
    committed: int = 0
    """Epochs committed in this run."""
    duration: float = 0.0
    """Seconds from the trigger of the last committed epoch to its commit."""
    bytes_written: int = 0
    """Bytes of state entries written by the last commit."""
    alignment: float = 0.0
    """The longest an operator held inputs back to align an epoch of this run (seconds)."""
    restore_duration: float = 0.0
    """Seconds the restore at the start of this run took (0.0 for none)."""


class Checkpointer:
    """Triggers epochs, gathers their reports, and commits them to ``store`` in order."""

    def __init__(
        self, job: str, store: CheckpointStore, codec: StateCodec, *, interval: float, clock: Clock
    ) -> None:
        self.job = job
        self.store = store
        self.codec = codec
        self.interval = interval
        self.clock = clock
        self.stats = CheckpointStats()
        self.restored: Checkpoint | None = None
        self.epoch = 0
        """The last epoch triggered."""
        self._participants: set[Participant] = set()
        self._sources: list[_Ringable] = []
        self._open: dict[int, _Epoch] = {}
        self._held: dict[str, dict[bytes, bytes]] = {}
        """The encoded entries the store holds, per state name (what a commit compares with)."""
        self._held_positions: dict[str, bytes] = {}
        self._held_sinks: dict[str, bytes] = {}
        self._sinks: dict[str, TransactionalSink] = {}
        self._logs: dict[str, IngestLog] = {}
        self._acknowledgers: dict[str, AcknowledgingSource] = {}
        self._acked: dict[str, bytes] = {}
        """The encoded position each acknowledging source was last told of."""
        self._final_sinks: dict[str, bytes] = {}
        self._final_states: dict[str, dict[bytes, bytes]] = {}
        self._final_positions: dict[str, bytes] = {}
        self._bell = anyio.Event()
        self._ended = False
        self._timer: TimerHandle | None = None
        self._overdue = False
        """An epoch was due while the last was still on its way."""

    # -- the run's shape ----------------------------------------------------------------

    def join(self, participant: Participant) -> None:
        """``participant`` takes part in every epoch until it ends."""
        self._participants.add(participant)

    def add_source(self, source: _Ringable) -> None:
        self._sources.append(source)

    async def open(self) -> Checkpoint | None:
        """Open the store and read the last committed epoch, if any."""
        start = time.perf_counter()
        restored = await self.store.open(self.job, codec_label(self.codec))
        if restored is not None:
            self.restored = restored
            self.epoch = self.stats.epoch = restored.epoch
            self._held = {name: dict(entries) for name, entries in restored.states.items()}
            self._held_positions = dict(restored.positions)
            self._held_sinks = dict(restored.sinks)
            self.stats.restore_duration = time.perf_counter() - start
        return restored

    def restored_entries(self, name: str) -> dict[Hashable, Any] | None:
        """The decoded state entries of ``name`` in the restored epoch, or ``None``."""
        if self.restored is None or name not in self.restored.states:
            return None
        entries = self.restored.states[name]
        many = getattr(self.codec, "loads_many", None)
        if many is None:
            loads = self.codec.loads
            return {loads(key): loads(value) for key, value in entries.items()}
        return dict(zip(many(list(entries)), many(list(entries.values())), strict=True))

    def restored_sink(self, name: str) -> tuple[int | None, Any]:
        """The restored epoch and sink ``name``'s record in it; ``(None, None)`` if none."""
        if self.restored is None or name not in self.restored.sinks:
            return None, None
        return self.restored.epoch, self.codec.loads(self.restored.sinks[name])

    def add_log(self, name: str, log: IngestLog) -> None:
        """``log``, the source ``name``, is trimmed to each position an epoch commits."""
        self._logs[name] = log

    def add_acknowledger(self, name: str, source: AcknowledgingSource) -> None:
        """``source`` (named ``name``) acknowledges each position an epoch commits for it."""
        self._acknowledgers[name] = source

    def add_sink(self, name: str, sink: TransactionalSink) -> None:
        """``sink`` is committed after every epoch the store commits, and closed at the end."""
        self._sinks[name] = sink

    async def close_sinks(self, completed: bool) -> None:
        """Close every sink (the run has ended, however)."""
        sinks, self._sinks = self._sinks, {}
        for name, sink in sinks.items():
            await close_sink(name, sink, completed)

    def restored_position(self, name: str) -> Any:
        """The decoded position of source ``name`` in the restored epoch, or ``None``."""
        if self.restored is None or name not in self.restored.positions:
            return None
        return self.codec.loads(self.restored.positions[name])

    # -- reports --------------------------------------------------------------------------

    def trigger(self) -> int:
        """Start the next epoch: every source puts its barrier in band."""
        self.epoch += 1
        self._open[self.epoch] = _Epoch(self.epoch, self.clock.now(), set(self._participants))
        for source in self._sources:
            source.ring()
        return self.epoch

    def report_state(
        self, epoch: int, name: str, entries: Mapping[Hashable, Any], gone: Sequence[Hashable] | None = None
    ) -> None:
        """The state of operator ``name`` as of ``Barrier(epoch)``, encoded now: all its
        entries, or with ``gone``, those that changed since its last report and the keys of
        those gone since (the others are as that report left them)."""
        state = self._open[epoch]
        state.states[name] = self._encode(name, entries)
        if gone is not None:
            state.gone[name] = [self._encode_value(name, f"the key {key!r}", key) for key in gone]

    def report_position(self, epoch: int, name: str, position: Any) -> None:
        """Where source ``name`` stood when it put ``Barrier(epoch)`` in band."""
        self._open[epoch].positions[name] = self._encode_value(name, "position", position)

    def report_alignment(self, epoch: int, seconds: float) -> None:
        """An operator held inputs back ``seconds`` to align ``epoch``."""
        state = self._open[epoch]
        state.alignment = max(state.alignment, seconds)

    def report_sink(self, epoch: int, name: str, record: Any) -> None:
        """Sink ``name``'s pre-commit record for ``epoch``."""
        self._open[epoch].sinks[name] = self._encode_value(name, "the pre-commit record", record)

    def passed(self, epoch: int, participant: Participant) -> None:
        """``participant`` has handed ``Barrier(epoch)`` on."""
        state = self._open.get(epoch)
        if state is not None:
            state.waiting.discard(participant)
            if not state.waiting:
                self._bell.set()
                self._through()

    def ended(
        self,
        participant: Participant,
        states: Mapping[str, Mapping[Hashable, Any]] = {},
        positions: Mapping[str, Any] = {},
        sinks: Mapping[str, Any] = {},
    ) -> None:
        """``participant`` has ended, with its final ``states``, sources' ``positions`` and
        sinks' records: they stand for it in every epoch it has not passed."""
        for name, record in sinks.items():
            self._final_sinks[name] = self._encode_value(name, "the pre-commit record", record)
        for name, entries in states.items():
            self._final_states[name] = self._encode(name, entries)
        for name, position in positions.items():
            self._final_positions[name] = self._encode_value(name, "position", position)
        self._participants.discard(participant)
        for state in self._open.values():
            state.waiting.discard(participant)
        if not self._participants:
            self._ended = True
        self._bell.set()
        self._through()

    # -- encoding -------------------------------------------------------------------------

    def _encode(self, name: str, entries: Mapping[Hashable, Any]) -> dict[bytes, bytes]:
        return {
            self._encode_value(name, f"the key {key!r}", key): self._encode_value(
                name, f"the entry {key!r}", value
            )
            for key, value in entries.items()
        }

    def _encode_value(self, name: str, what: str, value: Any) -> bytes:
        try:
            return self.codec.dumps(value)
        except CheckpointError as error:
            error.add_note(f"sage_streams: in {what} of the checkpoint of {name!r}")
            raise

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Commit the complete epochs, in order, until every participant has ended; then
        commit a last epoch with what is left. Epochs start on the clock's timer, not here, so
        a slow commit never holds the next barrier back (:meth:`start` sets the first)."""
        try:
            while True:
                await self._bell.wait()
                self._bell = anyio.Event()
                await self._commit_complete()
                if self._ended:
                    # Nobody is left to wait for: a last epoch of the final states completes at
                    # once (and writes nothing if they are what the store holds).
                    self.trigger()
                    await self._commit_complete()
                    return
        finally:
            self.stop()

    def start(self) -> None:
        """The run starts: the first epoch is due an interval from now."""
        self._timer = self.clock.call_at(self.clock.now() + self.interval, self._tick)

    def stop(self) -> None:
        """The run has ended, however: no epoch starts any more."""
        self._ended = True
        if self._timer is not None:
            self._timer.cancel()

    def _tick(self) -> None:
        """The interval has passed: start an epoch and time the next; or, while the last one
        is still on its way (some task has not passed its barrier), wait for it to be through."""
        self._timer = None
        if self._ended:
            return
        if self._on_its_way():
            self._overdue = True
            return
        self.trigger()
        self._timer = self.clock.call_at(self.clock.now() + self.interval, self._tick)

    def _through(self) -> None:
        """Every task has passed the last epoch's barrier: the next one, overdue, starts an
        interval from now, so that however long snapshots take, the pipeline gets a whole
        interval of work between two of them (Flink's minimum pause between checkpoints)."""
        if self._overdue and not self._ended and not self._on_its_way():
            self._overdue = False
            self._timer = self.clock.call_at(self.clock.now() + self.interval, self._tick)

    def _on_its_way(self) -> bool:
        """Whether some task has not yet passed the barrier of an epoch started."""
        return any(state.waiting for state in self._open.values())

    async def _commit_complete(self) -> None:
        while self._open:
            first = min(self._open)
            state = self._open[first]
            if state.waiting and self._participants:
                return
            del self._open[first]
            await self._commit(state)

    async def _commit(self, state: _Epoch) -> None:
        states = {**self._final_states, **state.states}
        positions = {**self._final_positions, **state.positions}
        sinks = {**self._final_sinks, **state.sinks}
        changes: dict[str, dict[bytes, bytes | None]] = {}
        written = 0
        for name, entries in states.items():
            held = self._held.get(name, {})
            changed: dict[bytes, bytes | None] = {k: v for k, v in entries.items() if held.get(k) != v}
            gone = state.gone[name] if name in state.gone else held.keys() - entries.keys()
            changed.update((k, None) for k in gone if k in held)
            if changed:
                changes[name] = changed
                written += sum(len(k) + len(v) for k, v in changed.items() if v is not None)
        self.stats.completed = state.epoch
        self.stats.alignment = max(self.stats.alignment, state.alignment)
        if not changes and positions == self._held_positions and sinks == self._held_sinks:
            return  # nothing moved since the last commit: the store already says it all
        await self.store.commit(state.epoch, changes, positions, sinks)
        self._held_positions, self._held_sinks = positions, sinks
        for name, log in self._logs.items():
            if name in positions:
                await log.trim(self.codec.loads(positions[name]))
        for name, source in self._acknowledgers.items():
            if name in positions and self._acked.get(name) != positions[name]:
                self._acked[name] = positions[name]
                position = self.codec.loads(positions[name])
                if position is None:  # a live source's epoch before its first batch: none to ack
                    continue
                try:
                    await source.acknowledge(position)
                except Exception as exc:
                    exc.add_note(f"sage_streams: raised by source {name!r} acknowledging epoch {state.epoch}")
                    raise OperatorFailure(name, exc) from exc
        for name, sink in self._sinks.items():
            try:
                await sink.commit(state.epoch)
            except Exception as exc:
                exc.add_note(f"sage_streams: raised by the commit of sink {name!r}, epoch {state.epoch}")
                raise OperatorFailure(name, exc) from exc
        for name, entries in states.items():
            if name in state.gone:
                held = self._held.setdefault(name, {})
                held.update(entries)
                for key in state.gone[name]:
                    held.pop(key, None)
            else:
                self._held[name] = dict(entries)
        self.stats.epoch = state.epoch
        self.stats.committed += 1
        self.stats.duration = self.clock.now() - state.started
        self.stats.bytes_written = written


async def close_sink(name: str, sink: TransactionalSink, completed: bool) -> None:
    """Close ``sink``, shielded (the run may be cancelled); a failing close fails a run that
    had completed, and is only noted after a failure it must not hide."""
    with anyio.CancelScope(shield=True):
        try:
            await sink.close()
        except Exception as exc:
            exc.add_note(f"sage_streams: raised by the close of sink {name!r}")
            if completed:
                raise OperatorFailure(name, exc) from exc


STATE_ENTRY: Final = ("stream_state",)
"""The entry of a node's checkpoint that holds the StreamState its function is handed."""


def state_entries(node: Node, holders: tuple[str, ...]) -> dict[Hashable, Any] | None:
    """The entries of ``node``'s StreamState for a checkpoint, ``None`` if it has none to give.

    Checkpoints take a StreamState with the one node that holds it, at that node's barrier. One
    that several nodes share has no such moment (each passes the barrier at its own), so it is
    refused as soon as it holds data, rather than restored wrong.
    """
    state = node.state
    if state is None:
        return None
    entries = state.snapshot_entries()
    if len(holders) > 1:
        if entries:
            raise CheckpointError(
                f"StreamState {state.name!r} holds data and is shared by {', '.join(map(repr, holders))}: "
                "checkpoints take a state with the one operator that holds it; give each operator a "
                "state of its own, or run without checkpoints"
            )
        return None
    return entries


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a snapshot is taken or restored: the many small
    containers they make would trigger collections that find nothing (measured: a window
    state of 1M keys snapshots 3-4x faster, restores 2.5-3x faster). Nothing else runs on the
    loop meanwhile, and the collector runs as before afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
