"""Run-time side of the expression language: path reads, operators, functions, the evaluator.

Private to :mod:`magicflow.dsl.expressions`. Trees reaching here were whitelisted by
``_expr_syntax``; the evaluator is simpleeval's, restricted to our node types and operators,
with every failure turned into an :class:`EvaluationError` that names what was being read.
"""

from __future__ import annotations

import ast
import operator
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from simpleeval import EvalWithCompoundTypes

from magicflow.errors import MagicFlowError

_PLAIN_KEY = re.compile(r"[A-Za-z_]\w*\Z", re.ASCII)


class PathNode(ast.expr):
    """A folded run of constant subscripts on a scope root: ``steps.a-b.output.x[0]``.

    ``hops`` pairs each key with a description of the container it is read from, for messages.
    """

    _fields = ()

    def __init__(
        self, root: str = "", hops: tuple[tuple[str | int, str], ...] = (), display: str = ""
    ) -> None:  # defaults: copy and pickle rebuild nodes from PathNode() and their __dict__
        super().__init__()
        self.root, self.hops, self.display = root, hops, display


def path_display(parent: str, key: object) -> str:
    if isinstance(key, str) and (_PLAIN_KEY.match(key) or parent == "steps"):
        return f"{parent}.{key}"
    return f"{parent}[{key!r}]"


class EvaluationError(MagicFlowError):
    """An expression failed at run time; ``str()`` is a one-line message naming the path.

    ``expression`` is the source text of the failing expression, when known.
    """

    expression: str | None = None


class MissingValueError(EvaluationError):
    """A key, index, step result or scope name is absent (``default()`` falls back on these)."""


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    return "map" if isinstance(value, Mapping) else type(value).__name__


def describe(node: ast.expr) -> str:
    """What a container expression reads, for messages: ``input.items``, ``lower(...)``."""
    if isinstance(node, PathNode):
        return node.display
    if isinstance(node, ast.Subscript):
        return f"{describe(node.value)}[...]"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return f"{node.func.id}(...)"
    return {ast.List: "[...]", ast.Dict: "{...}"}.get(type(node), "the value")


def lookup(container: Any, key: Any, where: str) -> Any:
    """``container[key]`` as the language defines it: map key or list index, nothing else."""
    if isinstance(container, Mapping):
        try:
            return container[key]
        except KeyError:
            if where == "steps":
                raise MissingValueError(
                    f"steps.{key} is not available: the step has not run"
                ) from None
            raise MissingValueError(f"{where} has no key {key!r}") from None
        except TypeError:
            raise EvaluationError(
                f"a map key must be a string, not {type_name(key)} ({where})"
            ) from None
    if isinstance(container, list | tuple):
        if isinstance(key, str):
            raise EvaluationError(f"cannot read {key!r} of list ({where}); index it with [n]")
        if type(key) is not int:
            raise EvaluationError(f"a list index must be an integer, not {key!r} ({where})")
        try:
            return container[key]
        except IndexError:
            n = len(container)
            raise MissingValueError(
                f"index {key} is out of range for {where} (length {n})"
            ) from None
    if container is None:
        raise MissingValueError(f"cannot read {key!r} of null ({where})")
    raise EvaluationError(f"cannot read {key!r} of {type_name(container)} ({where})")


def not_in_scope(name: str) -> MissingValueError:
    if name in ("item", "index"):
        return MissingValueError(f"{name} is only available in a for_each step")
    return MissingValueError(f"{name} is not available here")


def resolve(scope: Mapping[str, Any], node: PathNode) -> Any:
    """Read a folded path: the fast path, with no evaluator involved."""
    try:
        value = scope[node.root]
    except KeyError:
        raise not_in_scope(node.root) from None
    for key, where in node.hops:
        if type(value) is dict:
            try:
                value = value[key]
                continue
            except KeyError:
                pass
        value = lookup(value, key, where)
    return value


# Operators -----------------------------------------------------------------------------


def _is_num(value: object) -> bool:
    return type(value) is int or type(value) is float


