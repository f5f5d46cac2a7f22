"""Prometheus: a collector that reads ``env.metrics()`` at scrape time, and two ways to serve it.

The collector holds no counters of its own: each scrape takes one snapshot of each environment
(on the graph's event loop, see :func:`sage_streams.observe.catalog.snapshot`) and turns it into
the metric families of :data:`~sage_streams.observe.catalog.CATALOG`, so exporting costs nothing
per item and the numbers are the ones ``env.metrics()`` gives. Needs the ``prometheus`` extra
(``pip install 'sage-streams[prometheus]'``).

For a script, :func:`serve_metrics` serves ``/metrics`` from a thread of its own; for a
service, :func:`metrics_app` is an ASGI app to mount (``app.mount("/metrics", metrics_app(env))``
in FastAPI or Starlette).

Example::

    from sage_streams.observe.prometheus import serve_metrics

    with serve_metrics(env, 9108):
        await env.execute()  # scrape http://127.0.0.1:9108/metrics meanwhile
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sage_streams.observe.catalog import CATALOG, Metric, missing_extra, read

try:
    from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app, make_wsgi_app
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.core import Metric as Family
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
    raise missing_extra("sage_streams.observe.prometheus", "prometheus-client", "prometheus") from exc

if TYPE_CHECKING:
    from sage_streams.api.environment import LocalEnvironment

__all__ = ["MetricsServer", "SageCollector", "collector", "metrics_app", "register", "serve_metrics"]


class SageCollector(Collector):
    """A Prometheus collector of the metrics of one or more environments.

    Each environment's series carry its name as the ``pipeline`` label, so two environments
    of one name would publish the same series: they are refused.
    """

    def __init__(self, envs: Iterable[LocalEnvironment]) -> None:
        self.envs: tuple[LocalEnvironment, ...] = tuple(envs)
        if not self.envs:
            raise ValueError("a collector needs at least one environment")
        names = [env.name for env in self.envs]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(
                f"environments {', '.join(map(repr, twice))} appear twice: each environment's name "
                "is its 'pipeline' label, so give every environment of one collector its own name"
            )

    def describe(self) -> Iterator[Family]:
        """Every family this collector can publish, without samples: a registry checks the names
        with it, so that registering reads no metrics."""
        for metric in CATALOG:
            yield _family(metric)

    def collect(self) -> Iterator[Family]:
        """One snapshot per environment, as metric families; a family with no series (the
        checkpoint metrics without checkpoints, the window metrics without a window) is left
        out."""
        readings = [read(env) for env in self.envs]
        for metric in CATALOG:
            family = _family(metric)
            for reading in readings:
                for labels, value in metric.read(reading):
                    family.add_metric([reading.pipeline, *labels], value)
            if family.samples:
                yield family


def _family(metric: Metric) -> CounterMetricFamily | GaugeMetricFamily:
    labels = ["pipeline", *metric.labels]
    if metric.kind == "counter":
        return CounterMetricFamily(metric.name, metric.help, labels=labels)
    return GaugeMetricFamily(metric.name, metric.help, labels=labels)


def _environments(env: LocalEnvironment | Sequence[LocalEnvironment]) -> list[LocalEnvironment]:
    return list(env) if isinstance(env, Sequence) else [env]


def collector(env: LocalEnvironment | Sequence[LocalEnvironment], *more: LocalEnvironment) -> SageCollector:
    """A collector of the metrics of ``env`` (and of ``more`` environments), not registered."""
    return SageCollector([*_environments(env), *more])


def register(
    env: LocalEnvironment | Sequence[LocalEnvironment], registry: CollectorRegistry | None = None
) -> SageCollector:
    """Register a collector of ``env``'s metrics in ``registry`` (the default, global
    ``prometheus_client.REGISTRY`` when ``None``) and return it.

    Raises:
        ValueError: the registry already has a collector of these names (one collector covers
            several environments: pass them all at once).
    """
    made = collector(env)
    (REGISTRY if registry is None else registry).register(made)
    return made


def metrics_app(
    env: LocalEnvironment | Sequence[LocalEnvironment], *, registry: CollectorRegistry | None = None
) -> Callable[..., Any]:
    """An ASGI app serving ``env``'s metrics in the Prometheus text or OpenMetrics format.

    It serves a registry of its own holding only the collector, or ``registry`` with the
    collector registered in it (``prometheus_client.REGISTRY`` adds the process metrics). The
    scrape runs on the event loop that serves it, so it sees the graph between two of its
    steps. Mount it: ``app.mount("/metrics", metrics_app(env))``.
    """
    if registry is None:
        registry = CollectorRegistry(auto_describe=True)
    registry.register(collector(env))
    app: Callable[..., Any] = make_asgi_app(registry)
    return app


class _QuietHandler(WSGIRequestHandler):
    """Logs nothing, and gives up on a client silent for 10 s (closing waits for its thread)."""

    timeout = 10.0

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing: a scrape a second would fill stderr."""


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per request, joined when the server closes (no thread is left behind)."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """An HTTP server of ``/metrics`` in a thread of its own: :func:`serve_metrics` starts it.

    ``host`` and ``port`` are the address it is bound to (the port picked, when 0 was asked
    for); ``url`` is where to scrape. :meth:`close` (or leaving the ``with`` block) stops it and
    waits for its threads.
    """

    def __init__(self, app: Callable[..., Any], host: str, port: int, on_close: Callable[[], None]) -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
        except OSError as exc:
            on_close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(
                    exc.errno, f"cannot serve metrics on {host}:{port}: the port is in use; pick another one"
                ) from exc
            raise OSError(exc.errno, f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        self.host = host
        self.port: int = self._server.server_address[1]
        self._on_close = on_close
        self._closed = False
        # No polling: a thread waking ten times a second costs a CPU-bound event loop ~10% (the
        # GIL hand-overs), so the server blocks in select() and close() wakes it with a connection.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": None},
            name=f"sage-metrics:{self.port}",
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and wait for the server's threads (those of requests in progress too)."""
        if self._closed:
            return
        self._closed = True
        stopping = threading.Thread(target=self._server.shutdown, name=f"sage-metrics-stop:{self.port}")
        stopping.start()
        while stopping.is_alive():  # the wake-up may come before the stop request: knock again
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=1):
                pass
            stopping.join(0.05)
        self._server.server_close()
        self._thread.join()
        self._on_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving"
        return f"<MetricsServer {self.url} {state}>"


def serve_metrics(
    env: LocalEnvironment | Sequence[LocalEnvironment],
    port: int,
    host: str = "127.0.0.1",
    *,
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Serve ``env``'s metrics over HTTP on ``host:port`` (any path; ``/metrics`` by habit).

    ``port=0`` picks a free port (read it from ``.port``). Without ``registry`` the server
    serves a registry of its own holding only the collector; with one, the collector is
    registered in it for as long as the server runs. A scrape from the server's thread takes
    the snapshot on the graph's event loop, so the loop must be running and not blocked.

    Raises:
        OSError: the address cannot be bound (the message names ``host:port``; a port in use
            says so).
        ValueError: ``port`` is not in 0..65535.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int from 0 to 65535, got {port!r}")
    made = collector(env)
    if registry is None:
        served = CollectorRegistry(auto_describe=True)
        served.register(made)
        return MetricsServer(make_wsgi_app(served), host, port, on_close=lambda: None)
    registry.register(made)
    return MetricsServer(make_wsgi_app(registry), host, port, on_close=lambda: registry.unregister(made))
