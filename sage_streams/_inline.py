"""Inlining user functions whose whole body is one expression into generated loops.

A fused chain already runs as one generated loop (:mod:`sage_streams._fusion`), but each step
still costs a Python call per item, and on CPython a call of a small function costs more than
the function's own work: ``x * 2`` takes ~15 ns, calling ``double(x)`` ~45 ns. Compilers cure
this by inlining, and so do we, for the functions where it cannot change what happens: a
``lambda`` or a ``def`` whose body is ``return <expression>`` (a docstring allowed), of plain
positional parameters, with no closure, no default values, no nested scope (a lambda or a
comprehension inside would capture the loop's variable, not the call's), no walrus, no
``yield``/``await``, and none of the built-ins that look at their caller's frame (``locals()``,
``eval()``, ``super()``...). Global names keep their late binding: the generated function runs
with the user function's own globals.

We read the expression from the function's source file, and then check that it *is* the
function: the definition found there is compiled again and its bytecode must equal the
function's. A source file edited since the import, a lambda among several on one line, a name
mangled in a class body: each makes the bytecode differ, and the function is called as usual.

What a user can still tell apart is what a debugger sees. An inlined function has no frame of
its own, so a traceback shows the generated line (its text is the function's expression) and a
note names the function and its file; and tracers and profilers would not see its calls. So
nothing is inlined while a tracer or profiler is active (``coverage``, ``pdb``, ``cProfile``),
and ``LocalEnvironment(inline=False)`` turns inlining off.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import linecache
import sys
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import CodeType, FunctionType
from typing import Any, TypeVar

__all__ = ["Inlinable", "define", "inlinable", "tracing"]

K = TypeVar("K")

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

_FRAME_NAMES = frozenset({"locals", "vars", "dir", "eval", "exec", "super", "__class__", "breakpoint"})
"""Built-ins that read the calling frame, which an inlined expression does not have."""

_FRAME_ATTRIBUTES = frozenset({"_getframe", "currentframe", "stack", "f_back", "f_locals"})
"""Attributes through which code usually reaches for frames (``sys._getframe()``...)."""

_PLAIN_FLAGS = 0x0001 | 0x0002 | 0x0010  # CO_OPTIMIZED | CO_NEWLOCALS | CO_NESTED
"""Code flags of an ordinary function: any other (varargs, generator, coroutine) rules it out."""


@dataclass(frozen=True, slots=True)
class Inlinable:
    """A function of plain parameters whose body is the single expression ``expression``."""

    function: FunctionType
    params: tuple[str, ...]
    expression: ast.expr

    @property
    def where(self) -> str:
        """``file:line`` of the definition, for error notes."""
        code = self.function.__code__
        return f"{code.co_filename}:{code.co_firstlineno}"

    @property
    def global_names(self) -> frozenset[str]:
        """The names the expression reads from its globals (or built-ins)."""
        return frozenset(
            node.id
            for node in ast.walk(self.expression)
            if isinstance(node, ast.Name) and node.id not in self.params
        )

    def note(self, place: str) -> str:
        """The note for an error its expression raised, pasted into ``place``."""
        return (
            f"sage_streams: {self.function.__qualname__} ({self.where}) ran inlined in {place}, so it"
            " has no frame above; LocalEnvironment(inline=False) calls it"
        )

    def text(self, *args: str) -> str:
        """The expression's source with each parameter replaced by the name in ``args``, in
        parentheses, ready to stand where ``function(*args)`` stood."""
        if len(args) != len(self.params):
            raise ValueError(f"{self.function.__qualname__} takes {len(self.params)} argument(s)")
        renamed = _Rename(dict(zip(self.params, args, strict=True))).visit(copy.deepcopy(self.expression))
        return f"({ast.unparse(renamed)})"


class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(id=self.names.get(node.id, node.id), ctx=node.ctx)


def tracing() -> bool:
    """Whether a tracer or profiler watches this thread (then function calls must stay calls)."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)  # 3.12+: coverage may use sys.monitoring
    return monitoring is not None and any(monitoring.get_tool(tool) for tool in range(6))


_found: weakref.WeakKeyDictionary[CodeType, tuple[tuple[str, ...], ast.expr] | None]
_found = weakref.WeakKeyDictionary()


def inlinable(function: Callable[..., Any], arity: int = 1) -> Inlinable | None:
    """The expression form of ``function`` if it takes ``arity`` arguments and can be inlined
    (see the module docstring); ``None`` when it must be called."""
    if type(function) is not FunctionType:
        return None
    code = function.__code__
    if (
        code.co_argcount != arity
        or code.co_posonlyargcount
        or code.co_kwonlyargcount
        or code.co_freevars
        or code.co_flags & ~_PLAIN_FLAGS & 0xFFFF
        or function.__defaults__
    ):
        return None
    if code not in _found:
        _found[code] = _expression_of(code)
    found = _found[code]
    return None if found is None else Inlinable(function, found[0], found[1])


