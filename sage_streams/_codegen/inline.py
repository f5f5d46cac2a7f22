"""Inlining user functions into generated loops.

A fused chain already runs as one generated loop (:mod:`sage_streams._codegen.chain`), but each step
still costs a Python call per item, and on CPython a call of a small function costs more than
the function's own work: ``x * 2`` takes ~15 ns, calling ``double(x)`` ~45 ns. Compilers cure
this by inlining, and so do we, for the functions where it cannot change what happens: a
``lambda`` or a ``def`` of plain positional parameters, no default values and no ``yield`` or
``await``, whose body :mod:`sage_streams._codegen.source` finds safe to paste (straight-line code
ending in one ``return``, no nested scope) and whose names do not resolve to anything that looks
at its caller's frame (``locals``, ``sys._getframe`` under any name, a logger, ``warnings.warn``).
By default (``inline=True``) only a function of one expression qualifies; a body of statements,
whose pasted code a logger or a warning would place in the loop, only with ``inline="all"``.

The pasted code means what the function's code meant. Its parameters become the loop's
variables, its locals get a prefix of their own, global names keep their late binding (the
generated function runs with the user function's own globals), and a closure's free variables
read the function's own cells: the generated function is built with them as its closure.

What a user can still tell apart is what a debugger sees. An inlined function has no frame of
its own, so a traceback shows the generated line (its text is the function's code) and a note
names the function and its file; and tracers and profilers would not see its calls. So nothing
is inlined while a tracer or profiler is active (``coverage``, ``pdb``, ``cProfile``), and
``LocalEnvironment(inline=False)`` turns inlining off.
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
from types import CellType, CodeType, FunctionType, ModuleType
from typing import Any, Literal, TypeAlias, TypeVar

from sage_streams._codegen.source import Definition, definition_of, enclosed

__all__ = ["Inline", "Inlinable", "define", "inlinable", "tracing"]

K = TypeVar("K")

Inline: TypeAlias = bool | Literal["all"]
"""What is pasted: ``True`` one-expression functions, ``"all"`` statement bodies too, ``False`` nothing."""

_PLAIN_FLAGS = 0x0001 | 0x0002 | 0x0010  # CO_OPTIMIZED | CO_NEWLOCALS | CO_NESTED
"""Code flags of an ordinary function: any other (varargs, generator, coroutine) rules it out."""


@dataclass(frozen=True, slots=True)
class Inlinable:
    """A function whose code can be pasted where it is called: see :meth:`block`."""

    function: FunctionType
    definition: Definition

    @property
    def where(self) -> str:
        """``file:line`` of the definition, for error notes."""
        code = self.function.__code__
        return f"{code.co_filename}:{code.co_firstlineno}"

    @property
    def cells(self) -> dict[str, CellType]:
        """The closure's cells by the name of their free variable."""
        names = self.function.__code__.co_freevars
        return dict(zip(names, self.function.__closure__ or (), strict=True))

    @property
    def global_names(self) -> frozenset[str]:
        """The names the code reads from its globals (or built-ins)."""
        definition = self.definition
        own = {*definition.params, *definition.local_names, *self.function.__code__.co_freevars}
        return frozenset(
            node.id
            for part in (*definition.body, definition.expression)
            for node in ast.walk(part)
            if isinstance(node, ast.Name) and node.id not in own
        )

    def note(self, place: str) -> str:
        """The note for an error its code raised, pasted into ``place``."""
        return (
            f"sage_streams: {self.function.__qualname__} ({self.where}) ran inlined in {place}, so it"
            " has no frame above; LocalEnvironment(inline=False) calls it"
        )

    def text(self, *args: str) -> str:
        """The expression of a one-expression function (see :meth:`block`)."""
        lines, value = self.block(args, "")
        if lines:
            raise ValueError(f"{self.function.__qualname__} is not one expression")
        return value

    def block(self, args: tuple[str, ...] | list[str], prefix: str) -> tuple[list[str], str]:
        """The function's code for a call on ``args``: the statements to run first (unindented
        source lines) and the value's expression, in parentheses, to stand where
        ``function(*args)`` stood.

        An argument is a name, or an expression in parentheses whose value does not depend on
        when it is evaluated (a tuple of names, say). A parameter the body never assigns is
        replaced by its argument where it is read, if that argument is a name or the parameter
        is read at most once: ``a, b = pair`` given ``(x, y)`` becomes ``a, b = (x, y)``,
        which CPython compiles without building the tuple. The other parameters are assigned
        their argument first; they, and the locals, are named with ``prefix`` in front."""
        definition = self.definition
        if len(args) != len(definition.params):
            raise ValueError(f"{self.function.__qualname__} takes {len(definition.params)} argument(s)")
        lines, value = _rendered(definition, tuple(args), prefix)
        return list(lines), value


