"""The Prometheus exporter: a scrape during a run is the snapshot, in both text formats; serving."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from sage_streams import LocalEnvironment
from sage_streams.observe.prometheus import collector, metrics_app, register, serve_metrics
from tests.observe.scene import ISSUE_METRICS, Series, check_scene, expected_series, paused, still

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def series_of(families: Iterable[Any]) -> Series:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families
        for sample in family.samples
    }


def without_elapsed(series: Series) -> tuple[Series, float]:
    """The series but ``sage_run_seconds`` (it moves with time alone), and its value."""
    (elapsed,) = [value for (name, _), value in series.items() if name == "sage_run_seconds"]
    return {key: value for key, value in series.items() if key[0] != "sage_run_seconds"}, elapsed


def check_scrape(text: str, openmetrics: bool, before: Any, after: Any) -> None:
    families = openmetrics_families(text) if openmetrics else text_string_to_metric_families(text)
    series, elapsed = without_elapsed(series_of(families))
    assert still(before) == still(after)  # the graph did not move while it was scraped
    assert series == expected_series(before)
    assert before.elapsed <= elapsed <= after.elapsed
    assert {name for name, _ in series} >= ISSUE_METRICS


async def test_a_scrape_over_http_during_a_run_is_the_snapshot_in_both_formats(tmp_path: Path) -> None:
    async with paused(tmp_path) as env:
        check_scene(env.metrics())
        with serve_metrics(env, 0) as server:
            async with httpx.AsyncClient() as client:
                for accept, openmetrics in [(None, False), (OPENMETRICS, True)]:
                    before = env.metrics()
                    headers = {"Accept": accept} if accept else {}
                    response = await client.get(server.url, headers=headers)
                    after = env.metrics()
                    assert response.status_code == 200
                    assert response.headers["content-type"].startswith(
                        "application/openmetrics-text" if openmetrics else "text/plain"
                    )
                    check_scrape(response.text, openmetrics, before, after)
                    # The text format parser reads the OpenMetrics text too, and vice versa for names.
                    if openmetrics:
                        assert response.text.endswith("# EOF\n")


async def test_the_asgi_app_serves_the_snapshot(tmp_path: Path) -> None:
    async with paused(tmp_path) as env:
        app = metrics_app(env)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            for accept, openmetrics in [(None, False), (OPENMETRICS, True)]:
                before = env.metrics()
                response = await client.get("/metrics", headers={"Accept": accept} if accept else {})
                after = env.metrics()
                assert response.status_code == 200
                check_scrape(response.text, openmetrics, before, after)


async def test_the_collector_reads_several_environments_each_its_pipeline() -> None:
    first, second = LocalEnvironment("first"), LocalEnvironment("second")
    first.from_collection([1, 2, 3], name="numbers").sink(lambda x: None, name="out")
    second.from_collection([1], name="numbers").sink(lambda x: None, name="out")
    await first.execute()
    await second.execute()
    registry = CollectorRegistry()
    register([first, second], registry)
    series = series_of(text_string_to_metric_families(generate_latest(registry).decode()))
    records = {
        dict(labels)["pipeline"]: value
        for (name, labels), value in series.items()
        if name == "sage_records_in_total" and dict(labels)["operator"] == "numbers"
    }
    assert records == {"first": 3.0, "second": 1.0}
    # Without checkpoints, windows, joins or shared state, their metrics are not published.
    assert {name for name, _ in series} == {
        "sage_records_in_total",
        "sage_records_out_total",
        "sage_errors_total",
        "sage_retries_total",
        "sage_dead_letters_total",
        "sage_restarts_total",
        "sage_run_seconds",
    }


def test_two_environments_of_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match=r"environments 'job' appear twice: each environment's name"):
        collector(LocalEnvironment("job"), LocalEnvironment("job"))


def test_registering_twice_in_one_registry_is_refused_before_any_read() -> None:
    env = LocalEnvironment("job")
    registry = CollectorRegistry()
    register(env, registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register(env, registry)


async def test_serve_metrics_closes_and_leaves_no_thread() -> None:
    env = LocalEnvironment("job")
    env.from_collection([1, 2], name="numbers").sink(lambda x: None, name="out")
    await env.execute()
    threads = set(threading.enumerate())
    server = serve_metrics(env, 0)
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}/metrics"
    async with httpx.AsyncClient() as client:
        response = await client.get(server.url)
    assert 'sage_records_in_total{operator="numbers",pipeline="job"} 2.0' in response.text
    server.close()
    server.close()  # closing twice is harmless
    assert set(threading.enumerate()) == threads
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(server.url)


def test_serve_metrics_without_a_running_loop_serves_from_a_thread_and_joins_it() -> None:
    env = LocalEnvironment("job")
    env.from_collection([1, 2, 3], name="numbers").sink(lambda x: None, name="out")
    env.run()
    threads = set(threading.enumerate())
    with serve_metrics(env, 0) as server:
        assert {thread.name for thread in set(threading.enumerate()) - threads} == {
            f"sage-metrics:{server.port}"
        }
        with urllib.request.urlopen(server.url, timeout=10) as response:
            text = response.read().decode()
    assert 'sage_records_in_total{operator="numbers",pipeline="job"} 3.0' in text
    assert set(threading.enumerate()) == threads


async def raw_request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def test_serving_on_the_loop_answers_head_refuses_post_and_drops_garbage() -> None:
    env = LocalEnvironment("job")
    env.from_collection([1, 2], name="numbers").sink(lambda x: None, name="out")
    await env.execute()
    threads = set(threading.enumerate())
    async with serve_metrics(env, 0) as server:
        assert set(threading.enumerate()) == threads  # served by this loop: no thread
        get = await raw_request(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = get.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert f"content-length: {len(body)}".encode() in head.lower()
        assert b'sage_records_in_total{operator="numbers",pipeline="job"} 2.0' in body
        only_head = await raw_request(server.port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert only_head.startswith(b"HTTP/1.1 200 ")
        assert only_head.endswith(b"\r\n\r\n")  # the headers only
        post = await raw_request(
            server.port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        assert post.startswith(b"HTTP/1.1 405 ")
        assert await raw_request(server.port, b"not http at all\r\n\r\n") == b""
        # A client that connects and says nothing holds no one up, and is cut off on close.
        _, silent = await asyncio.open_connection("127.0.0.1", server.port)
        async with httpx.AsyncClient() as client:
            response = await client.get(server.url)
        assert response.status_code == 200
    assert asyncio.all_tasks() == {asyncio.current_task()}
    silent.close()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(server.url)


async def test_serve_metrics_into_a_registry_unregisters_on_close() -> None:
    env = LocalEnvironment("job")
    registry = CollectorRegistry()
    with serve_metrics(env, 0, registry=registry):
        assert "sage_restarts_total" in generate_latest(registry).decode()
    assert generate_latest(registry) == b""


def test_a_port_in_use_is_a_clear_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            OSError, match=rf"cannot serve metrics on 127\.0\.0\.1:{port}: the port is in use"
        ):
            serve_metrics(LocalEnvironment("job"), port)


async def test_a_port_in_use_is_a_clear_oserror_on_the_loop_too() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        registry = CollectorRegistry()
        with pytest.raises(
            OSError, match=rf"cannot serve metrics on 127\.0\.0\.1:{port}: the port is in use"
        ):
            serve_metrics(LocalEnvironment("job"), port, registry=registry)
    assert generate_latest(registry) == b""  # the collector it registered is gone again
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize("port", [-1, 65536, "9100", True])
def test_a_bad_port_is_refused(port: Any) -> None:
    with pytest.raises(ValueError, match=r"port must be an int from 0 to 65535, got"):
        serve_metrics(LocalEnvironment("job"), port)


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("prometheus", "prometheus_client", "prometheus"),
        ("prometheus", "h11", "prometheus"),
        ("otel", "opentelemetry", "otel"),
    ],
)
def test_without_the_extra_the_import_error_names_it(module: str, blocked: str, extra: str) -> None:
    code = (
        f"import sys; sys.modules[{blocked!r}] = None; import sage_streams, sage_streams.observe\n"
        "exporters = ('prometheus', 'opentelemetry', 'h11')\n"
        "loaded = [m for m,v in sys.modules.items() if v and m.startswith(exporters)]\n"
        "assert not loaded, loaded\n"
        f"import sage_streams.observe.{module}"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert (
        f"needs {'prometheus-client and h11' if extra == 'prometheus' else 'opentelemetry-api'}: "
        in done.stderr
    )
    assert f"pip install 'sage-streams[{extra}]'" in done.stderr
