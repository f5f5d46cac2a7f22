"""The package's layers, read from its own source: each layer imports only itself and the layers
below it, no two modules import each other through any path, and the tree stays small enough to
read (at most 15 modules directly in ``sage_streams/``, none over 500 lines).

Every import counts: at module level, inside functions, and under ``TYPE_CHECKING``. The one
exception is the public API layer, whose fluent methods return higher types of the same layer
(``DataStream.connect`` returns a ``ConnectedStreams``): there, an import of another ``api``
module inside a function or under ``TYPE_CHECKING`` is allowed, as the architecture issue says.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sage_streams"

LAYERS: dict[str, int] = {
    "sage_streams.errors": 0,
    "sage_streams._typing": 0,
    "sage_streams.functions": 0,
    "sage_streams.time": 0,
    "sage_streams.channel": 1,
    "sage_streams.state": 2,
    "sage_streams.metrics": 2,
    "sage_streams.checkpoint": 2,
    "sage_streams.connectors": 2,
    "sage_streams._codegen": 3,
    "sage_streams.operators": 4,
    "sage_streams._graph": 5,
    "sage_streams._runtime": 6,
    "sage_streams.api": 7,
    "sage_streams": 8,  # the front door, and the public modules beside it
    "sage_streams.connected_streams": 8,
    "sage_streams.testing": 8,
    "sage_streams.observe": 8,  # exporters and drawings of a running graph, beside the front door
    "sage_streams.cli": 9,  # the command line, over everything
    "sage_streams.__main__": 9,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of a module: that of the longest prefix in :data:`LAYERS`."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/architecture.md")


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(source: str) -> Iterator[tuple[str, bool]]:
    """``(imported module, fluent)`` for each import of the package in ``source``; ``fluent``
    is true for one inside a function or under ``if TYPE_CHECKING:``."""
    tree = ast.parse(source)

    def visit(node: ast.AST, nested: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.If) and ast.unparse(child.test) == "TYPE_CHECKING":
                inner = True
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("sage_streams"):
                yield child.module, inner
                for alias in child.names:  # ``from sage_streams.x import y`` may import module x.y
                    yield f"{child.module}.{alias.name}", inner
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("sage_streams"):
                        yield alias.name, inner
            yield from visit(child, inner)

    yield from visit(tree, False)


def edges() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (fluent API-layer imports left out)."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, fluent in imports(path.read_text()):
            if target not in known or target == name:
                continue
            if fluent and name.startswith("sage_streams.api.") and target.startswith("sage_streams.api."):
                continue
            graph[name].add(target)
    return graph


def test_every_module_imports_only_its_own_layer_and_those_below() -> None:
    upward = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name, targets in edges().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    graph = edges()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert cycles == []


def test_code_generation_imports_nothing_above_the_lowest_layer() -> None:
    graph = edges()
    reached = {
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name.startswith("sage_streams._codegen")
        for target in targets
        if not target.startswith("sage_streams._codegen") and layer_of(target) > 0
    }
    assert reached == set()


def test_only_code_generation_calls_compile_or_exec() -> None:
    calls = []
    for name, path in modules().items():
        if name.startswith("sage_streams._codegen"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id in {"compile", "exec", "eval"}:
                calls.append(f"{name}:{node.lineno} {node.func.id}")
    assert calls == []


def test_importing_the_package_compiles_nothing() -> None:
    """Code is generated when a graph runs, never when the package is imported."""
    probe = (
        "import builtins, sys\n"
        "calls = []\n"
        "for name in ('compile', 'exec'):\n"
        "    real = getattr(builtins, name)\n"
        "    def spy(*args, _real=real, _name=name, **kwargs):\n"
        "        frame = sys._getframe(1)\n"
        "        if frame.f_globals.get('__name__', '').startswith('sage_streams'):\n"
        "            calls.append(_name + ' in ' + frame.f_globals['__name__'])\n"
        "        return _real(*args, **kwargs)\n"
        "    setattr(builtins, name, spy)\n"
        "import sage_streams, sage_streams.connected_streams, sage_streams.testing\n"
        "from sage_streams import LocalEnvironment\n"
        "env = LocalEnvironment()\n"
        "env.from_collection([1, 2]).map(lambda x: x + 1).sink(print)\n"  # built, not run
        "print(calls)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]", run.stdout


def test_at_most_15_modules_directly_in_the_package() -> None:
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= 15, top


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_over_500_lines(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= 500, f"{name} has {lines} lines"


def test_the_reader_finds_imports_at_every_level() -> None:
    """The checks above see imports at module level, in functions and for type checking."""
    source = """
import sage_streams.channel
from sage_streams.errors import StreamError
if TYPE_CHECKING:
    from sage_streams.api.stream import DataStream
def method():
    from sage_streams.api import connected
"""
    assert list(imports(source)) == [
        ("sage_streams.channel", False),
        ("sage_streams.errors", False),
        ("sage_streams.errors.StreamError", False),
        ("sage_streams.api.stream", True),
        ("sage_streams.api.stream.DataStream", True),
        ("sage_streams.api", True),
        ("sage_streams.api.connected", True),
    ]
    assert layer_of("sage_streams.channel.queues") == 1
    assert layer_of("sage_streams.api.stream") == 7
