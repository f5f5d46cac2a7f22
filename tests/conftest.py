"""Shared fixtures: every async test must leave no task behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sage_streams.testing import leftover_tasks


@pytest.fixture(autouse=True)
async def no_task_left() -> AsyncIterator[None]:
    """Fail a test that ends with tasks of its graph still alive."""
    yield
    # A yield, not a wait: callbacks scheduled by the test's last statement run (done-callbacks,
    # wake-ups), so a task that has already ended is not counted.
    await asyncio.sleep(0)
    assert leftover_tasks() == set()
