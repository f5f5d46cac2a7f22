"""The Prometheus exporter: a scrape during a run is the snapshot, in both text formats; serving."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
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


@pytest.mark.parametrize("port", [-1, 65536, "9100", True])
def test_a_bad_port_is_refused(port: Any) -> None:
    with pytest.raises(ValueError, match=r"port must be an int from 0 to 65535, got"):
        serve_metrics(LocalEnvironment("job"), port)


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [("prometheus", "prometheus_client", "prometheus"), ("otel", "opentelemetry", "otel")],
)
def test_without_the_extra_the_import_error_names_it(module: str, blocked: str, extra: str) -> None:
    code = (
        f"import sys; sys.modules[{blocked!r}] = None; import sage_streams, sage_streams.observe\n"
        "loaded = [m for m,v in sys.modules.items() if v and m.startswith(('prometheus', 'opentelemetry'))]\n"
        "assert not loaded, loaded\n"
        f"import sage_streams.observe.{module}"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert f"needs {'prometheus-client' if extra == 'prometheus' else 'opentelemetry-api'}: " in done.stderr
    assert f"pip install 'sage-streams[{extra}]'" in done.stderr
