"""The operator base: its no-op defaults, and that every operator inherits them rather than
writing them again."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
from collections.abc import Sequence
from typing import Any

import pytest

import sage_streams.operators
from sage_streams.operators import base
from sage_streams.operators.base import OperatorBase

DEFAULTS = ("wants", "on_end", "on_idle", "on_finish", "stalled", "details")


def operator_classes() -> list[type]:
    """Every class defined in ``sage_streams.operators`` that implements ``on_batch``, but for the
    protocol and the base themselves."""
    found = []
    prefix = sage_streams.operators.__name__ + "."
    for info in pkgutil.walk_packages(sage_streams.operators.__path__, prefix):
        if info.name == base.__name__:
            continue
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if inspect.isclass(cls) and cls.__module__ == module.__name__ and "on_batch" in vars(cls):
                found.append(cls)
    return found


def body(function: Any) -> str:
    """The statements of a function without its docstring, as an AST dump."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    definition = tree.body[0]
    assert isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef)
    statements = definition.body
    if statements and isinstance(statements[0], ast.Expr) and isinstance(statements[0].value, ast.Constant):
        statements = statements[1:]
    return "\n".join(ast.dump(statement) for statement in statements)


class Echo(OperatorBase):
    SIDE_PORTS = ("odd",)

    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        self.side["odd"].extend(item for item in batch if item % 2)
        return [item for item in batch if not item % 2]


async def test_the_defaults_want_everything_and_emit_nothing() -> None:
    echo = Echo()
    assert echo.wants(0)
    assert echo.wants(5)
    assert await echo.on_batch(0, [1, 2, 3, 4]) == [2, 4]
    assert echo.side == {"odd": [1, 3]}
    assert await echo.on_end(0) == ()
    assert await echo.on_idle() == ()
    assert await echo.on_finish() == ()
    assert echo.details() == {}
    assert echo.stalled() == "Echo wants every open input, so it never stalls"


def test_side_outputs_are_made_per_instance() -> None:
    first, second = Echo(), Echo()
    first.side["odd"].append(1)
    assert second.side == {"odd": []}
    assert first.side is not second.side


def test_on_batch_is_required() -> None:
    class Nothing(OperatorBase):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Nothing()  # type: ignore[abstract]


def test_the_operators_are_found() -> None:
    names = sorted(cls.__name__ for cls in operator_classes())
    expected = [
        "BatchProcessOperator",
        "JoinOperator",
        "ProcessOperator",
        "SyncOperator",
        "TableJoinOperator",
        "WindowOperator",
    ]
    assert names == expected


@pytest.mark.parametrize("cls", operator_classes(), ids=lambda cls: cls.__name__)
def test_every_operator_subclasses_the_base(cls: type) -> None:
    assert issubclass(cls, OperatorBase)


@pytest.mark.parametrize("cls", operator_classes(), ids=lambda cls: cls.__name__)
def test_no_operator_writes_a_default_again(cls: type) -> None:
    defined = [name for name in DEFAULTS if name in vars(cls)]
    copies = [name for name in defined if body(vars(cls)[name]) == body(getattr(OperatorBase, name))]
    assert copies == []


def test_a_copied_default_is_caught() -> None:
    class Copy(Echo):
        async def on_idle(self) -> Sequence[Any]:
            return ()

    assert body(Copy.on_idle) == body(OperatorBase.on_idle)
    assert body(Copy.on_batch) != body(OperatorBase.on_idle)
