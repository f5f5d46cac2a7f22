"""The switch between the generated loops and their plain twins: it takes effect everywhere."""

from __future__ import annotations

import builtins
from typing import Any

import pytest

from sage_streams import ConnectedStreams, LocalEnvironment


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ``compile``/``exec`` calls sage_streams makes from now on."""
    calls: list[str] = []
    for name in ("compile", "exec"):
        real = getattr(builtins, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(builtins, name, spy)
    return calls


async def _run_every_generated_shape(env: LocalEnvironment) -> list[Any]:
    """A chain, a keyed join (probe, then lookup) and a tumbling window with an aggregate."""
    profiles = env.from_collection([{"user": u, "name": f"n{u}"} for u in range(3)], name="profiles")
    events = env.from_collection([{"user": i % 4, "timestamp": float(i)} for i in range(8)], name="events")
    joined = ConnectedStreams([events, profiles]).join("inner", key_func=lambda e: e["user"], name="j")
    enriched = joined.map(lambda pair: {**pair[0], "name": pair[1]["name"]}).filter(lambda e: e["user"] > 0)
    sums = (
        enriched.key_by(lambda e: e["user"])
        .window("tumbling", size=4.0, key_func=lambda e: e["user"])
        .aggregate(lambda total, e: total + 1, initial=0)
    )
    got: list[Any] = []
    sums.sink(got.append)
    await env.execute()
    return got


async def test_the_plain_path_compiles_nothing_and_gives_what_the_generated_path_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _spy(monkeypatch)
    plain = await _run_every_generated_shape(LocalEnvironment(codegen=False))
    assert calls == []
    generated = await _run_every_generated_shape(LocalEnvironment(codegen=True))
    assert "exec" in calls  # the spy sees generated code
    assert [repr(r) for r in plain] == [repr(r) for r in generated]
    assert len(plain) > 0


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("1", True), ("", True), (" 0 ", False)])
def test_the_environment_variable_selects_the_path(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("SAGE_STREAMS_CODEGEN", value)
    assert LocalEnvironment().codegen is expected
    assert LocalEnvironment(codegen=not expected).codegen is (not expected)  # an argument wins
    assert LocalEnvironment().inlining() is (expected and not _traced())


def _traced() -> bool:
    from sage_streams._codegen import tracing

    return tracing()


def test_bad_switch_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGE_STREAMS_CODEGEN", "yes")
    with pytest.raises(ValueError, match="SAGE_STREAMS_CODEGEN must be 0 or 1, got 'yes'"):
        LocalEnvironment()
    monkeypatch.delenv("SAGE_STREAMS_CODEGEN")
    with pytest.raises(TypeError, match="codegen must be True, False or None, got 'no'"):
        LocalEnvironment(codegen="no")  # type: ignore[arg-type]
