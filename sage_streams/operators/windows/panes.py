"""The pieces a :class:`~sage_streams.operators.windows.state.WindowState` is made of: one
window's contents and bounds, a key's open windows, a fired window, and window numbering.

A timestamp ``t`` falls in window number ``floor(t / length)`` of a tumbling or sliding
assignment; numbers stay exact for timestamps under :data:`MAX_WINDOW_NUMBER` window lengths.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_WINDOW_NUMBER",
    "FiredWindow",
    "KeyWindows",
    "Window",
    "in_range",
    "start_of",
    "window_number",
]


@dataclass(frozen=True, slots=True)
class FiredWindow:
    """One window of one key, fired.

    Attributes:
        key: the key the window belongs to.
        start: the window's start, included.
        end: the window's end, excluded; the watermark reached it (or the input ended).
        items: per input index, that input's items in the window, in arrival order; or, when the
            state aggregates, that input's accumulator.
        refire: ``True`` when the window fired before and fires again because of late items;
            ``items`` then holds all of its items, old and new (or the accumulator that has
            folded them all).
    """

    key: Hashable
    start: float
    end: float
    items: tuple[tuple[Any, ...], ...]
    refire: bool = False


class Window:
    """One window of one key: its bounds, its contents per input, and where it is in its life.

    ``token`` names the window's live entry in the heap of windows due to fire (-1: not due);
    entries with another token are stale and skipped. ``contents`` holds, per input, a list of
    items or an accumulator (see :mod:`sage_streams.operators.windows.contents`).
    """

    __slots__ = ("alive", "contents", "end", "fired", "in_purge", "index", "key", "rank", "start", "token")

    def __init__(
        self, key: Hashable, rank: int, start: float, end: float, index: int, contents: list[Any]
    ) -> None:
        self.key = key
        self.rank = rank
        self.start = start
        self.end = end
        self.index = index  # the window's number k, for tumbling and sliding windows
        self.contents = contents
        self.fired = False  # fired at least once: the next firing is a refire
        self.token = -1
        self.in_purge = False  # has an entry in the heap of windows kept for late items
        self.alive = True


class KeyWindows:
    """The windows of one key: by number (tumbling, sliding) or sorted by start (sessions)."""

    __slots__ = ("numbered", "rank", "sessions")

    def __init__(self, rank: int) -> None:
        self.rank = rank  # orders keys by first sight, among windows of equal bounds
        self.numbered: dict[int, Window] = {}
        self.sessions: list[Window] = []

    def windows(self) -> list[Window]:
        return [*self.numbered.values(), *self.sessions]


def start_of(window: Window) -> float:
    return window.start


MAX_WINDOW_NUMBER: Final = 2**50
"""How many window lengths from 0 a timestamp may lie (about 1.1e15): the documented range.

Window bounds are float products, ``k * length``. Within this range each is within an eighth of
a length of its exact value, so windows are never empty and the division that finds ``k`` is off
by at most one; beyond it, floats soon cannot tell neighbouring windows apart. For 1-second
windows the range is about 35 million years either side of the epoch; for 1 ms, 35,700 years.
"""


def in_range(timestamp: float, length: float, reach: float) -> float:
    """``timestamp / length``, checked to be less than :data:`MAX_WINDOW_NUMBER` from 0, with the
    bounds of the item's windows, at most ``reach`` away from it, within float range.

    Raises:
        ValueError: it is not; the error of the item, which names the range.
    """
    quotient = timestamp / length
    # An overflow to inf fails too; the reach is doubled to leave room for rounding.
    if not (abs(quotient) < MAX_WINDOW_NUMBER and math.isfinite(abs(timestamp) + 2 * reach)):
        raise ValueError(
            f"timestamp {timestamp!r} is out of the range of windows of {length!r} s: it must lie"
            f" within 2**50 window lengths of 0 (|timestamp| < {MAX_WINDOW_NUMBER * length:.6g}),"
            " where floats still tell one window from the next, and its windows within float range"
        )
    return quotient


def window_number(timestamp: float, length: float, reach: float = 0.0) -> int:
    """The ``k`` with ``k * length <= timestamp < (k + 1) * length``, in float arithmetic.

    O(1): the division gives ``k`` up to one either way (see :data:`MAX_WINDOW_NUMBER`), and the
    products, which membership is judged by, correct it. ``reach``: how much further than a
    length from the timestamp the item's windows may extend (sliding windows).

    Raises:
        ValueError: ``timestamp`` is out of range (see :func:`in_range`).
    """
    k = math.floor(in_range(timestamp, length, length + reach))
    if k * length > timestamp:
        k -= 1
    elif (k + 1) * length <= timestamp:
        k += 1
    return k