@lru_cache(maxsize=256)
def _rendered(definition: Definition, args: tuple[str, ...], prefix: str) -> tuple[tuple[str, ...], str]:
    """:meth:`Inlinable.block`'s lines and value, rendered once per process: every run of a
    graph compiles its chains again, and rendering is most of that."""
    names = {name: prefix + name for name in definition.local_names}
    lines = []
    for param, arg in zip(definition.params, args, strict=True):
        if param in definition.rebound or (not arg.isidentifier() and _reads(definition, param) > 1):
            names[param] = prefix + param
            lines.append(f"{prefix}{param} = {arg}")
        else:
            names[param] = arg
    rename = _Rename(names)
    for statement in definition.body:
        lines += ast.unparse(rename.visit(copy.deepcopy(statement))).splitlines()
    return tuple(lines), f"({ast.unparse(rename.visit(copy.deepcopy(definition.expression)))})"


def _reads(definition: Definition, name: str) -> int:
    """How many times the code of ``definition`` reads ``name``."""
    return sum(
        isinstance(node, ast.Name) and node.id == name
        for part in (*definition.body, definition.expression)
        for node in ast.walk(part)
    )


class _Rename(ast.NodeTransformer):
    """Renames names; an annotated assignment loses its annotation (never evaluated in a body)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(id=self.names.get(node.id, node.id), ctx=node.ctx)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.Assign:
        assert node.value is not None
        return ast.copy_location(
            ast.Assign(targets=[self.visit(node.target)], value=self.visit(node.value)), node
        )


def tracing() -> bool:
    """Whether a tracer or profiler watches this thread (then function calls must stay calls)."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)  # 3.12+: coverage may use sys.monitoring
    return monitoring is not None and any(monitoring.get_tool(tool) for tool in range(6))


_found: weakref.WeakKeyDictionary[CodeType, Definition | None] = weakref.WeakKeyDictionary()


def inlinable(function: Callable[..., Any], arity: int = 1, *, statements: bool = False) -> Inlinable | None:
    """The inlinable form of ``function`` if it takes ``arity`` arguments and can be inlined
    (see the module docstring); ``None`` when it must be called. Unless ``statements``, only a
    function of one expression qualifies."""
    if type(function) is not FunctionType:
        return None
    code = function.__code__
    if (
        code.co_argcount != arity
        or code.co_posonlyargcount
        or code.co_kwonlyargcount
        or code.co_flags & ~_PLAIN_FLAGS & 0xFFFF
        or function.__defaults__
    ):
        return None
    if code not in _found:
        _found[code] = definition_of(code)
    definition = _found[code]
    if definition is None or (definition.body and not statements):
        return None
    found = Inlinable(function, definition)
    return None if _reads_frames(found) else found


_FRAME_READERS = {
    "builtins": ("locals", "vars", "dir", "eval", "exec", "breakpoint"),
    "sys": ("_getframe",),
    "inspect": ("currentframe", "stack", "trace"),
    "traceback": ("extract_stack", "format_stack", "print_stack", "walk_stack"),
    "warnings": ("warn",),
    "logging": ("debug", "info", "warning", "warn", "error", "exception", "critical", "log"),
}
"""Functions that look at their caller's frame (a logger's record names the caller's function,
a warning its line), by module: none of a module never imported can be reached."""


def _reads_frames(found: Inlinable) -> bool:
    """Whether a name of ``found``'s code, or an attribute of a module it names, is now one of
    the frame readers or a logger, whatever the name: ``g`` after ``from sys import _getframe as g``."""
    readers = {
        id(reader)
        for module_name, names in _FRAME_READERS.items()
        if (module := sys.modules.get(module_name)) is not None
        for name in names
        if (reader := getattr(module, name, None)) is not None
    }
    logging = sys.modules.get("logging")
    loggers: tuple[type, ...] = () if logging is None else (logging.Logger, logging.LoggerAdapter)

    def reads(value: Any) -> bool:
        return id(value) in readers or isinstance(value, loggers)

    function = found.function
    namespaces = (function.__globals__, function.__globals__.get("__builtins__", {}))
    for part in (*found.definition.body, found.definition.expression):
        for node in ast.walk(part):
            path: list[str] = []
            while isinstance(node, ast.Attribute):
                path.append(node.attr)
                node = node.value
            if not isinstance(node, ast.Name):
                continue
            value = _resolved(node.id, found.cells, namespaces)
            if reads(value):
                return True
            for attribute in reversed(path):  # through modules only: other getattrs run code
                if not isinstance(value, ModuleType):
                    break
                value = vars(value).get(attribute)
                if reads(value):
                    return True
    return False


def _resolved(name: str, cells: Mapping[str, CellType], namespaces: tuple[Any, ...]) -> Any:
    """What ``name`` means now in a function with ``cells`` and globals, then built-ins, in
    ``namespaces`` (``None`` for an empty cell or an unknown name)."""
    if name in cells:
        try:
            return cells[name].cell_contents
        except ValueError:
            return None
    for namespace in namespaces:
        scope = vars(namespace) if isinstance(namespace, ModuleType) else namespace
        if name in scope:
            return scope[name]
    return None


