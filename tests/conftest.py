"""Shared fixtures: every async test must leave no task behind; real servers for connectors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from sage_streams.testing import leftover_tasks
from servers import Server, start


@pytest.fixture(autouse=True)
async def no_task_left() -> AsyncIterator[None]:
    """Fail a test that ends with tasks of its graph still alive."""
    yield
    # A yield, not a wait: callbacks scheduled by the test's last statement run (done-callbacks,
    # wake-ups), so a task that has already ended is not counted.
    await asyncio.sleep(0)
    assert leftover_tasks() == set()


# Real servers for the connectors' tests, one of each per session, started on first use and
# stopped (by their PID) when the session ends; a test that stops or kills its server starts
# one of its own with ``servers.start``. A missing binary fails the test with the install
# command (``servers.ServerMissing``), never a skip.


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Server]:
    with start("redis") as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    with start("postgres") as server:
        yield server


@pytest.fixture(scope="session")
def nats_server() -> Iterator[Server]:
    with start("nats") as server:
        yield server
