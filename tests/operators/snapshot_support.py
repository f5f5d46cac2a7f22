"""What the snapshot tests share: the user items they feed, a clock a restart can move to, the
plain-data round trip of entries, and the check that a restored operator goes on exactly.

Each family's test describes a run as a list of steps, each a function of the operator returning
what it observed (outputs, side outputs, metrics). :func:`check_resumes` runs the steps once
without a break, and once cut in two: a snapshot after the prefix, passed through a plain-data
round trip, restored into a fresh operator that runs the suffix. Both must observe the same.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hypothesis import strategies as st

T = TypeVar("T")
Op = TypeVar("Op")

PLAIN = (type(None), bool, int, float, str, bytes)
CONTAINERS = (list, tuple, set, frozenset)


@dataclass(frozen=True)
class Ev:
    """A user item: a key, a timestamp and a value. Snapshots may hold it, not look inside."""

    k: int
    ts: float
    v: int


def key_of(item: Ev) -> int:
    return item.k


def ts_of(item: Ev) -> float:
    return item.ts


events = st.builds(Ev, st.integers(0, 3), st.integers(0, 40).map(lambda t: t / 2), st.integers(0, 5))
"""Items of few keys and near timestamps, so that they meet, fire and expire."""


def check_plain(value: object, user: tuple[type, ...] = (Ev,)) -> None:
    """Assert that ``value`` holds only plain data, apart from instances of ``user``: exact
    types, so that a ``list`` subclass or an internal record is caught."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind in PLAIN or kind in user:
            continue
        if kind is dict:
            assert isinstance(item, dict)
            pending.extend(item.keys())
            pending.extend(item.values())
        elif kind in CONTAINERS:
            assert isinstance(item, (list, tuple, set, frozenset))
            pending.extend(item)
        else:
            raise AssertionError(f"a snapshot holds {item!r}, of type {kind.__qualname__}: not plain data")


def round_trip(entries: T, user: tuple[type, ...] = (Ev,)) -> T:
    """``entries`` as a store would give them back: checked plain, then copied through."""
    check_plain(entries, user)
    return copy.deepcopy(entries)


def now(awaitable: Awaitable[T]) -> T:
    """The result of an operator's coroutine, which never waits (no loop needed)."""
    coroutine = awaitable.__await__()
    try:
        coroutine.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    raise AssertionError("the operator waited")


def plan_steps(
    plan: Sequence[tuple[Any, ...]],
    observed: Callable[[Any, Any], Any],
    extra: Mapping[str, Callable[..., Callable[[Any], Any]]] | None = None,
) -> list[Callable[[Any], Any]]:
    """The steps of a plan of actions ``(kind, index, *args)``, then the finish: each calls the
    operator's ``on_<kind>(index, *args)`` and gives ``observed(op, output)``; ``extra`` makes
    the steps of other kinds from ``(index, *args)``. Left out is what the runtime never does:
    feed or end an input that has ended."""
    ended: set[int] = set()
    steps = []
    for kind, index, *args in plan:
        if extra is not None and kind in extra:
            steps.append(extra[kind](index, *args))
        elif index not in ended:
            ended.update([index] if kind == "end" else [])
            steps.append(_call(kind, index, args, observed))
    return [*steps, lambda op: observed(op, now(op.on_finish()))]


def _call(
    kind: str, index: int, args: list[Any], observed: Callable[[Any, Any], Any]
) -> Callable[[Any], Any]:
    def step(op: Any) -> Any:
        return observed(op, now(getattr(op, f"on_{kind}")(index, *args)))

    return step


class StepClock:
    """A clock the tests move by hand; ``time()`` is ``now() + offset``. A restart reads another
    monotonic clock for the same wall time: :meth:`restarted`."""

    def __init__(self, reading: float = 0.0, offset: float = 1000.0) -> None:
        self.reading = reading
        self.offset = offset

    def now(self) -> float:
        return self.reading

    def time(self) -> float:
        return self.reading + self.offset

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Any:
        raise AssertionError("the tests call on_timer themselves")

    def restarted(self) -> StepClock:
        """The clock of a new process at the same moment: the same wall time, another origin."""
        return StepClock(self.reading + 500.0, self.offset - 500.0)


@dataclass
class Resumable(Generic[Op]):
    """How to make, snapshot and restore the operator of one test; ``build(None)`` makes the
    first, ``build(previous)`` the one that resumes after ``previous`` (a restart)."""

    build: Callable[[Op | None], Op]
    snapshot: Callable[[Op], Any]
    restore: Callable[[Op, Any], None]
    user: tuple[type, ...] = (Ev,)


def check_resumes(resumable: Resumable[Op], steps: Sequence[Callable[[Op], Any]], cut: int) -> None:
    """Steps run without a break observe what steps cut at ``cut`` and resumed observe, and the
    snapshot does not change when the first operator goes on after it."""
    whole = resumable.build(None)
    expected = [step(whole) for step in steps]
    first = resumable.build(None)
    observed = [step(first) for step in steps[:cut]]
    snapshot = resumable.snapshot(first)
    kept = copy.deepcopy(snapshot)
    second = resumable.build(first)
    resumable.restore(second, round_trip(snapshot, resumable.user))
    observed += [step(second) for step in steps[cut:]]
    assert observed == expected
    assert [step(first) for step in steps[cut:]] == expected[cut:]
    assert snapshot == kept


def check_changes(
    resumable: Resumable[Op],
    changes: Callable[[Op], tuple[dict[Any, Any], list[Any]]],
    steps: Sequence[Callable[[Op], Any]],
    taken: set[int],
    restart: int | None,
) -> None:
    """An incremental snapshot's changes, applied in turn to what a store held, give exactly
    the whole snapshot: after each step in ``taken`` and at the end; and after a restart at
    ``restart`` (restored from that store), the changes are those since the restore."""
    op = resumable.build(None)
    store: dict[Any, Any] = {}

    def apply() -> None:
        entries, gone = changes(op)
        for key in gone:
            store.pop(key, None)
        store.update(round_trip(entries, resumable.user))

    for done in range(len(steps) + 1):
        if done in taken:
            apply()
            assert store == round_trip(resumable.snapshot(op), resumable.user)
        if done == restart:
            apply()
            restored = resumable.build(op)
            resumable.restore(restored, round_trip(store, resumable.user))
            op = restored
        if done < len(steps):
            steps[done](op)
    apply()
    assert store == round_trip(resumable.snapshot(op), resumable.user)
