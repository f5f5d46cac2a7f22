"""``env.to_mermaid()`` and ``env.to_dot()``: the graph's text before a run, and after one with
per-edge counts, rates, channel depths and watermarks; names escaped."""

from __future__ import annotations

import asyncio
import dataclasses
import re

from sage_streams import LocalEnvironment
from sage_streams.metrics import MetricsSnapshot

CLICKS = [{"timestamp": float(t)} for t in (1, 30, 61, 62, 130)]


def clicks_graph() -> LocalEnvironment:
    """A source, a window of two aggregates' steps, a sink; and a second sink on the source."""
    env = LocalEnvironment("clicks")
    clicks = env.from_collection(CLICKS, name="clicks")
    counts = clicks.window("tumbling", size=60).aggregate(lambda n, _: n + 1, initial=0, name="count")
    counts.sink(lambda _: None, name="out")
    clicks.filter(lambda c: c["timestamp"] > 60, name="late").sink(lambda _: None, name="audit")
    return env


def at_two_seconds(env: LocalEnvironment) -> MetricsSnapshot:
    """The last run's snapshot as if it had lasted 2 s, so that the rates are exact."""
    return dataclasses.replace(env.metrics(), elapsed=2.0)


MERMAID_NODES = """\
flowchart LR
    n0(["clicks<br/>pull"])
    n1["window(tumbling)<br/>operator"]
    n2["count<br/>aggregate"]
    n3[["out<br/>sink"]]
    n4["late<br/>filter"]
    n5[["audit<br/>sink"]]
"""

MERMAID_BEFORE = (
    MERMAID_NODES
    + """\
    n0 --> n1
    n1 --> n2
    n2 --> n3
    n0 --> n4
    n4 --> n5
"""
)

MERMAID_AFTER = (
    MERMAID_NODES
    + """\
    n0 -->|"5 items, 2.5/s, depth 0/1,000, watermark 130, lag 0s"| n1
    n1 -->|"3 items, 1.5/s, fused"| n2
    n2 -->|"3 items, 1.5/s, fused"| n3
    n0 -->|"5 items, 2.5/s, depth 0/1,000"| n4
    n4 -->|"3 items, 1.5/s, fused"| n5
"""
)

DOT_AFTER = r"""digraph "clicks" {
    rankdir=LR;
    node [shape=box];
    n0 [label="clicks\npull", shape=ellipse];
    n1 [label="window(tumbling)\noperator", shape=box];
    n2 [label="count\naggregate", shape=box];
    n3 [label="out\nsink", shape=cds];
    n4 [label="late\nfilter", shape=box];
    n5 [label="audit\nsink", shape=cds];
    n0 -> n1 [label="5 items, 2.5/s, depth 0/1,000, watermark 130, lag 0s"];
    n1 -> n2 [label="3 items, 1.5/s, fused"];
    n2 -> n3 [label="3 items, 1.5/s, fused"];
    n0 -> n4 [label="5 items, 2.5/s, depth 0/1,000"];
    n4 -> n5 [label="3 items, 1.5/s, fused"];
}
"""


def test_mermaid_before_a_run_has_the_operators_and_plain_edges() -> None:
    env = clicks_graph()
    assert env.to_mermaid() == MERMAID_BEFORE
    assert env.to_mermaid() == MERMAID_BEFORE  # the same text every time


async def test_mermaid_after_a_run_labels_each_edge_with_its_numbers() -> None:
    env = clicks_graph()
    await env.execute()
    assert env.to_mermaid(at_two_seconds(env)) == MERMAID_AFTER
    # Taken now, the rates are the run's own: the rest of each label is the same.
    assert re.sub(r"[\d.,]+/s", "R/s", env.to_mermaid()) == re.sub(r"[\d.,]+/s", "R/s", MERMAID_AFTER)


async def test_dot_after_a_run_has_the_same_labels() -> None:
    env = clicks_graph()
    before = env.to_dot()
    assert "[label=" not in before.split("n0 -> n1")[1]
    await env.execute()
    assert env.to_dot(at_two_seconds(env)) == DOT_AFTER


async def test_a_running_graph_shows_the_depth_of_a_channel_that_waits() -> None:
    env = LocalEnvironment("held", buffer_size=10, batch_size=1)
    gate = asyncio.Event()

    async def held(item: int) -> int:
        await gate.wait()
        return item

    numbers = env.from_collection(range(20), name="numbers")
    numbers.map(lambda n: n, name="copy").sink(lambda _: None, name="a")
    numbers.map(held, name="held", concurrency=1).sink(lambda _: None, name="b")
    async with env.running():
        for _ in range(1000):  # the map's channel fills while its one call waits on the gate
            if env.metrics().channels["numbers->held"].depth == 10:
                break
            await asyncio.sleep(0.01)
        drawn = env.to_mermaid()
        gate.set()
    assert re.search(r'n0 -->\|"\d+ items, [\d.,]+/s, depth 10/10"\| n3', drawn), drawn


def test_names_are_escaped() -> None:
    env = LocalEnvironment('job "x"')
    odd = 'a "b" [c] <d> | #e'
    env.from_collection([1], name=odd).sink(lambda _: None, name="back\\slash\nline")
    assert env.to_mermaid().splitlines()[1:3] == [
        '    n0(["a #quot;b#quot; [c] #lt;d#gt; #124; #35;e<br/>pull"])',
        '    n1[["back\\slash#10;line<br/>sink"]]',
    ]
    assert env.to_dot().splitlines()[0] == 'digraph "job \\"x\\"" {'
    assert env.to_dot().splitlines()[3:5] == [
        '    n0 [label="a \\"b\\" [c] <d> | #e\\npull", shape=ellipse];',
        '    n1 [label="back\\\\slash\\nline\\nsink", shape=cds];',
    ]


async def test_an_operator_added_after_the_run_is_drawn_not_run() -> None:
    env = LocalEnvironment("grown")
    numbers = env.from_collection([1, 2], name="numbers")
    numbers.sink(lambda _: None, name="first")
    await env.execute()
    numbers.sink(lambda _: None, name="second")
    assert env.to_mermaid(at_two_seconds(env)).splitlines()[-1] == '    n0 -->|"not run"| n2'