def _expression_of(code: CodeType) -> tuple[tuple[str, ...], ast.expr] | None:
    """The parameters and the body expression of the definition compiled to ``code``."""
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


def _parts(node: ast.Lambda | ast.FunctionDef) -> tuple[tuple[str, ...], ast.expr] | None:
    """Parameters and expression of a one-expression definition that is safe to inline."""
    if isinstance(node, ast.Lambda):
        expression = node.body
    else:
        body = node.body[1:] if _is_docstring(node.body[0]) else node.body
        if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
            return None
        expression = body[0].value
    for sub in ast.walk(expression):
        if (
            isinstance(sub, _NESTED_SCOPES)
            or (isinstance(sub, ast.Name) and sub.id in _FRAME_NAMES)
            or (isinstance(sub, ast.Attribute) and sub.attr in _FRAME_ATTRIBUTES)
        ):
            return None
    return tuple(arg.arg for arg in node.args.args), expression


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _compiles_to(node: ast.Lambda | ast.FunctionDef, code: CodeType) -> bool:
    """Whether ``node``, compiled on its own, gives the bytecode of ``code``."""
    if isinstance(node, ast.FunctionDef):
        alone = copy.copy(node)
        alone.decorator_list = []
        alone.returns = None
        alone.args = copy.copy(node.args)
        alone.args.args = [ast.arg(arg=arg.arg) for arg in node.args.args]
        module: ast.Module | ast.Expression = ast.Module(body=[alone], type_ignores=[])
        mode = "exec"
    else:
        module, mode = ast.Expression(body=node), "eval"
    try:
        compiled = compile(ast.fix_missing_locations(module), code.co_filename, mode, dont_inherit=True)
    except (SyntaxError, ValueError, TypeError):
        return False
    return any(
        isinstance(const, CodeType)
        and const.co_code == code.co_code
        and const.co_consts == code.co_consts
        and const.co_names == code.co_names
        and const.co_varnames == code.co_varnames
        for const in compiled.co_consts
    )


# -- generated functions that hold inlined expressions ---------------------------------------------


def define(
    source: Callable[[Mapping[K, Inlinable]], list[str]],
    name: str,
    label: str,
    namespace: dict[str, Any],
    inlined: Mapping[K, Inlinable],
) -> tuple[FunctionType, dict[K, Inlinable]]:
    """Compile the generated function ``name`` from the lines ``source(inlined)``.

    ``inlined`` holds the expressions to paste in, by whatever the generator keys them on. Its
    default values are evaluated in ``namespace``. With inlined expressions it runs with their
    module's globals (they must share one), so the generated code must take everything else it
    uses, built-ins included, as defaults. An expression that reads a global the function has
    as a local (a comprehension's ``out``, say) would read the local: the source is made again
    without it, and that function is called. The source is registered with ``linecache``, so
    that tracebacks show the generated line, and with it an inlined function's expression.

    Returns:
        The function, and the entries of ``inlined`` it holds.
    """
    kept = dict(inlined)
    function = _compile(source(kept), name, label, namespace, kept)
    if clashing := _clashes(function, kept):
        kept = {k: found for k, found in kept.items() if k not in clashing}
        function = _compile(source(kept), name, label, namespace, kept)
    return function, kept


def _compile(
    lines: list[str], name: str, label: str, namespace: dict[str, Any], inlined: Mapping[Any, Inlinable]
) -> FunctionType:
    source = "\n".join(lines) + "\n"
    filename = f"<{label} {hashlib.blake2b(source.encode(), digest_size=4).hexdigest()}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    scope = dict(namespace)
    exec(compile(source, filename, "exec"), scope)
    function: FunctionType = scope[name]
    if inlined:
        module_globals = next(iter(inlined.values())).function.__globals__
        rebound = FunctionType(function.__code__, module_globals, name)
        rebound.__kwdefaults__ = function.__kwdefaults__
        function = rebound
    return function


def _clashes(function: FunctionType, inlined: Mapping[K, Inlinable]) -> set[K]:
    """The entries of ``inlined`` whose expressions read a global that ``function`` (or code
    nested in it, like a comprehension) has as a local."""
    codes = [function.__code__]
    codes += [const for const in function.__code__.co_consts if isinstance(const, CodeType)]
    local = {name for code in codes for name in (*code.co_varnames, *code.co_cellvars)}
    return {k for k, found in inlined.items() if found.global_names & local}
