"""The graph drawn: :meth:`Drawing.to_mermaid` and :meth:`Drawing.to_dot` of an environment.

A drawing has one node per operator (its name and kind) and one edge per input of an operator,
in the order the graph was built, so the text of a graph is the same from one call to the next
and can be kept in a README or compared in a test. Once the graph runs (or has run), each edge
carries what ``env.metrics()`` says of it: the items that went over it, their rate, the depth and
capacity of its channel (``fused`` when the two operators share a task and no channel is
between them), items dropped, and, into an event-time operator, its watermark and lag.

Example::

    env = LocalEnvironment("shop")
    env.from_collection([1, 2], name="orders").map(str, name="to_text").sink(print, name="out")
    print(env.to_mermaid())
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sage_streams._graph.node import Node
from sage_streams.metrics import MetricsSnapshot

if TYPE_CHECKING:
    from sage_streams._runtime import Plan

__all__ = ["Drawing", "Edge", "edge_label", "edges_of"]

_SOURCES = frozenset({"push", "pull", "dead_letters"})


@dataclass(frozen=True, slots=True)
class Edge:
    """One input of an operator: ``producer`` feeds ``consumer`` at input ``index``."""

    producer: Node
    consumer: Node
    index: int

    @property
    def channel_name(self) -> str:
        """The name the channel of this edge has in a run, when the edge has one."""
        consumer = self.consumer
        if consumer.kind == "operator":
            return f"{self.producer.name}->{consumer.name}[{self.index}]"
        if consumer.kind == "side":
            return f"{self.producer.name}.{consumer.port}"
        return f"{self.producer.name}->{consumer.name}"


def edges_of(nodes: list[Node]) -> Iterator[Edge]:
    """Every edge of a graph, consumers in the order they were added, inputs in their order."""
    for consumer in nodes:
        for index, producer in enumerate(consumer.inputs):
            yield Edge(producer, consumer, index)


def edge_label(edge: Edge, snapshot: MetricsSnapshot, plan: Plan | None = None) -> str:
    """What went over ``edge`` in the run ``snapshot`` is of (the run of ``plan``), in one line.

    The count is what the consumer took in when the edge is its only input, else what the
    producer passed on (each consumer of an operator gets every item it passes on). An edge
    into an operator added after that run is ``not run``.
    """
    producer = snapshot.operators.get(edge.producer.name)
    consumer = snapshot.operators.get(edge.consumer.name)
    if producer is None or consumer is None or (plan is not None and edge.consumer not in plan.where):
        return "not run"
    count = consumer.items_in if len(edge.consumer.inputs) == 1 else producer.items_out
    rate = count / snapshot.elapsed if snapshot.elapsed > 0 else 0.0
    parts = [f"{count:,} items", f"{_number(rate)}/s"]
    channel = snapshot.channels.get(edge.channel_name)
    if channel is None:
        parts.append("fused")
    else:
        parts.append(f"depth {channel.depth:,}/{channel.capacity:,}")
        if channel.dropped:
            parts.append(f"dropped {channel.dropped:,}")
    watermark = consumer.details.get("watermark")
    if watermark is not None and watermark > -math.inf:  # -inf: no item and no watermark yet
        parts.append("watermark end" if watermark == math.inf else f"watermark {_number(watermark)}")
        parts.append(f"lag {_number(consumer.details.get('watermark_lag', 0.0))}s")
    return ", ".join(parts)


def _number(value: float) -> str:
    """A rate, time or lag, short: ``12.5``, ``1,250``, ``0.004``."""
    if value >= 1000 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


class Drawing:
    """``to_mermaid()`` and ``to_dot()``: the part of an environment that draws its graph."""

    name: str
    _nodes: list[Node]
    _plan: Plan | None

    if TYPE_CHECKING:

        def metrics(self) -> MetricsSnapshot: ...

    def to_mermaid(self, snapshot: MetricsSnapshot | None = None) -> str:
        """The graph as a Mermaid flowchart (GitHub renders a `````mermaid`` block).

        Sources are drawn round, sinks as subroutines, other operators as boxes, each labelled
        with its name and kind. Before any run the edges are plain; once the graph runs or has
        run, each is labelled with the numbers of ``snapshot`` (``env.metrics()`` by default,
        taken now), see the module's docstring.
        """
        labels = self._labels(snapshot)
        ids = {node: f"n{index}" for index, node in enumerate(self._nodes)}
        lines = ["flowchart LR"]
        for node in self._nodes:
            text = _mermaid_text(node.name) + "<br/>" + _mermaid_text(node.reported_kind)
            opening, closing = _mermaid_shape(node)
            lines.append(f'    {ids[node]}{opening}"{text}"{closing}')
        for edge, label in labels:
            arrow = "-->" if label is None else f'-->|"{_mermaid_text(label)}"|'
            lines.append(f"    {ids[edge.producer]} {arrow} {ids[edge.consumer]}")
        return "\n".join(lines) + "\n"

    def to_dot(self, snapshot: MetricsSnapshot | None = None) -> str:
        """The graph in Graphviz DOT (``dot -Tsvg``), with the same nodes, edges and labels as
        :meth:`to_mermaid`."""
        labels = self._labels(snapshot)
        ids = {node: f"n{index}" for index, node in enumerate(self._nodes)}
        lines = [f"digraph {_dot_text(self.name)} {{", "    rankdir=LR;", "    node [shape=box];"]
        for node in self._nodes:
            shape = {"source": "ellipse", "sink": "cds"}.get(_role(node), "box")
            label = _dot_text(f"{node.name}\n{node.reported_kind}")
            lines.append(f"    {ids[node]} [label={label}, shape={shape}];")
        for edge, text in labels:
            attributes = "" if text is None else f" [label={_dot_text(text)}]"
            lines.append(f"    {ids[edge.producer]} -> {ids[edge.consumer]}{attributes};")
        return "\n".join([*lines, "}"]) + "\n"

    def _labels(self, snapshot: MetricsSnapshot | None) -> list[tuple[Edge, str | None]]:
        """Every edge with its label: ``None`` before the graph's first run."""
        plan = self._plan
        if snapshot is None and plan is not None:
            snapshot = self.metrics()
        return [
            (edge, None if snapshot is None else edge_label(edge, snapshot, plan))
            for edge in edges_of(self._nodes)
        ]


def _role(node: Node) -> str:
    if node.kind in _SOURCES:
        return "source"
    return "sink" if node.kind == "sink" else "operator"


def _mermaid_shape(node: Node) -> tuple[str, str]:
    return {"source": ("([", "])"), "sink": ("[[", "]]")}.get(_role(node), ("[", "]"))


_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "|": "#124;", "\n": "#10;"}
_MERMAID_SPECIAL = re.compile('[#"<>|\n]')


def _mermaid_text(text: str) -> str:
    """``text`` safe inside a quoted Mermaid label: its quotes, brackets and the like written as
    Mermaid's ``#...;`` entities, so a name such as ``window("x")[0]`` is drawn as it is."""
    return _MERMAID_SPECIAL.sub(lambda match: _MERMAID_ESCAPES[match.group()], text)


def _dot_text(text: str) -> str:
    """``text`` as a quoted DOT string: backslashes and quotes escaped, newlines as ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