# -- generated functions that hold inlined code ------------------------------------------------


def define(
    source: Callable[[Mapping[K, Inlinable]], list[str]],
    name: str,
    label: str,
    namespace: dict[str, Any],
    inlined: Mapping[K, Inlinable],
) -> tuple[FunctionType, dict[K, Inlinable]]:
    """Compile the generated function ``name`` from the lines ``source(inlined)``.

    ``inlined`` holds the functions to paste in, by whatever the generator keys them on. The
    generated function's default values are evaluated in ``namespace``. With inlined code it
    runs with their module's globals (they must share one), so the generated code must take
    everything else it uses, built-ins included, as defaults; and its closure holds their cells.

    Pasted code must find the names it reads where its function found them. So a function is
    left out, and called instead, when it reads a global or a free variable that the generated
    function has as a local (a chain's ``o2``, say) or by its own ``name``, when its
    free variable has the name of another's global, or when two free variables share a name but
    not a cell. The
    source is registered with ``linecache``, so that tracebacks show the generated line, and
    with it an inlined function's code.

    Returns:
        The function, and the entries of ``inlined`` it holds.
    """
    kept = _sharing_names(inlined, name)
    function = _compile(source(kept), name, label, namespace, kept)
    if clashing := _clashes(function, kept):
        kept = {k: found for k, found in kept.items() if k not in clashing}
        function = _compile(source(kept), name, label, namespace, kept)
    return function, kept


def _sharing_names(inlined: Mapping[K, Inlinable], name: str) -> dict[K, Inlinable]:
    """The entries of ``inlined`` whose names mean the same in all of them, first come first:
    a free variable is one cell throughout, and never the name of another's global; and none
    reads ``name``, which the generated function's own definition binds in its enclosing scope."""
    kept: dict[K, Inlinable] = {}
    cells: dict[str, CellType] = {}
    global_names: set[str] = set()
    for k, found in inlined.items():
        own = found.cells
        if name in own or name in found.global_names:
            continue
        if any(cells.get(n, cell) is not cell for n, cell in own.items()) or (
            own.keys() & global_names or found.global_names & cells.keys()
        ):
            continue
        kept[k] = found
        cells.update(own)
        global_names |= found.global_names
    return kept


def _compile(
    lines: list[str], name: str, label: str, namespace: dict[str, Any], inlined: Mapping[Any, Inlinable]
) -> FunctionType:
    source = "\n".join(lines) + "\n"
    filename = f"<{label} {hashlib.blake2b(source.encode(), digest_size=4).hexdigest()}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    scope = dict(namespace)
    exec(_compiled(source, filename), scope)
    function: FunctionType = scope[name]
    if not inlined:
        return function
    cells = {n: cell for found in inlined.values() for n, cell in found.cells.items()}
    code = _closure_code(source, filename, name, tuple(cells)) if cells else function.__code__
    module_globals = next(iter(inlined.values())).function.__globals__
    closure = tuple(cells[n] for n in code.co_freevars)
    rebound = FunctionType(code, module_globals, name, function.__defaults__, closure)
    rebound.__kwdefaults__ = function.__kwdefaults__
    return rebound


@lru_cache(maxsize=64)
def _compiled(source: str, filename: str) -> CodeType:
    """``source`` compiled: every run of a graph generates the same code again."""
    return compile(source, filename, "exec")


@lru_cache(maxsize=64)
def _closure_code(source: str, filename: str, name: str, free: tuple[str, ...]) -> CodeType:
    """The code of the generated function compiled with ``free`` as free variables, on the
    same lines as ``source`` (the enclosing function is never run: the defaults come from the
    plain compilation)."""
    (function,) = ast.parse(source, filename).body
    module = compile(ast.fix_missing_locations(enclosed(function, free)), filename, "exec")
    (enclosing,) = (c for c in module.co_consts if isinstance(c, CodeType))
    (code,) = (c for c in enclosing.co_consts if isinstance(c, CodeType) and c.co_name == name)
    return code.replace(co_qualname=name)  # not "__enclosing__.<locals>.fused", in tracebacks


def _clashes(function: FunctionType, inlined: Mapping[K, Inlinable]) -> set[K]:
    """The entries of ``inlined`` whose code reads a global or free variable that ``function``
    (or code nested in it, like a comprehension) has as a local."""
    codes = [function.__code__]
    codes += [const for const in function.__code__.co_consts if isinstance(const, CodeType)]
    local = {name for code in codes for name in (*code.co_varnames, *code.co_cellvars)}
    return {k for k, found in inlined.items() if (found.global_names | found.cells.keys()) & local}
