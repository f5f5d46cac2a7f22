"""The pure table-join logic: exact outputs by hand, item errors, the event-time versions and
their bounds, config validation, and properties against a reference model over random
interleavings and batches. No event loop."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams.errors import StreamError, UnknownNameError
from sage_streams.operators.joins.config import TableJoinConfig, table_join_config
from sage_streams.operators.joins.state import JoinItemError
from sage_streams.operators.joins.table import EVENTS, TABLE, TableJoinState, TableJoinStats

Item = tuple[Any, ...]  # an event (name, key, ts) or a row (name, key, ts, value)


def key(item: Item) -> Any:
    return item[1]


def value(row: Item) -> Any:
    return row[3]


def table(
    join_type: Any = "inner", *, timed: bool = False, codegen: bool = True, **options: Any
) -> TableJoinState:
    timestamp = (lambda item: item[2]) if timed else None
    config = table_join_config(join_type, key, value_func=value, timestamp=timestamp)
    return config.build(inline=True, codegen=codegen)


def ev(name: str, k: Any, t: float = 0.0) -> Item:
    return (name, k, t)


def row(name: str, k: Any, t: float = 0.0, *, delete: bool = False) -> Item:
    return (name, k, t, None if delete else name)


def names(pairs: Sequence[tuple[Any, Any]]) -> list[tuple[str, str | None]]:
    return [(event[0], found) for event, found in pairs]


CODEGEN = pytest.mark.parametrize("codegen", [True, False], ids=["generated", "plain"])

# -- processing time: exact outputs --------------------------------------------------------------


@CODEGEN
def test_inner_joins_each_event_with_the_row_current_at_its_arrival(codegen: bool) -> None:
    join = table(codegen=codegen)
    assert join.push(TABLE, [row("ann", 1), row("bob", 2)]) == []
    assert names(join.push(EVENTS, [ev("a", 1), ev("b", 2), ev("c", 3)])) == [("a", "ann"), ("b", "bob")]
    assert join.push(TABLE, [row("ann2", 1), row("cid", 3)]) == []  # no past event comes again
    assert names(join.push(EVENTS, [ev("d", 1), ev("e", 3)])) == [("d", "ann2"), ("e", "cid")]
    assert join.stats() == TableJoinStats(
        probes=5, hits=4, table_rows=3, versions=3, held_events=0, late_events=0
    )


def test_left_keeps_an_event_without_a_row_with_none() -> None:
    join = table("left")
    join.push(TABLE, [row("ann", 1)])
    assert names(join.push(EVENTS, [ev("a", 1), ev("b", 2)])) == [("a", "ann"), ("b", None)]
    assert (join.stats().probes, join.stats().hits) == (2, 1)


@pytest.mark.parametrize("join_type", ["inner", "left"])
def test_a_tombstone_deletes_its_key_and_a_later_row_brings_it_back(join_type: str) -> None:
    join = table(join_type)
    join.push(TABLE, [row("ann", 1), row("gone", 1, delete=True), row("gone", 9, delete=True)])
    assert join.stats().table_rows == 0
    expected = [] if join_type == "inner" else [("a", None)]
    assert names(join.push(EVENTS, [ev("a", 1)])) == expected
    join.push(TABLE, [row("ann3", 1)])
    assert names(join.push(EVENTS, [ev("b", 1)])) == [("b", "ann3")]


def test_the_row_itself_is_the_value_by_default() -> None:
    join = TableJoinConfig(key, key).build()
    join.push(TABLE, [("p", 1)])
    assert join.push(EVENTS, [("e", 1)]) == [(("e", 1), ("p", 1))]


def test_a_pair_of_key_functions_reads_events_and_rows_each_with_its_own() -> None:
    join = table_join_config("inner", (lambda event: event["user"], lambda profile: profile["id"])).build()
    join.push(TABLE, [{"id": 7, "name": "ann"}])
    assert join.push(EVENTS, [{"user": 7}]) == [({"user": 7}, {"id": 7, "name": "ann"})]


# -- item errors: no trace, exact positions ----------------------------------------------------


def explode(item: Item) -> Any:
    raise RuntimeError(f"no key for {item[0]}")


BAD_KEYS = [
    (ev("bad", None), ValueError, "key function returned None"),
    (ev("bad", [1]), TypeError, "key function returned an unhashable value [1]"),
]


@CODEGEN
@pytest.mark.parametrize("join_type", ["inner", "left"])
@pytest.mark.parametrize(("bad", "kind", "message"), BAD_KEYS)
def test_a_bad_event_key_is_an_error_of_that_event_only(
    codegen: bool, join_type: str, bad: Item, kind: type, message: str
) -> None:
    join = table(join_type, codegen=codegen)
    join.push(TABLE, [row("ann", 1)])
    with pytest.raises(JoinItemError) as caught:
        join.push(EVENTS, [ev("a", 1), bad, ev("c", 1)])
    error = caught.value
    assert (error.index, error.item, names(error.pairs)) == (1, bad, [("a", "ann")])
    assert isinstance(error.error, kind)
    assert message in str(error.error)
    assert names(join.push(EVENTS, [ev("c", 1)])) == [("c", "ann")]
    assert (join.stats().probes, join.stats().hits) == (2, 2)  # the bad event counts nowhere


@CODEGEN
@pytest.mark.parametrize("join_type", ["inner", "left"])
def test_an_event_key_function_that_raises_is_chained_to_its_error(codegen: bool, join_type: str) -> None:
    join = table_join_config(join_type, (explode, key)).build(codegen=codegen)
    with pytest.raises(JoinItemError) as caught:
        join.push(EVENTS, [ev("a", 1)])
    assert (caught.value.index, caught.value.pairs) == (0, [])
    assert isinstance(caught.value.error, RuntimeError)
    assert caught.value.__cause__ is caught.value.error


def raising_value(item: Item) -> Any:
    if item[0] == "bad":
        raise LookupError("no value")
    return item[0]


@pytest.mark.parametrize("timed", [False, True])
@pytest.mark.parametrize(
    ("bad", "config"),
    [
        (row("bad", None), {}),
        (row("bad", {}), {}),
        (row("bad", 1), {"value_func": raising_value}),
        (("bad", 1, "noon", "bad"), {}),
    ],
    ids=["none-key", "unhashable-key", "value-raises", "bad-timestamp"],
)
def test_a_bad_row_is_an_error_of_that_row_and_leaves_the_table_as_it_was(
    timed: bool, bad: Item, config: dict[str, Any]
) -> None:
    options = {"value_func": value, **config}
    timestamp = (lambda item: item[2]) if timed else None
    join = table_join_config("left", key, timestamp=timestamp, **options).build()
    join.push(TABLE, [row("ann", 1)])
    if not timed and bad[2] == "noon":
        assert join.push(TABLE, [bad]) == []  # no timestamp read in processing time
        return
    with pytest.raises(JoinItemError) as caught:
        join.push(TABLE, [row("ann2", 1, 1.0), bad, row("bob", 2, 2.0)])
    assert (caught.value.index, caught.value.item) == (1, bad)
    assert join.stats().table_rows == 1
    join.push(TABLE, [row("bob", 2, 2.0)])
    join.end(TABLE)
    expected = [("a", "ann2"), ("b", "bob")]
    assert names(join.push(EVENTS, [ev("a", 1, 1.5), ev("b", 2, 3.0)])) == expected


def test_pushing_to_an_ended_side_or_a_bad_side_is_refused() -> None:
    join = table()
    join.end(TABLE)
    assert join.end(TABLE) == []
    with pytest.raises(StreamError, match="the table input of this table join has ended"):
        join.push(TABLE, [row("x", 1)])
    with pytest.raises(IndexError, match=r"must be 0 \(events\) or 1 \(table\)"):
        join.push(2, [])


# -- a lookup once the table has ended -----------------------------------------------------------


def test_only_an_inner_processing_time_join_with_its_table_ended_is_a_lookup() -> None:
    join = table()
    join.push(TABLE, [row("ann", 1)])
    assert join.lookup(EVENTS) is None  # the table may still change
    join.end(TABLE)
    assert join.lookup(TABLE) is None
    found = join.lookup(EVENTS)
    assert found is not None
    key_of, rows = found
    assert key_of(ev("a", 1)) == 1
    assert rows == {1: "ann"}
    join.record_lookups(3, 2)
    assert (join.stats().probes, join.stats().hits) == (3, 2)
    for other in (table("left"), table(timed=True)):
        other.end(TABLE)
        assert other.lookup(EVENTS) is None


# -- event time ----------------------------------------------------------------------------------


def test_an_event_joins_the_version_valid_at_its_timestamp_once_the_table_has_passed_it() -> None:
    join = table("left", timed=True)
    join.push(TABLE, [row("v1", 1, 1.0), row("v5", 1, 5.0)])
    assert names(join.push(EVENTS, [ev("a", 1, 0.5), ev("b", 1, 1.0), ev("c", 1, 4.9)])) == [
        ("a", None),  # before the first version
        ("b", "v1"),  # a version at the event's own time counts
        ("c", "v1"),
    ]
    assert join.push(EVENTS, [ev("d", 1, 5.0), ev("e", 2, 6.0)]) == []  # the table is at 5.0
    assert join.stats().held_events == 2
    assert names(join.push(TABLE, [row("v7", 1, 7.0)])) == [("d", "v5"), ("e", None)]
    assert join.stats().held_events == 0


def test_a_tombstone_version_means_no_row_from_its_time_on() -> None:
    join = table("left", timed=True)
    join.push(TABLE, [row("v1", 1, 1.0), row("x", 1, 3.0, delete=True), row("v6", 1, 6.0)])
    join.end(TABLE)
    pairs = join.push(EVENTS, [ev("a", 1, 2.0), ev("b", 1, 3.0), ev("c", 1, 6.5)])
    assert names(pairs) == [("a", "v1"), ("b", None), ("c", "v6")]


def test_two_versions_at_one_time_keep_the_later_arrival() -> None:
    join = table(timed=True)
    join.push(TABLE, [row("first", 1, 2.0), row("second", 1, 2.0)])
    assert join.stats().versions == 1
    join.end(TABLE)
    assert names(join.push(EVENTS, [ev("a", 1, 2.0)])) == [("a", "second")]


def test_held_events_leave_in_arrival_order_and_the_end_of_the_table_releases_them() -> None:
    join = table("left", timed=True)
    join.push(TABLE, [row("v0", 1, 0.0)])
    assert join.push(EVENTS, [ev("a", 1, 3.0), ev("b", 1, 1.0)]) == []  # b is late: as of 3.0
    assert join.stats().late_events == 1
    assert join.push(TABLE, [row("v2", 1, 2.0)]) == []  # 2.0 has not passed a's 3.0 yet
    assert names(join.end(TABLE)) == [("a", "v2"), ("b", "v2")]
    assert names(join.push(EVENTS, [ev("c", 1, 99.0)])) == [("c", "v2")]
    assert join.finish() == []


def test_a_late_event_sees_the_table_as_of_the_latest_event_before_it() -> None:
    join = table("left", timed=True)
    join.push(TABLE, [row("v1", 1, 1.0), row("v4", 1, 4.0), row("v9", 1, 9.0)])
    pairs = join.push(EVENTS, [ev("a", 1, 5.0), ev("late", 1, 2.0), ev("b", 1, 4.5)])
    assert names(pairs) == [("a", "v4"), ("late", "v4"), ("b", "v4")]
    assert join.stats().late_events == 2


def test_versions_are_pruned_to_the_newest_at_the_horizon() -> None:
    join = table(timed=True)
    join.push(TABLE, [row(f"v{t}", 1, float(t)) for t in range(5)])
    assert join.stats().versions == 5  # no event yet: every version may be needed
    join.push(EVENTS, [ev("a", 1, 2.5)])
    join.push(TABLE, [row("v5", 1, 5.0)])  # a row of the key prunes it: v2 is the newest at 2.5
    assert join.stats().versions == 4
    join.push(TABLE, [row("x", 1, 6.0, delete=True)])
    join.push(EVENTS, [ev("b", 1, 7.0)])  # held until the table passes 7.0
    join.push(TABLE, [row("gone", 1, 8.0, delete=True)])  # b sees the tombstone at 6.0
    assert join.stats() == TableJoinStats(
        probes=2, hits=1, table_rows=0, versions=0, held_events=0, late_events=0
    )


def test_keys_that_get_no_more_rows_are_swept_once_the_versions_double() -> None:
    join = table(timed=True)
    join.push(TABLE, [row("old", k, 0.0) for k in range(600)] + [row("new", k, 1.0) for k in range(600)])
    assert join.stats().versions == 1200
    join.push(EVENTS, [ev("a", 0, 2.0)])  # the horizon passes every "new" version
    join.push(TABLE, [row("r", 1000 + k, 3.0) for k in range(2000)])
    assert join.stats().versions == 600 + 2000  # each old key keeps its "new" version only
    assert join.stats().table_rows == 2600


def test_a_sweep_is_a_change_of_every_key_it_pruned() -> None:
    join = table(timed=True)
    join.push(TABLE, [row("old", k, 0.0) for k in range(600)] + [row("new", k, 1.0) for k in range(600)])
    join.push(EVENTS, [ev("a", 0, 2.0)])
    join.snapshot_changes()
    join.push(TABLE, [row("r", 1000 + k, 3.0) for k in range(2000)])  # sweeps the 600 old keys
    changed, gone = join.snapshot_changes()
    versions = {name[1]: value for name, value in changed.items() if name[0] == "versions"}
    assert sorted(versions) == [*range(600), *range(1000, 3000)]
    assert versions[5] == ([1.0], ["new"])  # the old version pruned
    assert sorted(gone) == sorted(("row", k) for k in [*range(600), *range(1000, 3000)])


def test_a_long_run_in_event_time_keeps_the_versions_bounded() -> None:
    join = table(timed=True)
    most = 0
    for step in range(2_000):  # 10 keys, a row of each every step, 5 events a step
        t = float(step)
        join.push(TABLE, [row(f"v{step}", k, t) for k in range(10)])
        join.push(EVENTS, [ev(f"e{step}.{i}", i, t - 0.5) for i in range(5)])
        most = max(most, join.stats().versions)
    # Per key: the version at the horizon (step - 2 while the last events were at step - 1.5),
    # and the two newer ones the table is ahead with: 3 a key, however long it runs.
    assert most == 30
    assert join.stats().probes == 10_000
    assert join.stats().held_events == 0


def test_a_held_event_keeps_the_versions_it_will_see() -> None:
    join = table(timed=True)
    join.push(TABLE, [row("v1", 1, 1.0)])
    join.push(EVENTS, [ev("a", 1, 1.5)])  # held: the table is at 1.0
    join.push(EVENTS, [ev("b", 1, 50.0)])  # W is 50.0, but a is held at 1.5
    pairs = join.push(TABLE, [row("v2", 1, 2.0), row("v60", 1, 60.0)])
    assert names(pairs) == [("a", "v1"), ("b", "v2")]


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"join_type": "outer"},
            UnknownNameError,
            "unknown join_type 'outer'; expected one of 'inner', 'left'",
        ),
        ({"key_func": None}, ValueError, "a table join needs key_func"),
        ({"key_func": 3}, TypeError, r"a pair of functions \(event_key, row_key\), got 3"),
        ({"key_func": (key, 3)}, TypeError, r"two functions \(event_key, row_key\)"),
        ({"value_func": "x"}, TypeError, "value must be a function"),
        ({"timestamp": 3}, TypeError, "timestamp must be a field name, a function or None, got 3"),
    ],
)
def test_config_validation_messages(kwargs: dict[str, Any], error: type, message: str) -> None:
    arguments = {"join_type": "inner", "key_func": key, **kwargs}
    with pytest.raises(error, match=message):
        table_join_config(arguments.pop("join_type"), arguments.pop("key_func"), **arguments)


def test_each_build_is_a_new_empty_table() -> None:
    config = table_join_config("inner", key)
    first = config.build()
    first.push(TABLE, [("p", 1)])
    assert config.build().stats().table_rows == 0
    assert config.event_key is config.row_key is key


# -- properties: any interleaving and batching equals the reference model ----------------------


@st.composite
def interleavings(draw: st.DrawFn, events: list[Item], rows: list[Item]) -> list[tuple[int, list[Item]]]:
    """The two inputs merged in a random order (each keeping its own), cut into random batches."""
    order = draw(st.permutations([EVENTS] * len(events) + [TABLE] * len(rows)))
    sides = (iter(events), iter(rows))
    steps: list[tuple[int, list[Item]]] = []
    for side in order:
        item = next(sides[side])
        if steps and steps[-1][0] == side and draw(st.booleans()):
            steps[-1][1].append(item)
        else:
            steps.append((side, [item]))
    return steps


def feed(join: TableJoinState, steps: list[tuple[int, list[Item]]], end_table: bool) -> list[Any]:
    out: list[Any] = []
    for side, batch in steps:
        out += join.push(side, batch)
    if end_table:
        out += join.end(TABLE)
    out += join.end(EVENTS)
    return out + join.finish()


KEYS = st.integers(0, 3)
ROW = st.tuples(KEYS, st.booleans())  # (key, is a tombstone)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    event_keys=st.lists(KEYS, max_size=12),
    row_specs=st.lists(ROW, max_size=12),
    join_type=st.sampled_from(["inner", "left"]),
    codegen=st.booleans(),
)
def test_processing_time_equals_a_dict_updated_in_arrival_order(
    data: st.DataObject,
    event_keys: list[int],
    row_specs: list[tuple[int, bool]],
    join_type: str,
    codegen: bool,
) -> None:
    events = [ev(f"e{i}", k) for i, k in enumerate(event_keys)]
    rows = [row(f"r{i}", k, delete=gone) for i, (k, gone) in enumerate(row_specs)]
    steps = data.draw(interleavings(events, rows))
    model: dict[int, str] = {}
    expected: list[tuple[Item, str | None]] = []
    for side, batch in steps:
        for item in batch:
            if side == TABLE and item[3] is None:
                model.pop(item[1], None)
            elif side == TABLE:
                model[item[1]] = item[3]
            elif item[1] in model or join_type == "left":
                expected.append((item, model.get(item[1])))
    join = table(join_type, codegen=codegen)
    assert feed(join, steps, data.draw(st.booleans())) == expected
    hits = sum(found is not None for _, found in expected)
    assert (join.stats().probes, join.stats().hits) == (len(events), hits)
    assert join.stats().table_rows == len(model)


def as_of(rows: list[Item], k: int, when: float) -> str | None:
    """The reference: the value of the version of ``k`` with the largest time at or before
    ``when``, the later arrival among versions at one time (``None``: none, or a tombstone)."""
    found = None
    for _, key_of_row, t, kept in rows:
        if key_of_row == k and t <= when:
            found = kept
    return found


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    event_specs=st.lists(st.tuples(KEYS, st.integers(0, 12)), max_size=12),
    row_specs=st.lists(st.tuples(ROW, st.integers(0, 12)), max_size=12),
    join_type=st.sampled_from(["inner", "left"]),
)
def test_event_time_gives_the_version_valid_at_each_join_time_for_any_interleaving(
    data: st.DataObject,
    event_specs: list[tuple[int, int]],
    row_specs: list[tuple[tuple[int, bool], int]],
    join_type: str,
) -> None:
    # The table in timestamp order; the events in any order (a late one is joined as of W).
    ordered = sorted(row_specs, key=lambda spec: spec[1])
    rows = [row(f"r{i}", k, float(t), delete=gone) for i, ((k, gone), t) in enumerate(ordered)]
    events = [ev(f"e{i}", k, float(t)) for i, (k, t) in enumerate(event_specs)]
    expected = []
    mark = -math.inf
    late = 0
    for event in events:
        late += event[2] < mark
        mark = max(mark, event[2])
        found = as_of(rows, event[1], mark)
        if found is not None or join_type == "left":
            expected.append((event, found))
    join = table(join_type, timed=True)
    assert feed(join, data.draw(interleavings(events, rows)), data.draw(st.booleans())) == expected
    stats = join.stats()
    assert stats.held_events == 0
    assert stats.probes == len(events)
    assert stats.late_events == sum(
        e[2] < max([-math.inf] + [p[2] for p in events[:i]]) for i, e in enumerate(events)
    )
    assert stats.versions <= len(rows)
