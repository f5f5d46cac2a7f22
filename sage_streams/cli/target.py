"""Loading the environment a command names: ``pkg.module:env``, ``pkg.module:factory`` or
``path/to/file.py:env``, each failure a :class:`TargetError` with a one-line message."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from sage_streams import LocalEnvironment

__all__ = ["TargetError", "load_environment"]


class TargetError(Exception):
    """The target does not name an environment; the message says why, in one line."""


def load_environment(target: str) -> LocalEnvironment:
    """The environment ``target`` names: an attribute that is one, or a callable returning one."""
    module_path, sep, attribute = target.rpartition(":")
    if not sep or not module_path or not attribute:
        raise TargetError(f"target {target!r} must be MODULE:ATTRIBUTE (pkg.module:env or file.py:env)")
    module = _import(module_path)
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise TargetError(f"module {module_path!r} has no attribute {attribute!r}") from None
    if callable(value) and not isinstance(value, LocalEnvironment):
        try:
            value = value()
        except Exception as exc:
            raise TargetError(f"factory {target!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(value, LocalEnvironment):
        raise TargetError(f"{target!r} is a {type(value).__name__}, not a LocalEnvironment")
    return value


def _import(module_path: str) -> object:
    if module_path.endswith(".py"):
        path = Path(module_path)
        if not path.is_file():
            raise TargetError(f"no file {module_path!r}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise TargetError(f"importing {module_path!r} raised {type(exc).__name__}: {exc}") from exc
        return module
    sys.path.insert(0, "")  # as ``python -m`` does: modules of the working directory import
    try:
        return importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        raise TargetError(f"cannot import {module_path!r}: no module named {exc.name!r}") from exc
    except Exception as exc:
        raise TargetError(f"importing {module_path!r} raised {type(exc).__name__}: {exc}") from exc
