"""The public test kit: helpers for testing code that builds sage_streams graphs.

``leftover_tasks()`` lists the tasks of the running loop other than the caller's: after a graph
has ended, however it ended, the list must be empty (no operator, feeder or run task survives).

Example::

    async def test_pipeline():
        await env.execute()
        assert leftover_tasks() == set()
"""

from __future__ import annotations

import asyncio

__all__ = ["leftover_tasks"]


def leftover_tasks() -> set[asyncio.Task[object]]:
    """Tasks of the running loop other than the calling one."""
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current}
