"""The driver: graph -> chains of fused steps -> one task per chain in an anyio task group.

Planning walks the nodes in creation order (which is topological: a node is created after its
inputs). A stateless single-input node joins its producer's chain when it is that producer's only
consumer, as Flink chains operators; otherwise it starts a new chain that reads a channel fed by
the producer. Each chain is one task: a *head* produces batches (from an iterable, or from a
channel), the fused steps transform them, and *outlets* at emission points hand results on
(channels to other chains, collectors, live readers).

A failure of any task cancels the task group; every task then closes its channels in ``finally``
(aborting its outlets), and :meth:`Plan.run` raises one :class:`PipelineError` chained to the
first error. No task outlives :meth:`Plan.run`, however it ends.
"""

from sage_streams._runtime.checkpoints import Checkpointer
from sage_streams._runtime.counters import Counters
from sage_streams._runtime.event_loop import refuse_blocking_run, running_loop, wrong_loop
from sage_streams._runtime.outlets import ChannelOutlet, ListOutlet, Outlet
from sage_streams._runtime.plan import Plan
from sage_streams._runtime.readers import LiveCollect, Outcome, Reader
from sage_streams._runtime.sources import is_sync_source

__all__ = [
    "ChannelOutlet",
    "Checkpointer",
    "Counters",
    "ListOutlet",
    "LiveCollect",
    "Outcome",
    "Outlet",
    "Plan",
    "Reader",
    "is_sync_source",
    "refuse_blocking_run",
    "running_loop",
    "wrong_loop",
]
