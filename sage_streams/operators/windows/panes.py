"""The pieces a :class:`~sage_streams.operators.windows.state.WindowState` is made of: one
window's contents and bounds, a key's open windows, a fired window, and window numbering.

A timestamp ``t`` falls in window number ``floor(t / length)`` of a tumbling or sliding
assignment; numbers stay exact for timestamps under :data:`MAX_WINDOW_NUMBER` window lengths.
A checkpoint holds a window as a plain list, :data:`FrozenWindow`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

__all__ = [
    "MAX_WINDOW_NUMBER",
    "FiredWindow",
    "FrozenWindow",
    "KeyWindows",
    "Lagging",
    "Stale",
    "Window",
    "freeze",
    "in_range",
    "requeued",
    "spans",
    "stale",
    "start_of",
    "thaw",
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


FrozenWindow: TypeAlias = list[Any]
"""A window in a checkpoint: ``[start, end, number, contents, fired, due, kept]``, where
``due`` says it waits to fire and ``kept`` that it waits in the heap of windows kept for late
items; the key and its rank are the key's. Lists, not tuples: JSON's own, so that the default
codec writes them as they are, with no tags (measured: 40% less time per key)."""


def freeze(state: KeyWindows, copied: Callable[[list[Any]], list[Any]]) -> list[Any]:
    """A key's ``[rank, windows]``, each window a :data:`FrozenWindow`, its contents ``copied``."""
    windows = state.sessions or state.numbered.values()  # a key has windows of one kind
    return [
        state.rank,
        [[w.start, w.end, w.index, copied(w.contents), w.fired, w.token >= 0, w.in_purge] for w in windows],
    ]


def thaw(
    key: Hashable,
    frozen: Sequence[Any],
    copied: Callable[[list[Any]], list[Any]],
    sessions: bool,
) -> KeyWindows:
    """The windows of ``key`` that :func:`freeze` made ``frozen``, their contents ``copied``. A
    due window gets token 0 for now: :func:`requeued` gives it its heap entry and a real token."""
    rank, windows = frozen
    state = KeyWindows(rank)
    for start, end, number, contents, fired, due, kept in windows:
        window = Window(key, rank, start, end, number, copied(contents))
        window.fired, window.in_purge, window.token = fired, kept, 0 if due else -1
        if sessions:
            state.sessions.append(window)
        else:
            state.numbered[number] = window
    return state


Lagging: TypeAlias = list[tuple[int, float, float]]
"""Live heap entries behind their windows' bounds, in a checkpoint: ``(rank, start, at)``, the
window named by its key's rank and its start, and the end or deadline its entry is at."""

Stale: TypeAlias = tuple[list[tuple[float, float, int]], list[float], Lagging, Lagging]
"""The heap entries a checkpoint cannot make from the windows alone: ``(end, start, rank)`` of
the dead entries of the heap of windows due to fire, the deadlines of the dead entries of the heap
of windows kept for late items, and the live entries of either heap, one per window at most, that
lag behind their windows' bounds (sessions only)."""


def stale(
    due: Iterable[tuple[float, float, int, int, Window]],
    kept: Iterable[tuple[float, int, Window]],
    lateness: float,
) -> Stale:
    """The entries of the heaps that are not at a live window's current bounds.

    Dead entries are those of windows merged away, fired or dropped since, or requeued since
    (a session that starts earlier). Lagging entries are the live ones of sessions that grew
    since they were queued: a later end is requeued only when the entry comes up, and a kept
    session is kept again at its new end only when its deadline comes. Neither fires or drops
    anything, but each sets :meth:`WindowState.next_deadline` earlier (a processing-time timer, a
    no-op ``advance``), and a lagging entry moves when it comes up, so a restored state keeps them
    as they are to go on exactly. A window is named by its key's rank and its start (a session's
    entry has its start: a session that starts earlier is requeued at once).
    """
    stale_due: list[tuple[float, float, int]] = []
    stale_kept: list[float] = []
    lagging_due: Lagging = []
    lagging_kept: Lagging = []
    for end, start, rank, token, w in due:
        if token != w.token:
            stale_due.append((end, start, rank))
        elif end != w.end:
            lagging_due.append((rank, start, end))
    for deadline, _, w in kept:
        if not w.alive:
            stale_kept.append(deadline)
        elif deadline != w.end + lateness:
            lagging_kept.append((w.rank, w.start, deadline))
    return stale_due, stale_kept, lagging_due, lagging_kept


def requeued(keys: Iterable[KeyWindows], lateness: float, stale: Stale) -> tuple[list[Any], list[Any], int]:
    """The heaps of windows due to fire and kept for late items, for thawed ``keys`` and the
    ``stale`` entries, and the last token given. A live window has its entry where ``stale``
    says it lags, else at its current bounds; a dead entry points to a dead window, which every
    heap pop skips."""
    stale_due, stale_kept, lagging_due, lagging_kept = stale
    due_at = {(rank, start): end for rank, start, end in lagging_due}
    kept_at = {(rank, start): deadline for rank, start, deadline in lagging_kept}
    dead = Window(None, 0, 0.0, 0.0, 0, [])
    dead.alive = False
    due: list[Any] = []
    kept: list[Any] = []
    token = 0
    for state in keys:
        for window in state.windows():
            # Only sessions lag: windows by number, a million at a restore, skip the look-ups.
            if window.token >= 0:
                token += 1
                window.token = token
                end = due_at.get((window.rank, window.start), window.end) if due_at else window.end
                due.append((end, window.start, window.rank, token, window))
            if window.in_purge:
                token += 1
                deadline = window.end + lateness
                if kept_at:
                    deadline = kept_at.get((window.rank, window.start), deadline)
                kept.append((deadline, token, window))
    for end, start, rank in stale_due:
        token += 1
        due.append((end, start, rank, token, dead))
    for deadline in stale_kept:
        token += 1
        kept.append((deadline, token, dead))
    heapq.heapify(due)
    heapq.heapify(kept)
    return due, kept, token


def spans(timestamp: float, size: float, slide: float, shape: str) -> list[tuple[int, float, float]]:
    """``(k, start, end)`` of every window of ``size`` sliding by ``slide`` (tumbling when they
    are equal) holding ``timestamp``, the latest first; ``shape`` names them in errors.

    Raises:
        ValueError: a timestamp out of range, or in no window (a slide within rounding of the size).
    """
    if slide == size:
        k = window_number(timestamp, size)
        return [(k, k * size, (k + 1) * size)]
    # Window k is [k * slide, k * slide + size): the latest to start by the timestamp holds
    # it (slide <= size), and earlier ones while they reach it; about size / slide in all.
    k = window_number(timestamp, slide, size)
    found = []
    while (end := k * slide + size) > timestamp:
        found.append((k, k * slide, end))
        k -= 1
    if not found:  # slide within rounding of size: the latest window may end by the timestamp
        raise ValueError(
            f"timestamp {timestamp!r} falls between the windows of {shape}: in float"
            " arithmetic no window [k * slide, k * slide + size) holds it; use tumbling windows"
            " for a slide this close to the size"
        )
    return found


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
