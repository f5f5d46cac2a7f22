"""Prometheus: a collector that reads ``env.metrics()`` at scrape time, and two ways to serve it.

The collector holds no counters of its own: each scrape takes one snapshot of each environment
(on the graph's event loop, see :func:`sage_streams.observe.catalog.snapshot`) and turns it into
the metric families of :data:`~sage_streams.observe.catalog.CATALOG`, so exporting costs nothing
per item and the numbers are the ones ``env.metrics()`` gives. Needs the ``prometheus`` extra
(``pip install 'sage-streams[prometheus]'``).

For a script, :func:`serve_metrics` serves ``/metrics`` from the running event loop (or from a
thread of its own when no loop is running); for a service, :func:`metrics_app` is an ASGI app to
mount (``app.mount("/metrics", metrics_app(env))``
in FastAPI or Starlette).

Example::

    from sage_streams.observe.prometheus import serve_metrics

    with serve_metrics(env, 9108):
        await env.execute()  # scrape http://127.0.0.1:9108/metrics meanwhile
"""

from __future__ import annotations

import asyncio
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
    import h11
    from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app, make_wsgi_app
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.core import Metric as Family
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
    raise missing_extra("sage_streams.observe.prometheus", "prometheus-client and h11", "prometheus") from exc

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
    """An HTTP server of the metrics: :func:`serve_metrics` starts it.

    ``host`` and ``port`` are the address it is bound to (the port picked, when 0 was asked
    for); ``url`` is where to scrape. :meth:`close` (or leaving the ``with`` or ``async with``
    block) stops it: the port is free when it returns, and no thread or task is left (an
    ``async with`` also waits for the cancelled request handlers).
    """

    def __init__(self, host: str, port: int, stop: Callable[[], None], on_close: Callable[[], None]) -> None:
        self.host = host
        self.port = port
        self._stop = stop
        self._on_close = on_close
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving (twice is harmless)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stop()
        finally:
            self._on_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> MetricsServer:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving"
        return f"<MetricsServer {self.url} {state}>"


def _cannot_bind(exc: OSError, host: str, port: int) -> OSError:
    if exc.errno == errno.EADDRINUSE:
        return OSError(
            exc.errno, f"cannot serve metrics on {host}:{port}: the port is in use; pick another one"
        )
    return OSError(exc.errno, f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}")


def _in_a_thread(
    app: Callable[..., Any], host: str, port: int, on_close: Callable[[], None]
) -> MetricsServer:
    """The WSGI app served from a thread of its own (one more per request)."""
    server_class = _Server6 if ":" in host else _Server
    try:
        server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
    except OSError as exc:
        on_close()
        raise _cannot_bind(exc, host, port) from exc
    bound: int = server.server_address[1]
    # No polling: a thread waking ten times a second costs a CPU-bound event loop ~10% (the
    # GIL hand-overs), so the server blocks in select() and stopping wakes it with a connection.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": None}, name=f"sage-metrics:{bound}"
    )
    thread.start()

    def stop() -> None:
        stopping = threading.Thread(target=server.shutdown, name=f"sage-metrics-stop:{bound}")
        stopping.start()
        while stopping.is_alive():  # the wake-up may come before the stop request: knock again
            with contextlib.suppress(OSError), socket.create_connection((host, bound), timeout=1):
                pass
            stopping.join(0.05)
        server.server_close()
        thread.join()

    return MetricsServer(host, bound, stop, on_close)


def _on_the_loop(
    loop: asyncio.AbstractEventLoop,
    registry: CollectorRegistry,
    host: str,
    port: int,
    on_close: Callable[[], None],
) -> MetricsServer:
    """The registry served by the running event loop (HTTP/1.1 parsed by ``h11``, one request
    per connection): a scrape is a few milliseconds of the loop between two steps of the graph,
    where a server thread would wait for the GIL of a busy loop at every step of its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        on_close()
        raise _cannot_bind(exc, host, port) from exc
    sock.setblocking(False)
    listening: list[asyncio.Server] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        made._tasks.add(task)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await _answer(registry, reader, writer)
        except (TimeoutError, OSError, h11.ProtocolError):
            pass  # a client gone, silent or speaking no HTTP: its connection closes, nothing else
        finally:
            writer.close()
            made._tasks.discard(task)

    async def serve() -> None:
        server = await asyncio.start_server(answer, sock=sock)
        listening.append(server)
        await server.serve_forever()

    serving = loop.create_task(serve(), name=f"sage-metrics:{sock.getsockname()[1]}")

    def stop() -> None:
        if listening:
            listening[0].close()  # stops listening and closes the socket now
        else:
            sock.close()
        serving.cancel()
        for task in list(made._tasks):
            task.cancel()

    made = MetricsServer(host, sock.getsockname()[1], stop, on_close)
    made._tasks.add(serving)
    return made


REQUEST_TIMEOUT = 10.0
"""Seconds a client may take to send its request and read the answer."""


async def _answer(
    registry: CollectorRegistry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Read one request and answer it: the metrics for ``GET``/``HEAD``, 405 otherwise."""
    connection = h11.Connection(h11.SERVER)
    request: h11.Request | None = None
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    if request is None:
        return
    if request.method not in (b"GET", b"HEAD"):
        status, kind, body = 405, "text/plain; charset=utf-8", b"only GET and HEAD\n"
    else:
        accept = next((value.decode("latin-1") for name, value in request.headers if name == b"accept"), "")
        encoder, kind = choose_encoder(accept)
        status, body = 200, encoder(registry)
    headers = [("content-type", kind), ("content-length", str(len(body))), ("connection", "close")]
    writer.write(connection.send(h11.Response(status_code=status, headers=headers)) or b"")
    if request.method != b"HEAD":
        writer.write(connection.send(h11.Data(data=body)) or b"")
    writer.write(connection.send(h11.EndOfMessage()) or b"")
    await writer.drain()


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
    registered in it for as long as the server runs.

    Called in a running event loop (``with serve_metrics(env, port):`` in ``async`` code), it
    serves from that loop: a scrape takes a few milliseconds of it between two steps of the
    graph. Called with no loop running, it serves from a thread of its own, whose every step
    waits for the GIL while the graph's loop computes: there a scrape takes up to seconds and
    costs the graph more (see ``benchmarks/observe.py``). Either way the snapshot is taken on
    the graph's event loop, so the loop must be running and not blocked.

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
        on_close: Callable[[], None] = lambda: None  # noqa: E731 - the registry goes with the server
    else:
        served = registry
        served.register(made)
        on_close = lambda: served.unregister(made)  # noqa: E731
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _in_a_thread(make_wsgi_app(served), host, port, on_close)
    return _on_the_loop(loop, served, host, port, on_close)
