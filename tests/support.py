"""Helpers the tests share: one copy each, imported as ``from tests.support import ...``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from sage_streams.operators.joins.state import JoinState


@contextlib.contextmanager
def watching_lookups() -> Iterator[asyncio.Event]:
    """An event set once a join has come down to a lookup (other input ended, a partner a key)."""
    started = asyncio.Event()
    original = JoinState.lookup

    def lookup(self: JoinState, side: int) -> Any:
        found = original(self, side)
        if found is not None:
            started.set()
        return found

    JoinState.lookup = lookup  # type: ignore[method-assign]
    try:
        yield started
    finally:
        JoinState.lookup = original  # type: ignore[method-assign]
