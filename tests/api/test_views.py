"""``LatestView``: a running graph's latest window results, read by the host while it runs."""

from __future__ import annotations

import asyncio

import pytest

from sage_streams import LatestView, LocalEnvironment, WindowAggregate


async def test_a_view_holds_each_keys_latest_complete_window_while_the_graph_runs() -> None:
    env = LocalEnvironment("views", batch_size=1)
    events = env.create_stream("events")
    view: LatestView[WindowAggregate] = LatestView("counts")
    events.window("tumbling", 10, key_func=lambda e: e["user"]).aggregate(
        lambda n, _: n + 1, initial=0, name="count"
    ).sink(view, name="view")
    async with env.running():
        for t, user in [(1, "ann"), (2, "bob"), (3, "ann"), (9, "ann")]:
            await events.emit({"user": user, "timestamp": t})
        assert view.snapshot() == {}  # nothing fired yet: no partial window is shown
        await events.emit({"user": "bob", "timestamp": 12})  # the watermark passes 10
        first = await view.latest("ann")
        await view.wait_for(2)
        assert (first.key, first.start_time, first.end_time, first.value) == ("ann", 0.0, 10.0, 3)
        assert {key: record.value for key, record in view.snapshot().items()} == {"ann": 3, "bob": 1}
        assert view.updates == 2
        await events.emit({"user": "ann", "timestamp": 25})  # fires [10, 20): bob's 12
        await view.wait_for(3)
        assert view.get("bob").value == 1
        assert view.get("bob").start_time == 10.0
        assert view.get("carl", "none") == "none"
    # at the end of input every open window fires: ann's [20, 30)
    assert {key: (r.start_time, r.value) for key, r in view.snapshot().items()} == {
        "ann": (20.0, 1),
        "bob": (10.0, 1),
    }
    assert view.updates == 4
    assert len(view) == 2
    assert repr(view) == "<LatestView 'counts': 2 keys, 4 updates>"


async def test_latest_waits_for_a_keys_first_item_and_a_snapshot_is_a_copy() -> None:
    view: LatestView[tuple[str, int]] = LatestView(key=lambda item: item[0])
    waiting = asyncio.ensure_future(view.latest("a"))
    await asyncio.sleep(0)
    assert not waiting.done()
    view(("b", 1))
    await asyncio.sleep(0)
    assert not waiting.done()
    view(("a", 2))
    assert await waiting == ("a", 2)
    copy = view.snapshot()
    view(("a", 3))
    assert copy == {"b": ("b", 1), "a": ("a", 2)}
    view.clear()
    assert view.snapshot() == {}
    assert view.updates == 3


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="a view's name must be a non-empty string"):
        LatestView("")
    with pytest.raises(TypeError, match="key must be callable, got 3"):
        LatestView("v", key=3)  # type: ignore[arg-type]
