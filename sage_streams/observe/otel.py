"""OpenTelemetry: the catalog's metrics as observable instruments, and sampled spans of user calls.

Only ``opentelemetry-api`` is imported (the ``otel`` extra): the application picks the SDK and
its exporters and hands its providers in, or sets the global ones. Each instrument has the name
of the Prometheus sample (``sage_records_in_total``, ``sage_channel_depth``, ...) and the same
labels as attributes, ``pipeline`` included; its callback reads one snapshot of the environment
(see :func:`sage_streams.observe.catalog.snapshot`), shared by every instrument of one
collection (snapshots younger than ``max_age`` seconds are reused), so nothing is counted per
item.

Spans (``sample`` > 0): one span ``sage.call`` per sampled call of the user function of an
operator whose calls overlap (``map(fn, concurrency=...)``, ``sink``, ``flat_map``,
``filter``, ``in_thread``), and ``sage.process`` per sampled call of a process function of
connected streams (``connected.process(fn)``, ``joined.process(fn)``), with the attributes
``pipeline`` and ``operator``; an exception the call raises is recorded on its span. The
function is wrapped when :func:`instrument` is called and takes effect from the next run;
:meth:`Instrumentation.close` unwraps it. With ``sample=0`` (the default) nothing is wrapped, so
spans cost nothing when off. The fused steps (plain ``map``/``filter`` over batches, windows'
functions) get no spans: a span per item there would cost more than the step.

Example::

    from opentelemetry.sdk.metrics import MeterProvider
    from sage_streams.observe.otel import instrument

    instrumentation = instrument(env, meter_provider=MeterProvider(metric_readers=[reader]))
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from sage_streams.observe.catalog import CATALOG, Metric, Reading, missing_extra, read
from sage_streams.operators.process import BatchProcessOperator, ProcessOperator

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Status, StatusCode, Tracer, TracerProvider
except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
    raise missing_extra("sage_streams.observe.otel", "opentelemetry-api", "otel") from exc

if TYPE_CHECKING:
    from sage_streams._graph.node import Node
    from sage_streams.api.environment import LocalEnvironment

__all__ = ["Instrumentation", "instrument"]

SCOPE = "sage_streams"
"""The instrumentation scope of the meter and the tracer."""


class Sampler:
    """Every call whose running share ``n * ratio`` reaches a new whole number: exactly one
    call in ``1 / ratio``, spread evenly, with no random numbers (``ratio`` 1: every call)."""

    __slots__ = ("_calls", "_lock", "ratio")

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self._calls = 0
        self._lock = threading.Lock()  # calls in worker threads (in_thread=True) count too

    def __call__(self) -> bool:
        with self._lock:
            self._calls += 1
            n = self._calls
        return math.floor(n * self.ratio) > math.floor((n - 1) * self.ratio)


def _traced(
    fn: Callable[..., Any], tracer: Tracer, span_name: str, attributes: dict[str, str], sampler: Sampler
) -> Callable[..., Any]:
    """``fn``, with a span around each sampled call (until its awaitable, if any, is done)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if not sampler():
            return fn(*args, **kwargs)
        span = tracer.start_span(span_name, attributes=attributes)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _failed(span, exc)
            raise
        if inspect.isawaitable(result):
            return _awaited(span, result)
        span.end()
        return result

    call.__wrapped__ = fn  # type: ignore[attr-defined]
    call.__name__ = getattr(fn, "__name__", "call")
    return call


async def _awaited(span: trace.Span, result: Awaitable[Any]) -> Any:
    try:
        value = await result
    except BaseException as exc:
        _failed(span, exc)
        raise
    span.end()
    return value


