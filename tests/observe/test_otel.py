"""The OpenTelemetry bridge: the instruments read the snapshot; sampled spans of user calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sage_streams import ConnectedStreams, LocalEnvironment
from sage_streams.observe.otel import Sampler, instrument
from tests.observe.scene import ISSUE_METRICS, Series, expected_series, paused, still


def collected(reader: InMemoryMetricReader) -> Series:
    data = reader.get_metrics_data()
    if data is None:  # no instrument reported anything
        return {}
    return {
        (metric.name, frozenset((key, str(value)) for key, value in point.attributes.items())): point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }


async def test_the_instruments_during_a_run_report_the_snapshot(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        async with paused(tmp_path) as env:
            instrumentation = instrument(env, meter_provider=provider, max_age=0)
            before = env.metrics()
            series = collected(reader)
            after = env.metrics()
            assert still(before) == still(after)
            (elapsed,) = [value for (name, _), value in series.items() if name == "sage_run_seconds"]
            assert before.elapsed <= elapsed <= after.elapsed
            series = {key: value for key, value in series.items() if key[0] != "sage_run_seconds"}
            assert series == expected_series(before)
            assert {name for name, _ in series} >= ISSUE_METRICS
            instrumentation.close()
            assert collected(reader) == {}
    finally:
        provider.shutdown()


def tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_sampled_spans_around_async_calls_one_in_four_and_errors_recorded() -> None:
    env = LocalEnvironment("calls")

    async def lookup(x: int) -> int:
        if x == 3:
            raise ValueError("no 3")
        return x * 10

    out = env.from_collection(range(8), name="numbers").map(lookup, concurrency=2, name="lookup")
    out.on_error(lambda stream, error, context: "continue")
    provider, exporter = tracing()
    instrument(env, MeterProvider(), provider, sample=0.5)
    assert sorted(await out.collect()) == [0, 10, 20, 40, 50, 60, 70]
    spans = exporter.get_finished_spans()
    assert len(spans) == 4  # calls 2, 4, 6 and 8 of eight
    assert {span.name for span in spans} == {"sage.call"}
    assert all(dict(span.attributes or {}) == {"pipeline": "calls", "operator": "lookup"} for span in spans)
    failed = [span for span in spans if not span.status.is_ok]
    assert len(failed) == 1  # the fourth call is that of 3
    assert failed[0].events[0].name == "exception"


async def test_spans_around_every_process_call_and_unwrapped_on_close() -> None:
    env = LocalEnvironment("process")
    calls: list[int] = []

    def pairs(readers: Any, state: Any) -> list[Any]:
        items = [item for reader in readers for item in reader.read_all()]
        calls.append(len(items))
        return items

    left, right = env.from_collection([1, 2, 3], name="left"), env.from_collection([4], name="right")
    merged = ConnectedStreams([left, right]).process(pairs, name="pairs")
    provider, exporter = tracing()
    instrumentation = instrument(env, MeterProvider(), provider, sample=1)
    assert sorted(await merged.collect()) == [1, 2, 3, 4]
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["sage.process"] * len(calls)
    instrumentation.close()
    exporter.clear()
    assert sorted(await merged.collect()) == [1, 2, 3, 4]
    assert exporter.get_finished_spans() == ()


def test_without_sampling_nothing_is_wrapped() -> None:
    env = LocalEnvironment("plain")

    async def call(x: int) -> int:
        return x

    stream = env.from_collection([1], name="numbers").map(call, concurrency=2, name="call")
    node = stream._node
    factory = node.fn
    instrument(env, MeterProvider())
    assert node.fn is factory


def test_the_sampler_takes_exactly_one_call_in_n() -> None:
    sampler = Sampler(0.1)
    assert sum(sampler() for _ in range(1000)) == 100
    assert all(Sampler(1.0)() for _ in range(5))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sample": 1.5}, r"sample must be a share of calls from 0 to 1, got 1\.5"),
        ({"sample": True}, r"sample must be a share of calls from 0 to 1, got True"),
        ({"max_age": -1}, r"max_age must be seconds, 0 or more, got -1"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        instrument(LocalEnvironment("job"), MeterProvider(), **options)
