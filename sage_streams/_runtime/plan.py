"""The plan of one run: chains, channels and policies made from the graph, and running them."""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import anyio

from sage_streams._codegen import Inline
from sage_streams._graph.node import FUSABLE, ErrorPolicy, Node
from sage_streams._runtime.calls import CallHead
from sage_streams._runtime.chain import ChainTask
from sage_streams._runtime.checkpoints import STATE_ENTRY, Checkpointer, paused_gc
from sage_streams._runtime.connectors import ReplayHead, SinkHead
from sage_streams._runtime.counters import Counters, RunCounters
from sage_streams._runtime.failures import OperatorFailure
from sage_streams._runtime.heads import ChannelHead, Head, IterableHead, SourceBarriers
from sage_streams._runtime.operator_head import OperatorHead
from sage_streams._runtime.outlets import ChannelOutlet, Outlet
from sage_streams._runtime.policy import PolicyRun
from sage_streams._runtime.sources import feed, is_sync_source
from sage_streams.channel import (
    ChannelConfig,
    ChannelStatistics,
    Receiver,
    Sender,
    create_channel,
)
from sage_streams.connectors import AcknowledgingSource, ReplayableSource
from sage_streams.connectors.ingest import IngestLog
from sage_streams.errors import CheckpointError, ErrorThresholdExceeded, PipelineError, StreamError
from sage_streams.operators.base import SteppingOperator
from sage_streams.time import Clock

__all__ = ["Plan"]