def _failed(span: trace.Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.end()


class Instrumentation:
    """What :func:`instrument` set up: the instruments and the wrapped functions.

    :meth:`close` stops the instruments reporting (the API cannot remove an instrument, so its
    callback reports nothing any more) and unwraps the functions, for runs started afterwards.
    """

    def __init__(self, envs: tuple[LocalEnvironment, ...], max_age: float) -> None:
        self.envs = envs
        self.max_age = max_age
        self.closed = False
        self._readings: list[Reading] = []
        self._read_at = -math.inf
        self._lock = threading.Lock()
        self._unwrap: list[Callable[[], None]] = []

    def readings(self) -> list[Reading]:
        """One reading of each environment, reused by the instruments of one collection."""
        with self._lock:
            now = time.monotonic()
            if now - self._read_at > self.max_age:
                self._readings = [read(env) for env in self.envs]
                self._read_at = time.monotonic()
            return self._readings

    def callback(self, metric: Metric) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if self.closed:
                return []
            return [
                Observation(
                    value, {"pipeline": reading.pipeline, **dict(zip(metric.labels, labels, strict=True))}
                )
                for reading in self.readings()
                for labels, value in metric.read(reading)
            ]

        return observe

    def wrap(self, node: Node, tracer: Tracer, sample: float) -> None:
        """Spans around ``node``'s user function, if it is a call or a process function."""
        attributes = {"pipeline": node.env.name, "operator": node.name}
        if node.calls is not None and node.fn is not None:
            fn = node.fn
            node.fn = _traced(fn, tracer, "sage.call", attributes, Sampler(sample))
            self._unwrap.append(lambda: setattr(node, "fn", fn))
        elif node.kind == "operator" and node.operator is not None:
            factory = node.operator
            sampler = Sampler(sample)

            def traced_factory() -> Any:
                operator = factory()
                if isinstance(operator, ProcessOperator | BatchProcessOperator):
                    operator.fn = _traced(operator.fn, tracer, "sage.process", attributes, sampler)
                return operator

            node.operator = traced_factory
            self._unwrap.append(lambda: setattr(node, "operator", factory))

    def close(self) -> None:
        """Report nothing more and unwrap the functions (for the runs that start after)."""
        self.closed = True
        for unwrap in reversed(self._unwrap):
            unwrap()
        self._unwrap.clear()


def instrument(
    env: LocalEnvironment | Iterable[LocalEnvironment],
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    *,
    sample: float = 0.0,
    max_age: float = 0.25,
) -> Instrumentation:
    """Publish ``env``'s metrics as observable instruments, and optionally trace user calls.

    Args:
        env: one environment or several (their names, the ``pipeline`` attribute, must differ).
        meter_provider: the SDK's provider (the global one when ``None``).
        tracer_provider: the provider of the spans (the global one when ``None``).
        sample: the share of calls traced, from 0 (no spans, nothing wrapped) to 1 (every
            call): exactly one call in ``1 / sample``, deterministically.
        max_age: seconds a snapshot serves the instruments of one collection.

    Raises:
        ValueError: ``sample`` is not within [0, 1], ``max_age`` is negative, or two
            environments share a name.
    """
    from sage_streams.api.environment import LocalEnvironment

    envs = (env,) if isinstance(env, LocalEnvironment) else tuple(env)
    if not envs:
        raise ValueError("instrument() needs at least one environment")
    names = [e.name for e in envs]
    if len(set(names)) != len(names):
        raise ValueError(f"two environments share a name in {names!r}: it is their 'pipeline' attribute")
    if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0.0 <= sample <= 1.0:
        raise ValueError(f"sample must be a share of calls from 0 to 1, got {sample!r}")
    if not isinstance(max_age, int | float) or not max_age >= 0:
        raise ValueError(f"max_age must be seconds, 0 or more, got {max_age!r}")
    instrumentation = Instrumentation(envs, float(max_age))
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    meter = provider.get_meter(SCOPE)
    for metric in CATALOG:
        create = (
            meter.create_observable_counter if metric.kind == "counter" else meter.create_observable_gauge
        )
        create(metric.sample_name, [instrumentation.callback(metric)], metric.unit, metric.help)
    if sample > 0:
        tracers = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        tracer = tracers.get_tracer(SCOPE)
        for one in envs:
            for node in one._nodes:
                instrumentation.wrap(node, tracer, float(sample))
    return instrumentation
