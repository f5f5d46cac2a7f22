"""Per-run counters: what each node of a graph did in one run.

They live in the run (:class:`~sage_streams._runtime.plan.Plan`), not in the graph, so that a
second run of the same graph counts from zero and ``env.metrics()`` reports that run's counts
and rate, never a sum over runs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TypeAlias

from sage_streams._graph.node import Node

__all__ = ["Counters", "RunCounters"]


@dataclass(slots=True)
class Counters:
    """What one node did in one run."""

    items_in: int = 0
    items_out: int = 0
    errors: int = 0
    retries: int = 0
    dead_letters: int = 0


RunCounters: TypeAlias = defaultdict[Node, Counters]
"""A run's counters by node: a node first counted (a stream added while running) starts at zero."""