def _arith(symbol: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if _is_num(a) and _is_num(b):
            try:
                return fn(a, b)
            except ZeroDivisionError:
                raise EvaluationError("division by zero") from None
            except ArithmeticError as exc:
                raise EvaluationError(f"arithmetic error in {symbol!r}: {exc}") from None
        if symbol == "+" and type(a) is type(b) and isinstance(a, str | list):
            return a + b
        raise EvaluationError(f"cannot apply {symbol!r} to {type_name(a)} and {type_name(b)}")

    return apply


def _order(symbol: str, fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def apply(a: Any, b: Any) -> bool:
        if (_is_num(a) and _is_num(b)) or (type(a) is str and type(b) is str):
            return fn(a, b)
        raise EvaluationError(f"cannot compare {type_name(a)} and {type_name(b)} with {symbol!r}")

    return apply


_SCALARS = frozenset({str, int, float, type(None)})


def _eq(a: Any, b: Any) -> bool:
    """Equality as in JSON: ``true`` is not ``1``, in lists and maps too."""
    ta, tb = type(a), type(b)
    if ta in _SCALARS and tb in _SCALARS:
        return bool(a == b)
    if ta is bool or tb is bool:
        return ta is tb and a is b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    return bool(a == b)


def _unary(symbol: str, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(a: Any) -> Any:
        if _is_num(a):
            return fn(a)
        raise EvaluationError(f"cannot apply unary {symbol!r} to {type_name(a)}")

    return apply


def _member(needle: Any, haystack: Any, what: str) -> bool:
    if isinstance(haystack, str):
        if not isinstance(needle, str):
            raise EvaluationError(f"{what}: cannot look for {type_name(needle)} in a string")
        return needle in haystack
    if isinstance(haystack, list | tuple):
        return any(_eq(needle, x) for x in haystack)
    if isinstance(haystack, Mapping):
        return isinstance(needle, str) and needle in haystack
    raise EvaluationError(f"{what}: expected a string, list or map, not {type_name(haystack)}")


OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: _arith("+", operator.add),
    ast.Sub: _arith("-", operator.sub),
    ast.Mult: _arith("*", operator.mul),
    ast.Div: _arith("/", operator.truediv),
    ast.USub: _unary("-", operator.neg),
    ast.UAdd: _unary("+", operator.pos),
    ast.Not: operator.not_,
    ast.Eq: _eq,
    ast.NotEq: lambda a, b: not _eq(a, b),
    ast.Lt: _order("<", operator.lt),
    ast.LtE: _order("<=", operator.le),
    ast.Gt: _order(">", operator.gt),
    ast.GtE: _order(">=", operator.ge),
    ast.In: lambda a, b: _member(a, b, "'in'"),
    ast.NotIn: lambda a, b: not _member(a, b, "'not in'"),
}


# Functions (default() is special: its first argument is evaluated lazily) -----------------


def _strings(name: str, *args: Any) -> None:
    if not all(isinstance(a, str) for a in args):
        got = ", ".join(type_name(a) for a in args)
        raise EvaluationError(f"{name}() expects strings, got {got}")


def _len(value: Any) -> int:
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise EvaluationError(f"len() expects a string, list or map, not {type_name(value)}")


def _starts_with(value: Any, prefix: Any) -> bool:
    _strings("starts_with", value, prefix)
    return bool(value.startswith(prefix))


def _ends_with(value: Any, suffix: Any) -> bool:
    _strings("ends_with", value, suffix)
    return bool(value.endswith(suffix))


def _lower(value: Any) -> str:
    _strings("lower", value)
    return str(value.lower())


def _upper(value: Any) -> str:
    _strings("upper", value)
    return str(value.upper())


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": _len,
    "contains": lambda haystack, needle: _member(needle, haystack, "contains()"),
    "starts_with": _starts_with,
    "ends_with": _ends_with,
    "lower": _lower,
    "upper": _upper,
}


class Evaluator(EvalWithCompoundTypes):  # type: ignore[misc]  # simpleeval ships no types
    """simpleeval restricted to our nodes; one per thread (it keeps ``names`` on itself)."""

    def __init__(self) -> None:
        super().__init__(operators=dict(OPERATORS), functions={}, names={})
        self.names: Mapping[str, Any] = {}
        self.functions = dict(FUNCTIONS)
        self.nodes = {
            ast.Constant: self._eval_constant,
            PathNode: self._eval_path,
            ast.Subscript: self._eval_subscript,
            ast.BoolOp: self._eval_boolop,
            ast.UnaryOp: self._eval_unaryop,
            ast.BinOp: self._eval_binop,
            ast.Compare: self._eval_compare,
            ast.Call: self._eval_call,
            ast.List: self._eval_list,
            ast.Dict: self._eval_dict,
        }

    def run(self, tree: ast.expr, names: Mapping[str, Any]) -> Any:
        previous, self.names = self.names, names
        try:
            return self._eval(tree)
        finally:
            self.names = previous

    def _eval(self, node: ast.expr) -> Any:
        # simpleeval's _eval also re-checks every intermediate value for modules and forbidden
        # functions; our trees can't name either, and the check walks whole containers.
        return self.nodes[type(node)](node)

    @staticmethod
    def _eval_constant(node: ast.Constant) -> Any:
        return node.value  # literal sizes are bounded by the source length limit

    def _eval_compare(self, node: ast.Compare) -> bool:
        left = self._eval(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self._eval(comparator)
            if not self.operators[type(op)](left, right):
                return False
            left = right
        return True

    def _eval_path(self, node: PathNode) -> Any:
        return resolve(self.names, node)

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        return lookup(container, self._eval(node.slice), describe(node.value))

    def _eval_call(self, node: ast.Call) -> Any:
        name = node.func.id  # type: ignore[attr-defined]  # checked at compile time: a Name
        if name != "default":
            return self.functions[name](*[self._eval(arg) for arg in node.args])
        try:
            value = self._eval(node.args[0])
        except MissingValueError:
            return self._eval(node.args[1])
        return self._eval(node.args[1]) if value is None else value

    def _eval_dict(self, node: ast.Dict) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            key = self._eval(key_node) if key_node is not None else None  # {**x}: rejected
            if not isinstance(key, str):
                raise EvaluationError(f"map keys must be strings, not {type_name(key)}")
            result[key] = self._eval(value_node)
        return result


_local = threading.local()


def evaluator() -> Evaluator:
    try:
        return _local.evaluator  # type: ignore[no-any-return]
    except AttributeError:
        _local.evaluator = Evaluator()
        return _local.evaluator  # type: ignore[no-any-return]
