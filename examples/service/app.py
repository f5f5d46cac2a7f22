"""A FastAPI service whose lifespan runs a sage_streams graph: ``uvicorn examples.service.app:app``.

- ``POST /events`` (``{"user": "u1", "timestamp": 12.5}``) emits into the graph's push stream;
  while the graph is behind, the request waits (backpressure); once the graph has failed for
  good it answers 503.
- ``GET /stats`` reads the graph's results while it runs (two ``LatestView`` sinks).
- ``GET /health`` is ``env.status``; ``/metrics`` is the Prometheus exporter
  (``sage_streams.observe.prometheus``, extra ``sage-streams[prometheus]``), when installed.

Leaving the lifespan (SIGTERM) drains the graph for at most ``DRAIN_TIMEOUT`` seconds, then writes
the final counts to the file named by ``SERVICE_FINAL_COUNTS``, if set. ``SERVICE_PIPELINE=0``
serves the same routes with no graph behind them (the benchmark's baseline).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from sage_streams import PipelineError, RestartPolicy, StreamError

from .pipeline import build

DRAIN_TIMEOUT = 20.0
log = logging.getLogger("examples.service")


class Event(BaseModel):
    """One event: who, and when (event time, in seconds)."""

    user: str
    timestamp: float


def create_app() -> FastAPI:
    """The app, with a graph of its own (or none under ``SERVICE_PIPELINE=0``)."""
    enabled = os.environ.get("SERVICE_PIPELINE", "1") != "0"
    pipeline = build()
    env = pipeline.env
    received = {"events": 0}

    def failed(error: PipelineError) -> None:
        log.error("the pipeline failed for good, /events answers 503: %s", error)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not enabled:
            yield
            return
        restart = RestartPolicy(3, backoff=1.0)
        async with env.running(drain_timeout=DRAIN_TIMEOUT, restart=restart, on_failure=failed):
            yield
        final = os.environ.get("SERVICE_FINAL_COUNTS")
        if final:
            counts = json.dumps({"received": received["events"], **pipeline.stats()})
            await asyncio.to_thread(Path(final).write_text, counts, encoding="utf-8")

    app = FastAPI(title="sage_streams service example", lifespan=lifespan)

    @app.post("/events", status_code=202)
    async def post_event(event: Event) -> dict[str, int]:
        received["events"] += 1
        if enabled:
            try:
                await pipeline.events.emit(event.model_dump())
            except StreamError as error:
                received["events"] -= 1
                raise HTTPException(503, f"the pipeline is not taking events: {error}") from error
        return {"received": received["events"]}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return {"received": received["events"], **pipeline.stats()}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        status = env.status
        return {"state": status.state, "healthy": status.healthy, "restarts": status.restarts}

    with contextlib.suppress(ImportError):  # the exporter needs sage-streams[prometheus]
        prometheus = importlib.import_module("sage_streams.observe.prometheus")
        app.mount("/metrics", prometheus.metrics_app(env))
    return app


app = create_app()
