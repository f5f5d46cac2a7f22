"""Reading a user function's definition from its source, and deciding whether it may be inlined.

:mod:`sage_streams._codegen.inline` pastes user functions into generated loops. This module finds what
to paste: the definition that compiled to a function's code object, taken apart into parameters,
statements and the returned expression, and only when pasting it cannot change what it does.

A definition qualifies when its body is straight-line code ending in at most one ``return``:
assignments (plain, augmented, annotated), expression statements, ``assert``, ``raise`` of an
exception, ``pass`` and ``if``/``else`` of those. Anything that binds a name in a scope of its own
(a lambda, a comprehension) or through a walrus, any loop, ``try``, ``with``, ``del``, ``global``,
``nonlocal``, ``import`` or early ``return`` rules it out, as do ``super()`` and ``__class__``
(the compiler gives them a cell of the class) and the attributes through which code reaches for
frames (``._getframe``, ``.f_back``...). What a *name* means (``locals``, or ``sys._getframe``
imported as ``g``) depends on the function's globals and cells: :mod:`sage_streams._codegen.inline`
checks the objects the names resolve to.

A pasted local variable outlives its item: the next item's pass reads the last item's value if
it reads before assigning. A call raises ``UnboundLocalError`` there instead, so every local must
be assigned on every path before it is read; ``x = 1`` under an ``if`` without ``else``, then
``return x``, is called, not inlined.

The definition found must *be* the function: compiled again on its own (inside a function that
gives it the same free variables, for a closure, on the same lines and columns), its code object
must equal the function's as CPython compares code objects: bytecode, names, positions, and
constants by type and value, so ``1``, ``1.0`` and ``True`` differ. A source file edited since
the import, a lambda among several on one line, a name mangled in a class body: each makes the
code differ, and the function is called as usual.
"""

from __future__ import annotations

import ast
import copy
import linecache
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import CodeType

__all__ = ["Definition", "definition_of", "enclosed"]

_NESTED_SCOPES = (
    ast.Lambda,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.NamedExpr,
    ast.Yield,
    ast.YieldFrom,
    ast.Await,
)
"""Expressions that bind names or suspend: inlined, they would mean something else."""

_CLASS_NAMES = frozenset({"super", "__class__"})
"""Names that give a function a cell of its class: its code then has a free variable no
definition on its own has."""

_FRAME_ATTRIBUTES = frozenset({"_getframe", "currentframe", "stack", "f_back", "f_locals"})
"""Attributes through which code usually reaches for frames (``sys._getframe()``...)."""


@dataclass(frozen=True, slots=True)
class Definition:
    """A definition taken apart: ``params``, then ``body``, then the value ``expression``.

    ``body`` is empty for a lambda or a ``def`` of one ``return``; ``expression`` is ``None``
    (the constant) for a function that ends without ``return``. ``local_names`` are the names the
    body assigns, ``rebound`` the parameters among them.
    """

    params: tuple[str, ...]
    body: tuple[ast.stmt, ...]
    expression: ast.expr
    local_names: frozenset[str]
    rebound: frozenset[str]


def definition_of(code: CodeType) -> Definition | None:
    """The definition that compiled to ``code``, if it can be inlined (see the module docstring)."""
    tree = _parsed(code.co_filename, "".join(linecache.getlines(code.co_filename)))
    if tree is None:
        return None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Lambda | ast.FunctionDef)
            and _starts_at(node, code.co_firstlineno)
            and _compiles_to(node, code)
        ):
            return _parts(node)
    return None


def enclosed(node: ast.stmt | ast.expr, free: Sequence[str]) -> ast.Module:
    """A module holding ``def __enclosing__(): <free> = None; <node>``, so that ``node``
    compiles with ``free`` as free variables (cells of the enclosing function), as a closure
    does. The enclosing lines take the line number of ``node``'s first line."""
    wrapper = ast.parse("def __enclosing__():\n    pass")
    function = wrapper.body[0]
    assert isinstance(function, ast.FunctionDef)
    cells = ast.Assign(
        targets=[ast.Name(id=name, ctx=ast.Store()) for name in free], value=ast.Constant(None)
    )
    statement = ast.Expr(node) if isinstance(node, ast.expr) else node
    function.body = [cells, statement] if free else [statement]
    parts: tuple[ast.stmt, ...] = (function, cells)  # what they hold: ast.fix_missing_locations
    for part in parts:
        part.lineno = part.end_lineno = node.lineno
        part.col_offset = part.end_col_offset = 0
    return wrapper


@lru_cache(maxsize=8)
def _parsed(filename: str, source: str) -> ast.Module | None:
    if not source:
        return None
    try:
        return ast.parse(source, filename)
    except (SyntaxError, ValueError):
        return None


def _starts_at(node: ast.Lambda | ast.FunctionDef, line: int) -> bool:
    """Whether a code object's first line, ``line``, can be the start of ``node``."""
    if isinstance(node, ast.Lambda):
        return node.lineno == line
    first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    return line in (first, node.lineno)


