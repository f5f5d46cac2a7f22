"""The channels use only what CPython documents for ``asyncio.Queue`` subclasses.

The storage hooks (``_init``, ``_put``, ``_get``) and the public methods are a contract; the
waiter lists, ``_wakeup_next`` and the ``_queue`` deque are not, and may change in any release.
These tests read the package's source, so that a use coming back anywhere fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import sage_streams
from sage_streams.channel.queues import _BatchQueue

PACKAGE = Path(sage_streams.__file__).parent

_WAITER_INTERNALS = re.compile(r"\b(_getters|_putters|_wakeup_next)\b")


def _queue_classes(trees: dict[str, ast.Module]) -> set[str]:
    """The names of the classes that derive from ``asyncio.Queue``, directly or through
    another such class of the package."""

    def base_name(base: ast.expr) -> str:
        if isinstance(base, ast.Subscript):  # asyncio.Queue[Message]
            base = base.value
        return ast.unparse(base)

    bases = {
        node.name: {base_name(base) for base in node.bases}
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    found = {"asyncio.Queue", "Queue", "asyncio.queues.Queue"}
    while grown := {name for name, of in bases.items() if of & found} - found:
        found |= grown
    return found & bases.keys()


class _QueueStorageUses(ast.NodeVisitor):
    """Collects the uses of an attribute ``_queue`` that belong to asyncio: any object's read
    from outside it, and a queue class's own (``self._queue`` in another class is that class's
    business: the window state has a ``_queue`` method). A ``"_queue"`` string counts too, for
    ``getattr``."""

    def __init__(self, name: str, queues: set[str]) -> None:
        self.name = name
        self.queues = queues
        self.in_queue = False
        self.found: list[str] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        outer, self.in_queue = self.in_queue, node.name in self.queues
        self.generic_visit(node)
        self.in_queue = outer

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "_queue":
            of_self = isinstance(node.value, ast.Name) and node.value.id == "self"
            if self.in_queue or not of_self:
                self.found.append(f"{self.name}:{node.lineno}: {ast.unparse(node)}")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if node.value == "_queue":
            self.found.append(f"{self.name}:{node.lineno}: {node.value!r}")


def queue_internals_used(sources: dict[str, str]) -> list[str]:
    """Each place in ``sources`` (file name to text) that relies on asyncio.Queue's internals:
    its waiter lists or ``_wakeup_next`` named anywhere (comments and strings included), or its
    ``_queue`` storage (see :class:`_QueueStorageUses`)."""
    found = [
        f"{name}:{number}: {match.group()}"
        for name, text in sources.items()
        for number, line in enumerate(text.splitlines(), 1)
        for match in _WAITER_INTERNALS.finditer(line)
    ]
    trees = {name: ast.parse(text, name) for name, text in sources.items()}
    queues = _queue_classes(trees)
    for name, tree in trees.items():
        uses = _QueueStorageUses(name, queues)
        uses.visit(tree)
        found += uses.found
    return sorted(found)


def package_sources() -> dict[str, str]:
    return {str(path.relative_to(PACKAGE)): path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_relies_on_asyncio_queue_internals() -> None:
    sources = package_sources()
    assert "channel/queues.py" in sources  # the check reads the real tree
    assert queue_internals_used(sources) == []


def test_the_channel_queue_keeps_nothing_in_asyncio_queue_storage() -> None:
    assert not hasattr(_BatchQueue(3), "_queue")


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("q._wakeup_next(q._getters)", ["m.py:1: _wakeup_next", "m.py:1: _getters"]),
        ("n = len(getattr(q, '_putters'))", ["m.py:1: _putters"]),
        ("def f(queue):\n    return bool(queue._queue)", ["m.py:2: queue._queue"]),
        ("def f(state):\n    return state.queue._queue[0]", ["m.py:2: state.queue._queue"]),
        ("getattr(queue, '_queue')", ["m.py:1: '_queue'"]),
        (
            "class Q(asyncio.Queue[int]):\n    def _init(self, n):\n        self._queue = deque()",
            ["m.py:3: self._queue"],
        ),
        (
            "class Q(asyncio.Queue):\n    pass\nclass R(Q):\n    def f(self):\n        return self._queue",
            ["m.py:5: self._queue"],
        ),
        ("class W:\n    def f(self, x):\n        self._queue(x)", []),
        ("class Q(asyncio.Queue):\n    def _init(self, n):\n        self._messages = deque()", []),
    ],
)
def test_the_check_finds_each_kind_of_use(source: str, found: list[str]) -> None:
    assert queue_internals_used({"m.py": source}) == sorted(found)
