"""The registry of business functions, the ``@magicflow.function`` decorator, and handler loading.

A function is registered under a function name (what a step's ``function:`` names) or under
a generated step constant (a ``StrEnum`` member whose value is a step id): the step-id
registration serves that step whatever function it names, and wins over the function name.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, TypeVar, overload

from magicflow.errors import ConfigurationError
from magicflow.executor.context import StepContext

StepFunction = Callable[[StepContext], Any]
"""A business function: ``def f(ctx) -> JSON`` or ``async def f(ctx) -> JSON``."""

F = TypeVar("F", bound=StepFunction)


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered business function. ``key`` is the name or step id it is registered under."""

    key: str
    fn: StepFunction
    is_async: bool

    @property
    def qualified_name(self) -> str:
        return _describe(self.fn)


def _describe(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}"


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class Registry:
    """Business functions by function name, and by step id (generated step constants)."""

    def __init__(self) -> None:
        self._functions: dict[str, Handler] = {}
        self._steps: dict[str, Handler] = {}

    def register(self, key: str | Enum, fn: StepFunction) -> None:
        """Register ``fn`` under a function name, or under a step constant (keyed by step id).

        Registering the same function again is a no-op, and a function re-imported from the
        same module and name replaces its old self; any other duplicate is a
        ``ConfigurationError``.
        """
        if not callable(fn):
            raise ConfigurationError(f"cannot register {fn!r}: it is not callable")
        if isinstance(key, Enum):
            if not isinstance(key.value, str) or not key.value:
                raise ConfigurationError(
                    f"cannot register {_describe(fn)} under {key!r}: a step constant's value "
                    "must be a step id"
                )
            table, kind, name = self._steps, "step", key.value
        elif isinstance(key, str) and key.strip() == key and key:
            table, kind, name = self._functions, "function", key
        else:
            raise ConfigurationError(
                f"cannot register {_describe(fn)} under {key!r}: expected a function name "
                "or a generated step constant"
            )
        existing = table.get(name)
        if existing is not None and not _same_definition(existing.fn, fn):
            raise ConfigurationError(
                f"{kind} {name!r} is already registered by {existing.qualified_name}; "
                f"{_describe(fn)} cannot be registered under the same {kind}"
            )
        table[name] = Handler(name, fn, _is_async(fn))

    @overload
    def function(self, fn: F, /) -> F: ...

    @overload
    def function(self, name: str | None = None, /) -> Callable[[F], F]: ...

    def function(self, arg: F | str | None = None, /) -> F | Callable[[F], F]:
        """Decorator: ``@registry.function`` (the function's ``__name__``) or
        ``@registry.function("send_email")``. Returns the function unchanged."""
        if callable(arg):
            self.register(_name_of(arg), arg)
            return arg
        if arg is not None and not isinstance(arg, str):
            raise ConfigurationError(f"@function expects a function or a name, not {arg!r}")

        def decorate(fn: F) -> F:
            self.register(arg if arg is not None else _name_of(fn), fn)
            return fn

        return decorate

    def lookup(self, function: str, step_id: str | None = None) -> Handler | None:
        """The handler for a task: by ``step_id`` first, then by ``function`` name.

        Pass ``step_id`` only for a step's own function: a fallback or compensation task
        carries the step's id too, but must run the function it names.
        """
        if step_id is not None and self._steps:
            handler = self._steps.get(step_id)
            if handler is not None:
                return handler
        return self._functions.get(function)

    def names(self) -> list[str]:
        """Registered function names, sorted."""
        return sorted(self._functions)

    def step_ids(self) -> list[str]:
        """Step ids with a registration of their own, sorted."""
        return sorted(self._steps)

    def update(self, other: Registry) -> None:
        """Add every registration of ``other`` (same duplicate rules as ``register``)."""
        if other is self:
            return
        for handler in other._functions.values():
            self.register(handler.key, handler.fn)
        for handler in other._steps.values():
            self._register_step_id(handler)

    def _register_step_id(self, handler: Handler) -> None:
        existing = self._steps.get(handler.key)
        if existing is not None and not _same_definition(existing.fn, handler.fn):
            raise ConfigurationError(
                f"step {handler.key!r} is already registered by {existing.qualified_name}; "
                f"{handler.qualified_name} cannot be registered under the same step"
            )
        self._steps[handler.key] = handler

    def clear(self) -> None:
        """Forget every registration (tests use this on the default registry)."""
        self._functions.clear()
        self._steps.clear()

    def copy(self) -> Registry:
        clone = Registry()
        clone._functions = dict(self._functions)
        clone._steps = dict(self._steps)
        return clone

    def __len__(self) -> int:
        return len(self._functions) + len(self._steps)

    def __iter__(self) -> Iterator[Handler]:
        yield from self._functions.values()
        yield from self._steps.values()

    def __contains__(self, key: object) -> bool:
        if isinstance(key, Enum):
            return key.value in self._steps
        return key in self._functions

    def __repr__(self) -> str:
        return f"<Registry functions={self.names()} steps={self.step_ids()}>"