def _compiles_to(node: ast.Lambda | ast.FunctionDef, code: CodeType) -> bool:
    """Whether ``node``, compiled on its own with the free variables of ``code``, gives ``code``
    (but for the flag that says it was nested in a function)."""
    alone: ast.stmt | ast.expr = node
    if isinstance(node, ast.FunctionDef):
        stripped = copy.copy(node)
        # A decorated function's code starts on its first decorator's line.
        stripped.lineno = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        stripped.decorator_list = []
        stripped.returns = None
        stripped.args = copy.copy(node.args)
        stripped.args.args = [ast.arg(arg=arg.arg) for arg in node.args.args]
        alone = stripped
    try:
        compiled = compile(
            ast.fix_missing_locations(enclosed(alone, code.co_freevars)),
            code.co_filename,
            "exec",
            dont_inherit=True,  # this module's __future__ imports are not the user's
        )
    except (SyntaxError, ValueError, TypeError):
        return False
    (enclosing,) = (const for const in compiled.co_consts if isinstance(const, CodeType))
    # Code equality compares constants by type and value (1, 1.0 and True differ) and positions.
    return any(
        isinstance(const, CodeType) and const.replace(co_flags=code.co_flags) == code
        for const in enclosing.co_consts
    )


def _parts(node: ast.Lambda | ast.FunctionDef) -> Definition | None:
    """``node`` taken apart, or ``None`` if pasting it could change what it does."""
    params = tuple(arg.arg for arg in node.args.args)
    if isinstance(node, ast.Lambda):
        body: list[ast.stmt] = []
        expression: ast.expr = node.body
    else:
        body = node.body[1:] if _is_docstring(node.body[0]) else list(node.body)
        expression = ast.Constant(None)
        if body and isinstance(body[-1], ast.Return):
            last = body.pop()
            assert isinstance(last, ast.Return)
            expression = last.value if last.value is not None else ast.Constant(None)
    if any(_forbidden(sub) for part in (*body, expression) for sub in ast.walk(part)):
        return None
    local_names = frozenset(
        name.id
        for statement in body
        for name in ast.walk(statement)
        if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store)
    )
    assigned = _run(body, set(params), local_names | set(params))
    if assigned is None or not _reads_assigned(expression, assigned, local_names):
        return None
    return Definition(params, tuple(body), expression, local_names, local_names & frozenset(params))


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _forbidden(node: ast.AST) -> bool:
    return (
        isinstance(node, _NESTED_SCOPES)
        or (isinstance(node, ast.Name) and node.id in _CLASS_NAMES)
        or (isinstance(node, ast.Attribute) and node.attr in _FRAME_ATTRIBUTES)
    )


def _run(statements: Iterable[ast.stmt], assigned: set[str], local_names: frozenset[str]) -> set[str] | None:
    """The locals assigned on every path through ``statements``, starting from ``assigned``;
    ``None`` if a statement is not allowed or reads a local not assigned on every path."""
    for statement in statements:
        if isinstance(statement, ast.If):
            if not _reads_assigned(statement.test, assigned, local_names):
                return None
            then = _run(statement.body, set(assigned), local_names)
            orelse = _run(statement.orelse, set(assigned), local_names)
            if then is None or orelse is None:
                return None
            assigned = then & orelse
        elif not _simple(statement, assigned, local_names):
            return None
    return assigned


def _simple(statement: ast.stmt, assigned: set[str], local_names: frozenset[str]) -> bool:
    """Check one non-``if`` statement, adding the names it assigns to ``assigned``."""
    reads: list[ast.AST | None]
    if isinstance(statement, ast.Assign):
        reads = [statement.value, *(read for target in statement.targets for read in _target_reads(target))]
        stores = statement.targets
    elif isinstance(statement, ast.AnnAssign):
        if statement.value is None or not isinstance(statement.target, ast.Name):
            return False  # a bare annotation declares a local without assigning it
        reads, stores = [statement.value], [statement.target]
    elif isinstance(statement, ast.AugAssign):
        reads, stores = [statement.value, statement.target], []
    elif isinstance(statement, ast.Expr):
        reads, stores = [statement.value], []
    elif isinstance(statement, ast.Assert):
        reads, stores = [statement.test, statement.msg], []
    elif isinstance(statement, ast.Raise) and statement.exc is not None:
        reads, stores = [statement.exc, statement.cause], []
    elif isinstance(statement, ast.Pass):
        reads, stores = [], []
    else:
        return False
    augmented_target = isinstance(statement, ast.AugAssign)
    if not all(_reads_assigned(node, assigned, local_names, stores=augmented_target) for node in reads):
        return False
    assigned.update(n.id for target in stores for n in ast.walk(target) if isinstance(n, ast.Name))
    return True


def _target_reads(target: ast.expr) -> list[ast.expr]:
    """What evaluating an assignment target reads: ``a[i]`` reads ``a`` and ``i``, ``x`` nothing."""
    if isinstance(target, ast.Tuple | ast.List):
        return [read for element in target.elts for read in _target_reads(element)]
    if isinstance(target, ast.Starred):
        return _target_reads(target.value)
    return [] if isinstance(target, ast.Name) else [target]


def _reads_assigned(
    node: ast.AST | None, assigned: set[str], local_names: frozenset[str], *, stores: bool = False
) -> bool:
    """Whether every local that ``node`` reads (``stores``: also the ones it stores, as an
    augmented assignment's target does) is in ``assigned``."""
    if node is None:
        return True
    return all(
        sub.id in assigned
        for sub in ast.walk(node)
        if isinstance(sub, ast.Name) and sub.id in local_names and (stores or isinstance(sub.ctx, ast.Load))
    )
