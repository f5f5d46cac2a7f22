"""Peer implementations: the same workloads through the libraries a user would pick instead.

One function per (workload, peer), each written the way that library's documentation shows, and
each returning exactly the plain loop's result (the harness checks). The peers are aiostream,
reactivex (RxPY 4 and later), streamz and bytewax; each is imported inside its functions, so a
peer that is not installed costs nothing until it is asked for. :func:`skip_reason` tells the
harness, before it measures, that a peer cannot be imported; the table then says so instead of
failing.

Importing this module registers the peers into :data:`benchmarks.workloads.WORKLOADS`, after the
baselines and sage_streams; ``WORKLOADS`` is re-exported here for the harness to use.
"""

from __future__ import annotations

import importlib
import operator
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.workloads import (
    WINDOW,
    WORKLOADS,
    Impl,
    W2Input,
    W3Input,
    W4Input,
    _w4_result,
    divisible_by_3,
    double,
    enrich,
    key_of,
    user_id,
)

__all__ = ["PEER_MODULES", "PEERS", "WORKLOADS", "skip_reason"]

PEER_MODULES = {
    "aiostream": "aiostream",
    "reactivex": "reactivex",
    "streamz": "streamz",
    "bytewax": "bytewax",
}
"""Peer implementation name -> the module it needs."""


def skip_reason(impl: str) -> str | None:
    """Why ``impl`` cannot run here (its library does not import), or None if it can.

    Anything an import raises counts, not only a missing module: a peer built for another
    platform or Python fails in its own ways, and none of them may stop the harness.
    """
    module = PEER_MODULES.get(impl)
    if module is None:
        return None
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return f"{module} is not installed (pip install {module})"
        return f"import {module} failed: {exc}"
    except Exception as exc:
        return f"import {module} failed: {type(exc).__name__}: {exc}"
    return None