class Plan:
    """The tasks and channels of one run of a graph."""

    def __init__(
        self,
        env_name: str,
        nodes: list[Node],
        taps: dict[Node, list[Outlet]],
        inboxes: Mapping[Node, tuple[Sender, Receiver]],
        *,
        capacity: int,
        batch_size: int,
        clock: Clock,
        inline: Inline = False,
        codegen: bool = True,
        loop: asyncio.AbstractEventLoop,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.env_name = env_name
        self.inboxes = inboxes
        self.loop = loop
        # Items emitted from other threads (``emit_threadsafe``) enter each push stream in the
        # order they were given: one lock per push stream, taken in that order (locks are fair).
        self.threadsafe_emits: dict[Node, asyncio.Lock] = {}
        self.clock = clock
        self.inline = inline
        self.codegen = codegen
        self.capacity = capacity
        self.batch_size = batch_size
        self.chains: list[ChainTask] = []
        self.feeders: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        self.where: dict[Node, tuple[ChainTask, int]] = {}
        self.operators: dict[Node, OperatorHead] = {}
        self.call_heads: dict[Node, CallHead] = {}
        self.channels: list[Sender] = []
        self.failures: list[OperatorFailure] = []
        self.error: PipelineError | None = None
        self.done = asyncio.Event()
        self.started = asyncio.Event()
        """Set once the run's tasks start (after a restore from checkpoints), or it has ended."""
        self.started_at = time.perf_counter()
        self.ended_at: float | None = None
        self.counters: RunCounters = defaultdict(Counters)
        """What each node did in this run (``env.metrics()`` reads them)."""
        self.checkpointer = checkpointer
        """The run's checkpoints, if the environment takes them."""
        self.policy_runs: dict[ErrorPolicy, PolicyRun] = {}
        self.scopes = self._resolve_policies(nodes)
        self._build(nodes)
        if checkpointer is not None:
            self._share_states(nodes)
        for node, outlets in taps.items():
            for outlet in outlets:
                self.attach(node, outlet)
        self._hold_policies()

    def _resolve_policies(self, nodes: list[Node]) -> dict[Node, PolicyRun]:
        """The policy run each node's errors go to (see ``Node.governing_policy``); nodes under
        no policy share a default run that stops the graph on every error."""
        default = PolicyRun(ErrorPolicy(None, "errors"), self.clock, self.counters)
        scopes: dict[Node, PolicyRun] = {}
        for node in nodes:
            policy = node.governing_policy()
            if policy is None:
                scopes[node] = default
                continue
            if policy not in self.policy_runs:
                self.policy_runs[policy] = PolicyRun(policy, self.clock, self.counters)
            scopes[node] = self.policy_runs[policy]
        return scopes

    def _hold_policies(self) -> None:
        """Tell each policy how many tasks run its operators; its ``errors()`` stream ends
        when the last of them does (at once, if none does)."""
        for chain in self.chains:
            for scope in chain.scopes_held():
                scope.hold()
        for scope in self.policy_runs.values():
            scope.end_if_idle()

    def _build(self, nodes: list[Node]) -> None:
        consumers: dict[Node, int] = {node: 0 for node in nodes}
        for node in nodes:
            for producer in node.inputs:
                consumers[producer] += 1
        for node in nodes:
            if node.kind == "sink" and node.sink is not None:
                self._place_sink(node)
            elif node.kind in FUSABLE and node.calls is not None:
                self._place_calls(node)
            elif node.kind in FUSABLE:
                self._place_operator(node, consumers)
            elif node.kind == "push":
                sender, receiver = self.inboxes[node]
                self.channels.append(sender)
                self._new_chain(node, ChannelHead(receiver, self._barriers(node)), head_node=node)
            elif node.kind == "pull":
                self._place_source(node)
            elif node.kind == "operator":
                self._place_stateful(node)
            elif node.kind == "side":
                self._place_side(node)
            elif node.kind == "dead_letters":
                self._place_dead_letters(node)
            else:  # pragma: no cover - a kind added to _graph without a planner
                raise StreamError(f"no planner for operator kind {node.kind!r}")

    def _share_states(self, nodes: list[Node]) -> None:
        """Tell each holder of a StreamState who else holds it (checkpoints take only a state
        one node holds)."""
        holders: dict[int, list[Node]] = defaultdict(list)
        for node in nodes:
            if node.state is not None:
                holders[id(node.state)].append(node)
        for group in holders.values():
            names = tuple(node.name for node in group)
            for node in group:
                if node in self.operators:
                    self.operators[node].state_holders = names
                else:
                    self.where[node][0].state_holders[node] = names

    def _new_chain(self, node: Node, head: Head, *, head_node: Node | None) -> ChainTask:
        chain = ChainTask(
            node.name,
            head,
            head_node,
            self.scopes,
            counters=self.counters,
            inline=self.inline,
            codegen=self.codegen,
        )
        self.chains.append(chain)
        if self.checkpointer is not None:
            chain.checkpointer = self.checkpointer
            self.checkpointer.join(chain)
        if head_node is not None:
            self.where[node] = (chain, 0)
        return chain

    def _place_source(self, node: Node) -> None:
        if isinstance(node.source, ReplayableSource):
            self._new_chain(node, ReplayHead(node, self.batch_size, self._barriers(node)), head_node=node)
            if isinstance(node.source, IngestLog) and self.checkpointer is not None:
                self.checkpointer.add_log(node.name, node.source)
            if isinstance(node.source, AcknowledgingSource) and self.checkpointer is not None:
                self.checkpointer.add_acknowledger(node.name, node.source)
            return
        if is_sync_source(node.source):
            head = IterableHead(node, self.batch_size, self._barriers(node))
            self._new_chain(node, head, head_node=node)
            return
        sender, receiver = self._channel(f"{node.name}.reader")
        self.feeders.append((f"{node.name}.reader", lambda: feed(node, sender)))
        self._new_chain(node, ChannelHead(receiver, self._barriers(node)), head_node=node)

    def _barriers(self, node: Node) -> SourceBarriers | None:
        """A source's barriers, when the run takes checkpoints."""
        return None if self.checkpointer is None else SourceBarriers(node.name, self.checkpointer)

    def _place_operator(self, node: Node, consumers: dict[Node, int]) -> None:
        (producer,) = node.inputs
        chain, point = self.where[producer]
        if consumers[producer] != 1:
            sender, receiver = self._channel(f"{producer.name}->{node.name}")
            chain.attach(point, ChannelOutlet(sender))
            chain, point = self._new_chain(node, ChannelHead(receiver), head_node=None), 0
        chain.nodes.append(node)
        self.where[node] = (chain, point + 1)

    def _place_calls(self, node: Node) -> None:
        """An operator whose calls overlap heads a chain of its own, fed by a channel."""
        (producer,) = node.inputs
        sender, receiver = self._channel(f"{producer.name}->{node.name}")
        self.attach(producer, ChannelOutlet(sender))
        head = CallHead(node, receiver, self.clock, self.scopes[node], self.counters[node])
        self.call_heads[node] = head
        chain = self._new_chain(node, head, head_node=None)
        self.where[node] = (chain, 0)

    def _place_sink(self, node: Node) -> None:
        """A transactional sink heads a chain of its own, fed by a channel."""
        (producer,) = node.inputs
        sender, receiver = self._channel(f"{producer.name}->{node.name}")
        self.attach(producer, ChannelOutlet(sender))
        head = SinkHead(node, receiver, self.counters[node], self.checkpointer)
        chain = self._new_chain(node, head, head_node=None)
        self.where[node] = (chain, 0)

    def _place_stateful(self, node: Node) -> None:
        config = node.channel_config
        receivers = []
        scope = self.scopes[node]
        for index, producer in enumerate(node.inputs):
            sender, receiver = self._channel(f"{producer.name}->{node.name}[{index}]", config)
            self.attach(producer, ChannelOutlet(sender, (scope, node, producer.name)))
            receivers.append(receiver)
        head = OperatorHead(node, receivers, self.clock, scope, self.counters[node])
        head.checkpointer = self.checkpointer
        self.operators[node] = head
        chain = self._new_chain(node, head, head_node=None)
        self.where[node] = (chain, 0)

    def _place_side(self, node: Node) -> None:
        (producer,) = node.inputs
        assert node.port is not None
        sender, receiver = self._channel(f"{producer.name}.{node.port}")
        self.operators[producer].side_outlets.setdefault(node.port, []).append(ChannelOutlet(sender))
        self._new_chain(node, ChannelHead(receiver), head_node=node)

    def _place_dead_letters(self, node: Node) -> None:
        sender, receiver = self._channel(node.name)
        assert node.errors_of is not None
        scope = self.policy_runs.get(node.errors_of)
        if scope is None:  # no operator of this run is under the policy: the stream is empty
            sender.close()
        else:
            scope.outlets.append(ChannelOutlet(sender))
        self._new_chain(node, ChannelHead(receiver, self._barriers(node)), head_node=node)

    def _channel(self, name: str, config: ChannelConfig | None = None) -> tuple[Sender, Receiver]:
        if config is None:
            config = ChannelConfig(self.capacity)
        sender, receiver = create_channel(
            name,
            config.capacity,
            strategy=config.strategy,
            timeout=config.timeout,
            batch_size=self.batch_size,
            codec=config.codec,
        )
        self.channels.append(sender)
        return sender, receiver

    def attach(self, node: Node, outlet: Outlet) -> None:
        """Send what ``node`` produces from now on to ``outlet`` too."""
        chain, point = self.where[node]
        chain.attach(point, outlet)

    def state_sizes(self) -> dict[str, int]:
        """``size_bytes()`` of every distinct shared state of the operators, by name."""
        sizes: dict[str, int] = {}
        seen: set[int] = set()
        for head in self.operators.values():
            state = getattr(head.operator, "state", None)
            if state is None or id(state) in seen:
                continue
            seen.add(id(state))
            name, n = state.name, 1
            while name in sizes:
                n += 1
                name = f"{state.name}#{n}"
            sizes[name] = state.size_bytes()
        return sizes

    def operator_details(self) -> dict[str, dict[str, float]]:
        """Operator-specific metrics of every stateful operator, by operator name."""
        details = {node.name: head.operator.details() for node, head in self.operators.items()}
        details.update((node.name, head.details()) for node, head in self.call_heads.items())
        return details

    def operator_modes(self) -> dict[str, str]:
        """How each operator that can run more than one way runs now, by operator name."""
        modes = {
            node.name: head.operator.mode
            for node, head in self.operators.items()
            if isinstance(head.operator, SteppingOperator)
        }
        modes.update((node.name, head.config.mode) for node, head in self.call_heads.items())
        return modes

    def flush_counts(self) -> None:
        """Bring every node's counters up to date (metrics read them)."""
        for chain in self.chains:
            chain.flush_counts()

    def channel_statistics(self) -> dict[str, ChannelStatistics]:
        return {sender.name: sender.statistics() for sender in self.channels}

    async def run(self) -> None:
        """Run every task to completion; on failure raise :class:`PipelineError`."""
        try:
            if self.checkpointer is not None:
                await self._restore(self.checkpointer)
            if self.checkpointer is not None:
                self.checkpointer.start()
            self.started.set()
            async with anyio.create_task_group() as group:
                if self.checkpointer is not None:
                    group.start_soon(self._guard, "checkpoints", self.checkpointer.run, name="checkpoints")
                for name, feeder in self.feeders:
                    group.start_soon(self._guard, name, feeder, name=name)
                for chain in self.chains:
                    group.start_soon(self._guard, chain.name, chain.run, name=chain.name)
        except BaseExceptionGroup as group:
            self.error = self._pipeline_error(group)
            raise self.error from self.error.__cause__
        except CheckpointError as error:  # the store could not be opened: nothing ran
            self.failures.append(OperatorFailure("checkpoints", error))
            self.error = self._pipeline_error(BaseExceptionGroup("restore", [error]))
            raise self.error from error
        finally:
            if self.checkpointer is not None:
                self.checkpointer.stop()
                await self.checkpointer.close_sinks(self.error is None)
                with anyio.CancelScope(shield=True):
                    await self.checkpointer.store.close()
            self.ended_at = time.perf_counter()
            self.started.set()
            self.done.set()

    async def _restore(self, checkpointer: Checkpointer) -> None:
        """Open the store; bring the sources and operators back to its last epoch, if any."""
        restored = await checkpointer.open()
        if restored is None:
            return
        names = {node.name for node in self.operators}
        # Nodes of chain steps that hold a StreamState of their own.
        steps = [
            node
            for chain in self.chains
            for node, held in chain.state_holders.items()
            if held == (node.name,)
        ]
        names.update(node.name for node in steps)
        for chain in self.chains:
            head = chain.head
            if isinstance(head, IterableHead | ReplayHead | ChannelHead) and head.barriers is not None:
                names.add(head.barriers.name)
            elif isinstance(head, SinkHead):
                names.add(head.node.name)
        unknown = sorted({*restored.states, *restored.positions, *restored.sinks} - names)
        if unknown:
            raise CheckpointError(
                f"the checkpoint of job {self.env_name!r} (epoch {restored.epoch}) holds the state of "
                f"{', '.join(map(repr, unknown))}, which this graph does not have: a renamed or removed "
                "operator, source or sink would lose it. Give it its old name (name=...), or start "
                "over with env.reset_checkpoints()"
            )
        for chain in self.chains:
            head = chain.head
            if isinstance(head, IterableHead) and head.barriers is not None:
                position = checkpointer.restored_position(head.barriers.name)
                if isinstance(position, int):
                    head.start_at(position)
            elif isinstance(head, ReplayHead) and head.barriers is not None:
                head.start_at(checkpointer.restored_position(head.barriers.name))
        with paused_gc():
            for node, operator_head in self.operators.items():
                entries = checkpointer.restored_entries(node.name)
                if entries is not None:
                    operator_head.restore(entries)
        for node in steps:
            entries = checkpointer.restored_entries(node.name)
            if entries is not None and node.state is not None:
                node.state.restore_entries(entries[STATE_ENTRY])

    async def _guard(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run one task, recording its failure; an operator cancelled by anyone but us fails."""
        try:
            await run()
        except OperatorFailure as failure:
            self.failures.append(failure)
            raise
        except anyio.get_cancelled_exc_class():
            # -inf: this graph's scope or an enclosing one was cancelled; anything else is a
            # task.cancel() aimed at one operator, which would otherwise end its stream early.
            if anyio.current_effective_deadline() == -math.inf:
                raise
            error = asyncio.CancelledError(f"operator {name!r} was cancelled from outside the graph")
            cancelled = OperatorFailure(name, error)
            self.failures.append(cancelled)
            raise cancelled from None
        except Exception as exc:
            exc.add_note(f"sage_streams: raised in operator {name!r}")
            unexpected = OperatorFailure(name, exc)
            self.failures.append(unexpected)
            raise unexpected from exc

    def _pipeline_error(self, group: BaseExceptionGroup[Any]) -> PipelineError:
        if not self.failures:  # pragma: no cover - every task runs under _guard
            raise group
        first = self.failures[0]
        if isinstance(first.error, ErrorThresholdExceeded):
            first.error.errors += [failure.error for failure in self.failures[1:]]
            return first.error
        others = len(self.failures) - 1
        more = f" (and {others} more error{'s' if others > 1 else ''})" if others else ""
        error = PipelineError(
            f"pipeline {self.env_name!r} failed: {first.describe()}{more}",
            [failure.error for failure in self.failures],
            operator=first.operator,
            item=first.item,
        )
        error.__cause__ = first.error
        return error
