"""A chain task: a head, the fused stateless steps after it, and outlets at emission points."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sage_streams._codegen import Inline, Step, StepChain, compile_chain
from sage_streams._graph.node import Node
from sage_streams._runtime.calls import CallHead
from sage_streams._runtime.checkpoints import STATE_ENTRY, state_entries
from sage_streams._runtime.connectors import ReplayHead, SinkHead
from sage_streams._runtime.counters import RunCounters
from sage_streams._runtime.failures import OperatorFailure
from sage_streams._runtime.heads import ChannelHead, Head, IterableHead, Prefix, Prefixed
from sage_streams._runtime.operator_head import OperatorHead
from sage_streams._runtime.outlets import Outlet
from sage_streams._runtime.policy import PolicyRun, stopping
from sage_streams.channel import Barrier, Control

if TYPE_CHECKING:
    from sage_streams._runtime.checkpoints import Checkpointer

__all__ = ["ChainTask", "Run"]


class ChainTask:
    """One task: a head, fused stateless steps, and outlets at emission points.

    Point ``0`` is what the head yields (the output of ``head_node``, when the chain starts at a
    source); point ``k`` is the output of ``nodes[k - 1]``.

    An operator head may hand over the raw batches of an input with the step that joins them
    (:class:`Prefixed`): from then on the chain runs that step first, in the same loop. Its
    steps are then ``members`` (the operator's node, then ``nodes``), and the compiled chain's
    point ``k + 1`` is the chain's point ``k``.
    """

    def __init__(
        self,
        name: str,
        head: Head,
        head_node: Node | None,
        scopes: dict[Node, PolicyRun],
        *,
        counters: RunCounters,
        inline: Inline,
        codegen: bool = True,
    ) -> None:
        self.name = name
        self.counters = counters
        self.inline = inline
        self.codegen = codegen
        self.head = head
        self.head_node = head_node
        self.nodes: list[Node] = []
        self.outlets: dict[int, list[Outlet]] = {}
        self.scopes = scopes
        self.finished = False
        self.prefix: Prefix | None = None
        self._fused: StepChain | None = None
        self._suffixes: dict[tuple[int, bool], StepChain] = {}
        self._totals: list[int] = [0, 0]
        self.checkpointer: Checkpointer | None = None
        """Set by the plan when the run takes checkpoints: the chain reports the barriers it
        passes, and its end."""
        self.state_holders: dict[Node, tuple[str, ...]] = {}
        """Set by the plan: the nodes sharing each StreamState of this chain's steps."""

    @property
    def members(self) -> list[Node]:
        """The nodes of the compiled chain's steps, in order."""
        return self.nodes if self.prefix is None else [self.prefix.node, *self.nodes]

    @property
    def _shift(self) -> int:
        """The compiled chain's point of the chain's point 0."""
        return 0 if self.prefix is None else 1

    def scopes_held(self) -> set[PolicyRun]:
        """The policies of the operators this task runs (its head's and its steps')."""
        head = self.head
        members = [*self.nodes, head.node] if isinstance(head, OperatorHead | CallHead) else self.nodes
        return {self.scopes[node] for node in members}

    def attach(self, point: int, outlet: Outlet) -> None:
        """Add an outlet, also while running: the loop is recompiled before the next batch."""
        if self.finished:
            outlet.close()
            return
        self.outlets.setdefault(point, []).append(outlet)
        self._recompile()

    def _recompile(self) -> None:
        """Compile again before the next batch, the counts so far going to the old chain's steps."""
        self.flush_counts()
        self._fused = None

    def _compile(self) -> StepChain:
        # Under an error handler the chain must be able to go on after a failure.
        resumable = any(self.scopes[node].handles for node in self.members)
        self._fused = self._chain(0, self._points(), resumable)
        self._suffixes.clear()
        self._totals = [0] * (len(self._fused.counted) + 2)
        return self._fused

    def _points(self) -> list[int]:
        """The compiled chain's points that have outlets."""
        return [point + self._shift for point, outlets in self.outlets.items() if outlets]

    def _outlets(self, point: int) -> list[Outlet]:
        """The outlets at the compiled chain's ``point``."""
        return self.outlets.get(point - self._shift, [])

    def _chain(self, start: int, points: list[int], resumable: bool) -> StepChain:
        steps = [Step(node.kind, node.fn, node.name) for node in self.nodes]  # type: ignore[arg-type]
        if self.prefix is not None:
            steps.insert(0, self.prefix.step)
        return compile_chain(
            steps[start:],
            [point - start for point in points],
            resumable=resumable,
            inline=self.inline,
            codegen=self.codegen,
        )

    def _suffix(self, start: int, retry: bool) -> StepChain:
        """The chain from step ``start`` on; a retry's item was already emitted at ``start``."""
        if start == 0 and not retry:
            return self._fused or self._compile()
        chain = self._suffixes.get((start, retry))
        if chain is None:
            points = [p for p in self._points() if p > start or (p == start and not retry)]
            chain = self._suffixes[start, retry] = self._chain(start, points, resumable=True)
        return chain

    async def run(self) -> None:
        completed = False
        try:
            while (batch := await self.head.next_batch()) is not None:
                if isinstance(batch, Control):
                    self._pass_on(batch)
                    if type(batch) is Barrier and self.checkpointer is not None:
                        for name, entries in self._step_states().items():
                            self.checkpointer.report_state(batch.epoch, name, entries)
                        self.checkpointer.passed(batch.epoch, self)
                elif isinstance(batch, Prefixed):
                    if batch.prefix is not self.prefix:
                        self._recompile()
                        self.prefix = batch.prefix
                    await self._process(batch.items)
                else:
                    # A head that handed over its input's batches emits nothing more itself.
                    assert self.prefix is None, "an operator emitted after handing over its input"
                    await self._process(batch)
            completed = True
            if self.checkpointer is not None:
                self._report_end(self.checkpointer)
        finally:
            self.finished = True
            await self.head.close(completed)  # first: no call of the head is left to count
            self.flush_counts()
            for scope in self.scopes_held():
                scope.release(completed)
            for outlets in self.outlets.values():
                for outlet in outlets:
                    outlet.close() if completed else outlet.abort()

    def _report_end(self, checkpointer: Checkpointer) -> None:
        """This chain has ended: its operator's final state and its source's final position
        stand for it in the epochs it will not pass."""
        head = self.head
        states = {head.node.name: head.snapshot()} if isinstance(head, OperatorHead) else {}
        states.update(self._step_states())
        positions = {}
        if isinstance(head, IterableHead | ReplayHead | ChannelHead) and head.barriers is not None:
            positions[head.barriers.name] = None if isinstance(head, ChannelHead) else head.position
        sinks = {head.node.name: head.record} if isinstance(head, SinkHead) else {}
        checkpointer.ended(self, states, positions, sinks)

    def _step_states(self) -> dict[str, dict[Hashable, Any]]:
        """The StreamStates the functions of this chain's steps (and a call head's) are handed,
        as checkpoint entries by node name: as of now, every item before it processed."""
        nodes = [*self.nodes, self.head.node] if isinstance(self.head, CallHead) else self.nodes
        states: dict[str, dict[Hashable, Any]] = {}
        for node in nodes:
            if node.state is not None:
                entries = state_entries(node, self.state_holders.get(node, (node.name,)))
                if entries is not None:
                    states[node.name] = {STATE_ENTRY: entries}
        return states

    def _pass_on(self, message: Control) -> None:
        """A control message passes the stateless steps unchanged: to every outlet, in order
        after what the batches before it produced."""
        for outlets in self.outlets.values():
            for outlet in outlets:
                outlet.send_control(message)

    async def _process(self, batch: Sequence[Any]) -> None:
        fused = self._fused or self._compile()
        if not fused.steps:  # a source read by others: its batches pass on as they are
            await self._pass_through(batch if type(batch) is list else list(batch))
            return
        if fused.resumable:
            await self._process_handled(batch)
            return
        iterator = iter(batch)
        try:
            result = fused(iterator)
            outputs, counters = (await result) if fused.is_async else result
        except Exception as exc:
            raise self._failure(fused, exc, len(batch), iterator) from exc
        # Counts are linear in what a batch consumed and produced: add them up here and turn
        # them into per-operator numbers only when someone reads the metrics.
        totals = self._totals
        totals[0] += len(batch)
        totals[1] += len(outputs[-1]) if outputs else 0
        for index, count in enumerate(counters, 2):
            totals[index] += count
        for point, output in zip(fused.points, outputs, strict=True):
            if output:
                for outlet in self._outlets(point):
                    await outlet.send(output)

    async def _pass_through(self, batch: list[Any]) -> None:
        self._totals[0] += len(batch)
        for outlet in self.outlets.get(0, ()):
            await outlet.send(batch)

    async def _process_handled(self, batch: Sequence[Any]) -> None:
        """Run a batch under error handlers, going on from wherever an item fails.

        After a failure the work left is, in order: the items that had passed the failing step in
        a loop of their own (a chain split into loops), the failing step again on the same item
        (on ``"retry"``), the results of each enclosing flat_map not processed yet (innermost
        first), then the rest of the run. It is kept on a stack of runs, so that no item is
        lost or processed twice however many fail.
        """
        work = [Run(0, iter(batch), 0)]
        while work:
            run = work.pop()
            fused = self._suffix(run.start, retry=run.attempt > 0)
            try:
                result = fused(run.items)
                outputs, entries = (await result) if fused.is_async else result
            except Exception as exc:
                failure = fused.explain(exc, 0, run.items)
                if failure.step < 0:  # pragma: no cover - the loop's own code does not raise
                    raise
                await self._deliver(run, fused, failure.outputs, failure.entries)
                step = run.start + failure.step
                attempt = run.attempt if run.attempt and failure.step == 0 else 1
                node = self.members[step]
                stream_id = node.name
                if step == 0 and self.prefix is not None:
                    stream_id = self.prefix.stream_id  # the operator's error, on an input's item
                    self.prefix.record(-1, 0)  # it entered the step but did not pass
                decision = await self.scopes[node].decide(node, stream_id, exc, failure.item, attempt)
                work.append(run)  # its iterator stands past the failed item
                work.extend(Run(run.start + i + 1, rest, 0) for i, rest in reversed(failure.pending))
                if decision == "retry":
                    work.append(Run(step, iter([failure.item]), attempt + 1))
                work.extend(Run(run.start + i, items, 0) for i, items in reversed(failure.ahead))
            else:
                await self._deliver(run, fused, outputs, entries)

    async def _deliver(
        self, run: Run, fused: StepChain, outputs: Sequence[list[Any]], entries: Sequence[int]
    ) -> None:
        """Hand on what a run produced and count what entered each step.

        Items entering step ``j`` left step ``j - 1`` (or the chain's source); a retried item
        had entered its step, and left the one before, on its first try. A prefix counts every
        entry, retries too, as its failures are taken off one by one.
        """
        members, counters = self.members, self.counters
        if self.prefix is not None and run.start == 0:
            self.prefix.record(entries[0], entries[1])
        for j, count in enumerate(entries):
            if not count or (j == 0 and run.attempt):
                continue
            step = run.start + j
            if step < len(members):
                counters[members[step]].items_in += count
            if step > 0:
                counters[members[step - 1]].items_out += count
            elif self.head_node is not None:
                self._count_through(self.head_node, count)
        for point, output in zip(fused.points, outputs, strict=True):
            if output:
                for outlet in self._outlets(run.start + point):
                    await outlet.send(output)

    def flush_counts(self) -> None:
        """Move the counts gathered since the last flush into the nodes' counters."""
        fused, totals = self._fused, self._totals
        if fused is None or not totals[0]:
            return
        consumed, produced, counters = totals[0], totals[1], totals[2:]
        if self.head_node is not None:
            self._count_through(self.head_node, consumed)
        counts = fused.counts(consumed, counters, produced)
        for node, (n_in, n_out) in zip(self.members, counts, strict=True):
            counted = self.counters[node]
            counted.items_in += n_in
            counted.items_out += n_out
        if self.prefix is not None:
            self.prefix.record(*counts[0])
        self._totals = [0] * len(totals)

    def _count_through(self, node: Node, count: int) -> None:
        """``count`` items passed ``node``, the chain's source: in and out alike."""
        counted = self.counters[node]
        counted.items_in += count
        counted.items_out += count

    def _failure(self, fused: StepChain, exc: Exception, size: int, it: Any) -> OperatorFailure:
        failure = fused.explain(exc, size, it)
        if self.head_node is not None:
            self._count_through(self.head_node, failure.consumed)
        node = self.members[failure.step] if failure.step >= 0 else (self.head_node or self.members[0])
        self.counters[node].errors += 1
        if (inlined := fused.inlined.get(failure.step)) is not None:
            exc.add_note(inlined.note("the fused loop"))
        return stopping(node.name, exc, failure.item)


class Run:
    """Work for a handled chain: feed ``items`` to the steps from ``start`` on.

    ``attempt`` > 0 marks the retry of one failed item (its number of the try to come).
    """

    __slots__ = ("attempt", "items", "start")

    def __init__(self, start: int, items: Iterator[Any], attempt: int) -> None:
        self.start = start
        self.items = items
        self.attempt = attempt