def _window_of(event: dict[str, Any]) -> tuple[Any, float]:
    """The (key, window start) an event falls in by its own timestamp, as the plain loop has it."""
    return event["key"], (event["timestamp"] // WINDOW) * WINDOW


def _add_event(sums: dict[tuple[Any, float], int], event: dict[str, Any]) -> dict[tuple[Any, float], int]:
    window = _window_of(event)
    sums[window] = sums.get(window, 0) + event["value"]
    return sums


def _count(acc: tuple[int, int], event: dict[str, Any]) -> tuple[int, int]:
    """One merged event into (count, sum of values), as ``_w2_result`` folds them."""
    return acc[0] + 1, acc[1] + event["value"]


def _tally(acc: tuple[int, int], event: dict[str, Any]) -> tuple[int, int]:
    """One enriched event into (count, checksum), as ``_w3_result`` folds them."""
    return acc[0] + 1, acc[1] + (event["seq"] if event["tier"] == "gold" else 0)


# -- aiostream: async-generator operators piped together; no join, no windows ------------------


async def w1_aiostream(n: int) -> int:
    """``iterate | map(double) | filter(divisible_by_3) | reduce(add)``, awaited for the last value."""
    from aiostream import pipe, stream

    xs = stream.iterate(range(n)) | pipe.map(double) | pipe.filter(divisible_by_3)
    total: int = await (xs | pipe.reduce(operator.add, initializer=0))
    return total


async def w2_aiostream(sources: W2Input) -> tuple[int, int]:
    """``merge`` of the four ``iterate`` streams, then ``reduce`` to the count and the sum."""
    from aiostream import pipe, stream

    merged = stream.merge(*(stream.iterate(events) for events in sources))
    result: tuple[int, int] = await (merged | pipe.reduce(_count, initializer=(0, 0)))
    return result


async def w3_aiostream(data: W3Input) -> tuple[int, int]:
    """aiostream has no join: the profiles stream is listed into a dict first, then the
    activities stream looks each user up, drops the misses, enriches and reduces to the tally.
    """
    from aiostream import pipe, stream

    activities, profiles = data
    table = {user_id(p): p for p in await stream.list(stream.iterate(profiles))}
    pairs = stream.iterate(activities) | pipe.map(lambda a: (a, table.get(user_id(a))))
    joined = pairs | pipe.filter(lambda pair: pair[1] is not None)
    result: tuple[int, int] = await (joined | pipe.map(enrich) | pipe.reduce(_tally, initializer=(0, 0)))
    return result


async def w4_aiostream(events: W4Input) -> tuple[int, int, int]:
    """aiostream has no windows: ``reduce`` folds each event into a dict keyed by its key and
    event-time window start.
    """
    from aiostream import pipe, stream

    sums = await (stream.iterate(events) | pipe.reduce(_add_event, initializer={}))
    return _w4_result(sums)


# -- reactivex (RxPY): synchronous observables on the current-thread scheduler -----------------


def w1_reactivex(n: int) -> int:
    """``from_iterable.pipe(map, filter, sum())``, ``run()`` for the single value."""
    import reactivex as rx
    from reactivex import operators as ops

    total: int = rx.from_iterable(range(n)).pipe(ops.map(double), ops.filter(divisible_by_3), ops.sum()).run()
    return total


def w2_reactivex(sources: W2Input) -> tuple[int, int]:
    """``merge`` of the four ``from_iterable`` observables, ``reduce`` to the count and the sum."""
    import reactivex as rx
    from reactivex import operators as ops

    merged = rx.merge(*(rx.from_iterable(events) for events in sources))
    result: tuple[int, int] = merged.pipe(ops.reduce(_count, (0, 0))).run()
    return result


def w3_reactivex(data: W3Input) -> tuple[int, int]:
    """Rx's ``join`` pairs items by overlapping time windows, not by key (every activity with every
    profile, then a filter: 180 million pairs), so the keyed join is done the Rx way for a finished
    side: the profiles observable reduced ``to_dict`` and run first, then each activity looks its
    user up, misses dropped, enriched, reduced. (``with_latest_from`` the dict's observable was
    measured before: its order against the activities depends on the trampoline scheduler's clock,
    and some runs dropped every activity.)
    """
    import reactivex as rx
    from reactivex import operators as ops

    activities, profiles = data
    table: dict[Any, Any] = rx.from_iterable(profiles).pipe(ops.to_dict(user_id)).run()
    result: tuple[int, int] = (
        rx.from_iterable(activities)
        .pipe(
            ops.map(lambda activity: (activity, table.get(user_id(activity)))),
            ops.filter(lambda pair: pair[1] is not None),
            ops.map(enrich),
            ops.reduce(_tally, (0, 0)),
        )
        .run()
    )
    return result


def w4_reactivex(events: W4Input) -> tuple[int, int, int]:
    """Rx's ``window_with_time`` cuts by scheduler (processing) time, so event-time windows are
    ``group_by((key, window start))``, each group summed with ``sum(value)`` as it completes (at
    the end of the stream), and the sums gathered with ``to_dict``.
    """
    import reactivex as rx
    from reactivex import operators as ops

    sums: dict[tuple[Any, float], int] = (
        rx.from_iterable(events)
        .pipe(
            ops.group_by(_window_of),
            ops.flat_map(
                lambda group: group.pipe(
                    ops.sum(lambda event: event["value"]),
                    ops.map(lambda total, window=group.key: (window, total)),
                )
            ),
            ops.to_dict(operator.itemgetter(0), operator.itemgetter(1)),
        )
        .run()
    )
    return _w4_result(sums)


# -- streamz: a push graph of Stream nodes, fed synchronously with emit() ----------------------


class _Last:
    """A sink that keeps the last value it was given (streamz emits running values)."""

    def __init__(self, initial: Any) -> None:
        self.value = initial

    def __call__(self, value: Any) -> None:
        self.value = value


def w1_streamz(n: int) -> int:
    """``source.map(double).filter(divisible_by_3).accumulate(add)``; the last running sum wins."""
    from streamz import Stream

    source = Stream()
    last = _Last(0)
    source.map(double).filter(divisible_by_3).accumulate(operator.add, start=0).sink(last)
    for x in range(n):
        source.emit(x)
    total: int = last.value
    return total


def w2_streamz(sources: W2Input) -> tuple[int, int]:
    """Four ``Stream`` s joined with ``union`` and ``accumulate`` d; each source emits in turn."""
    from streamz import Stream

    inputs = [Stream() for _ in sources]
    last = _Last((0, 0))
    inputs[0].union(*inputs[1:]).accumulate(_count, start=(0, 0)).sink(last)
    for source, events in zip(inputs, sources, strict=True):
        for event in events:
            source.emit(event)
    result: tuple[int, int] = last.value
    return result


def w3_streamz(data: W3Input) -> tuple[int, int]:
    """streamz has no keyed join (``zip`` and ``combine_latest`` pair by position or recency):
    the profiles stream sinks into a dict first, then the activities stream looks each user up,
    drops the misses, enriches and accumulates the tally.
    """
    from streamz import Stream

    activities, profiles = data
    table: dict[Any, dict[str, Any]] = {}
    profile_source = Stream()
    profile_source.sink(lambda p: table.__setitem__(user_id(p), p))
    for profile in profiles:
        profile_source.emit(profile)

    source = Stream()
    last = _Last((0, 0))
    pairs = source.map(lambda a: (a, table.get(user_id(a)))).filter(lambda pair: pair[1] is not None)
    pairs.map(enrich).accumulate(_tally, start=(0, 0)).sink(last)
    for activity in activities:
        source.emit(activity)
    result: tuple[int, int] = last.value
    return result


def w4_streamz(events: W4Input) -> tuple[int, int, int]:
    """streamz's timed windows (``timed_window``, ``sliding_window``) cut by processing time and
    item count, so event-time tumbling windows are a keyed ``accumulate``: each event folded into
    a dict keyed by its key and event-time window start.
    """
    from streamz import Stream

    source = Stream()
    last = _Last({})
    source.accumulate(_add_event, start={}).sink(last)
    for event in events:
        source.emit(event)
    return _w4_result(last.value)


# -- bytewax: a Dataflow of named steps, run on this thread with run_main ----------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BATCH = 1_024
"""Items per input batch. ``TestingSource`` hands items over one at a time by default (15x slower
on W1); bytewax's real sources read in batches, and sage_streams moves batches of 1,024."""


def w1_bytewax(n: int) -> int:
    """``input -> map -> filter -> key_on(one key) -> reduce_final(add) -> output``."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    flow = Dataflow("w1")
    ints = op.input("ints", flow, TestingSource(range(n), _BATCH))
    xs = op.filter("divisible_by_3", op.map("double", ints, double), divisible_by_3)
    total = op.reduce_final("sum", op.key_on("all", xs, lambda _: "all"), operator.add)
    out: list[tuple[str, int]] = []
    op.output("out", total, TestingSink(out))
    run_main(flow)
    return out[0][1] if out else 0


def w2_bytewax(sources: W2Input) -> tuple[int, int]:
    """Four inputs, ``merge``, ``key_on(one key)``, ``fold_final`` to the count and the sum."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    flow = Dataflow("w2")
    inputs = [op.input(f"source{k}", flow, TestingSource(events, _BATCH)) for k, events in enumerate(sources)]
    keyed = op.key_on("all", op.merge("merge", *inputs), lambda _: "all")
    tally = op.fold_final("count", keyed, lambda: (0, 0), _count)
    out: list[tuple[str, tuple[int, int]]] = []
    op.output("out", tally, TestingSink(out))
    run_main(flow)
    return out[0][1] if out else (0, 0)


def w3_bytewax(data: W3Input) -> tuple[int, int]:
    """``join(profiles, activities, emit_mode="running")`` on ``user_id``: each activity emits a
    (profile, activity) row, ``None`` for a missing side, and rows without both are dropped.

    The two sides come from one input, profiles first, split with ``branch``: two inputs would be
    read in no fixed order, and a running join that sees an activity before its profile emits it
    unmatched.
    """
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    activities, profiles = data
    flow = Dataflow("w3")
    tagged = [("profile", p) for p in profiles] + [("activity", a) for a in activities]
    sides = op.branch(
        "split", op.input("inputs", flow, TestingSource(tagged, _BATCH)), lambda t: t[0] == "profile"
    )
    keyed_profiles = op.key_on("profile_user", op.map("untag_p", sides.trues, operator.itemgetter(1)), _uid)
    keyed_activities = op.key_on(
        "activity_user", op.map("untag_a", sides.falses, operator.itemgetter(1)), _uid
    )
    rows = op.join("join", keyed_profiles, keyed_activities, emit_mode="running")
    pairs = op.filter_map("matched", op.key_rm("unkey", rows), _activity_profile)
    enriched = op.key_on("all", op.map("enrich", pairs, enrich), lambda _: "all")
    tally = op.fold_final("tally", enriched, lambda: (0, 0), _tally)
    out: list[tuple[str, tuple[int, int]]] = []
    op.output("out", tally, TestingSink(out))
    run_main(flow)
    return out[0][1] if out else (0, 0)


def _uid(item: dict[str, Any]) -> str:
    return str(user_id(item))  # bytewax keys are strings


def _activity_profile(row: tuple[Any, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    profile, activity = row
    return None if profile is None or activity is None else (activity, profile)


def w4_bytewax(events: W4Input) -> tuple[int, int, int]:
    """``fold_window`` with an ``EventClock`` and a 60 s ``TumblingWindower`` aligned to the epoch,
    keyed by ``key``; the window id times 60 s is the window start.

    The clock is event time only: ``now_getter`` is held constant and ``to_system_utc`` returns
    None, so windows close on new items or at EOF. With the default system clock a pause of this
    machine between two events of a key could make the second late (a result that depends on
    the load), and the runtime would wake every key after every batch to close 1970's windows.
    """
    import bytewax.operators as op
    import bytewax.operators.windowing as win
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    flow = Dataflow("w4")
    keyed = op.key_on(
        "key", op.input("events", flow, TestingSource(events, _BATCH)), lambda e: str(key_of(e))
    )
    clock = win.EventClock(
        lambda e: _EPOCH + timedelta(seconds=e["timestamp"]),
        wait_for_system_duration=timedelta(0),
        now_getter=lambda: _EPOCH,
        to_system_utc=lambda _: None,
    )
    windower = win.TumblingWindower(length=timedelta(seconds=WINDOW), align_to=_EPOCH)
    sums = win.fold_window(
        "sum", keyed, clock, windower, lambda: 0, lambda s, e: s + e["value"], operator.add
    )
    out: list[tuple[str, tuple[int, int]]] = []
    op.output("out", sums.down, TestingSink(out))
    run_main(flow)
    return _w4_result({(int(key), window_id * WINDOW): total for key, (window_id, total) in out})


PEERS: dict[str, dict[str, Impl]] = {
    "W1": {
        "aiostream": w1_aiostream,
        "reactivex": w1_reactivex,
        "streamz": w1_streamz,
        "bytewax": w1_bytewax,
    },
    "W2": {
        "aiostream": w2_aiostream,
        "reactivex": w2_reactivex,
        "streamz": w2_streamz,
        "bytewax": w2_bytewax,
    },
    "W3": {
        "aiostream": w3_aiostream,
        "reactivex": w3_reactivex,
        "streamz": w3_streamz,
        "bytewax": w3_bytewax,
    },
    "W4": {
        "aiostream": w4_aiostream,
        "reactivex": w4_reactivex,
        "streamz": w4_streamz,
        "bytewax": w4_bytewax,
    },
}
"""Workload -> peer -> implementation."""

for _name, _peers in PEERS.items():
    WORKLOADS[_name].update(_peers)