def _name_of(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str) or not name or name == "<lambda>":
        raise ConfigurationError(f"{fn!r} has no usable __name__: register it with a name")
    return name


def _same_definition(old: Callable[..., Any], new: Callable[..., Any]) -> bool:
    """The same object, or the same definition imported again (module reload)."""
    if old is new:
        return True
    return _describe(old) == _describe(new) and "<locals>" not in _describe(new)


_default = Registry()


def default_registry() -> Registry:
    """The registry that ``@magicflow.function`` fills."""
    return _default


@overload
def function(fn: F, /) -> F: ...


@overload
def function(name: str | None = None, /) -> Callable[[F], F]: ...


def function(arg: F | str | None = None, /) -> F | Callable[[F], F]:
    """Register a business function in the default registry.

    ``@magicflow.function`` registers it under its ``__name__``;
    ``@magicflow.function("send_email")`` under an explicit name. Sync and async functions
    both work; the function is returned unchanged.
    """
    return _default.function(arg)


# ------------------------------------------------------------------ loading handler modules


def load_handlers(module_or_path: str) -> Registry:
    """Import a handlers module (by name, or a ``.py`` file by path) and return its functions.

    The result holds the default registry's functions plus those of every ``Registry`` the
    module defines at top level (``registry = Registry(); registry.register(StepX, fn)``).
    A file's directory (and, for a module name, the current directory) is put on
    ``sys.path`` so that the handlers can import their neighbours. Loading the same file or
    module again does not run it again. A module that fails to import raises a
    ``ConfigurationError`` with one readable line: where, and the original error.
    """
    target = module_or_path.strip()
    if not target:
        raise ConfigurationError("--handlers needs a module name or a path to a .py file")
    if target.endswith(".py") or os.sep in target or "/" in target:
        module = _import_file(Path(target))
    else:
        module = _import_module(target)
    registry = Registry()
    registry.update(_default)
    for value in vars(module).values():
        if isinstance(value, Registry):
            registry.update(value)
    return registry


def _import_module(name: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigurationError(
                f"cannot import handlers module {name!r}: no module named {exc.name!r} "
                "(pass an importable module name or a path to a .py file)"
            ) from exc
        raise ConfigurationError(_import_failure(f"module {name!r}", None, exc)) from exc
    except Exception as exc:
        raise ConfigurationError(_import_failure(f"module {name!r}", None, exc)) from exc


def _import_file(path: Path) -> ModuleType:
    resolved = path.expanduser().resolve()
    if not resolved.is_file():
        raise ConfigurationError(f"handlers file not found: {path}")
    digest = hashlib.sha1(str(resolved).encode(), usedforsecurity=False).hexdigest()[:10]
    stem = "".join(c if c.isalnum() else "_" for c in resolved.stem)
    name = f"magicflow_handlers_{stem}_{digest}"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    directory = str(resolved.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot load handlers file {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigurationError(_import_failure(f"file {path}", resolved, exc)) from exc
    return module


def _import_failure(what: str, path: Path | None, exc: BaseException) -> str:
    """``cannot load handlers file h.py: h.py:3: NameError: name 'x' is not defined``."""
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{exc.filename}:{exc.lineno}: "
        detail = f"SyntaxError: {exc.msg}"
    else:
        frame = _innermost_frame(exc.__traceback__, path)
        if frame is not None:
            where = f"{frame[0]}:{frame[1]}: "
        detail = f"{type(exc).__name__}: {exc}"
    line = f"cannot load handlers {what}: {where}{detail}"
    return " ".join(line.split())


def _innermost_frame(tb: TracebackType | None, path: Path | None) -> tuple[str, int] | None:
    """The last frame of the traceback in ``path`` (or in any non-import-machinery file)."""
    found: tuple[str, int] | None = None
    for frame in traceback.extract_tb(tb):
        if frame.lineno is None or frame.filename.startswith("<frozen"):
            continue
        if path is not None and frame.filename != str(path):
            continue
        if path is None and frame.filename == __file__:
            continue
        found = (frame.filename, frame.lineno)
    return found
