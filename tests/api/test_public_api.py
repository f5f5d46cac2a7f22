"""The front door: everything public is importable from ``sage_streams`` and ``__all__`` is honest."""

from __future__ import annotations

import builtins
import inspect
import pickle
import re

import pytest

import sage_streams
import sage_streams.connected_streams
import sage_streams.testing
from sage_streams import errors


def test_all_is_sorted_and_every_name_exists() -> None:
    assert sage_streams.__all__ == sorted(sage_streams.__all__)
    for name in sage_streams.__all__:
        assert hasattr(sage_streams, name), name


def test_contract_import_surface() -> None:
    from sage_streams import (  # noqa: F401
        BackpressureTimeout,
        DataStream,
        ErrorThresholdExceeded,
        LocalEnvironment,
        PipelineError,
        StreamError,
        get_function,
        register_function,
    )


def test_exception_tree() -> None:
    assert issubclass(sage_streams.PipelineError, sage_streams.StreamError)
    assert issubclass(sage_streams.ErrorThresholdExceeded, sage_streams.PipelineError)
    assert issubclass(sage_streams.BackpressureTimeout, sage_streams.StreamError)


def test_window_records_are_public() -> None:
    from sage_streams import WindowAggregate, WindowData, WindowedStream  # noqa: F401


def public_names() -> set[str]:
    """What ``sage_streams`` offers: every name not private and not a submodule."""
    return {
        name
        for name, value in vars(sage_streams).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }


def test_all_is_exactly_the_public_names() -> None:
    assert set(sage_streams.__all__) == public_names()
    assert len(sage_streams.__all__) == len(set(sage_streams.__all__))


@pytest.mark.parametrize("name", sage_streams.__all__)
def test_every_public_object_says_it_lives_in_the_front_door(name: str) -> None:
    assert getattr(sage_streams, name).__module__ == "sage_streams"


def public_members(cls: type) -> dict[str, object]:
    """The public methods and properties ``cls`` defines or inherits from sage_streams classes."""
    members: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.split(".")[0] != "sage_streams":
            continue  # object, Exception, Generic, ...: their docstrings are not ours to check
        for member, value in vars(klass).items():
            if not member.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
                members[member] = value
    return members


@pytest.mark.parametrize(
    ("module", "name"),
    [(sage_streams, name) for name in sage_streams.__all__]
    + [(sage_streams.testing, name) for name in sage_streams.testing.__all__],
)
def test_every_public_object_and_method_has_a_docstring(module: object, name: str) -> None:
    obj = getattr(module, name)
    assert (obj.__doc__ or "").strip(), name
    if inspect.isclass(obj):
        undocumented = [
            member for member, value in public_members(obj).items() if not (value.__doc__ or "").strip()
        ]
        assert undocumented == [], f"{name}: {undocumented}"


EXCEPTIONS: list[BaseException] = [
    sage_streams.StreamError("misused"),
    sage_streams.UnknownNameError("no function registered as 'nope'"),
    sage_streams.NoDataError("nothing to read"),
    sage_streams.BackpressureTimeout("waited 1 s"),
    sage_streams.SpillError("cannot spill", item={"a": 1}, index=3),
    sage_streams.PipelineError("graph failed", [ValueError("bad")], operator="parse", item=7),
    sage_streams.ErrorThresholdExceeded("too many", [KeyError("k")], operator="enrich", item=None),
    sage_streams.CheckpointError("the store belongs to job 'a'"),
    sage_streams.ConnectorError("redis source 'clicks': XREAD failed 5 times in a row"),
    sage_streams.UnwritableValueError("cannot write value[0]: Foo", "value[0]", "Foo"),
    sage_streams.DrainTimeout("not drained after 5 s", {"events.inbox": 3}),
]


@pytest.mark.parametrize("error", EXCEPTIONS, ids=lambda error: type(error).__name__)
def test_public_exceptions_survive_pickle(error: BaseException) -> None:
    if isinstance(error, sage_streams.ErrorThresholdExceeded):
        error.count, error.max_errors, error.time_window = 4, 3, 60.0
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    own = {key: value for key, value in vars(error).items() if key != "errors"}
    assert {key: value for key, value in vars(copy).items() if key != "errors"} == own
    if isinstance(error, sage_streams.PipelineError):
        assert isinstance(copy, sage_streams.PipelineError)
        assert [(type(e), str(e)) for e in copy.errors] == [(type(e), str(e)) for e in error.errors]


def test_every_public_exception_is_covered_above() -> None:
    exceptions = {
        name
        for name in sage_streams.__all__
        if isinstance(getattr(sage_streams, name), type)
        and issubclass(getattr(sage_streams, name), BaseException)
    }
    assert {type(error).__name__ for error in EXCEPTIONS} == exceptions


def drawn_tree() -> dict[str, str]:
    """Child -> parent, as the tree in ``sage_streams.errors``'s docstring draws them."""
    parents: dict[str, str] = {}
    path: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^(\s*)(?:[│ ]*[├└]── )?([A-Z]\w+)\s", line + " ")
        if not match or not line.startswith("    ") or match.group(2) not in vars(errors) | vars(builtins):
            continue
        depth = 0 if "──" not in line else (line.index("──") - 4) // 4 + 1
        del path[depth:]
        if path:
            parents[match.group(2)] = path[-1]
        path.append(match.group(2))
    return parents


def test_the_errors_docstring_draws_the_real_exception_tree() -> None:
    tree = drawn_tree()
    public = {name for name in errors.__all__}
    assert public <= set(tree), public - set(tree)
    for child, parent in tree.items():
        cls = vars(errors).get(child) or vars(builtins)[child]
        assert cls.__bases__[0] is (vars(errors).get(parent) or vars(builtins)[parent]), child


def test_documented_import_paths() -> None:
    from sage_streams.connected_streams import ConnectedStreams, StreamState
    from sage_streams.testing import ManualClock, leftover_tasks

    assert ConnectedStreams is sage_streams.ConnectedStreams
    assert StreamState is sage_streams.StreamState
    assert sage_streams.connected_streams.__all__ == ["ConnectedStreams", "StreamState"]
    assert sage_streams.testing.__all__ == ["ManualClock", "leftover_tasks"]
    assert ManualClock(5.0).now() == 5.0
    assert leftover_tasks.__module__ == "sage_streams.testing"
