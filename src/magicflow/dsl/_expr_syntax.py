"""Compile side of the expression language: our syntax -> a checked, path-folded Python AST.

Private to :mod:`magicflow.dsl.expressions` (its docstring describes the language). A small
tokenizer of our own rewrites the text into Python expression syntax (``true`` -> ``True``,
``&&`` -> ``and``, ``a.b`` -> ``a["b"]``, ``steps.my-step`` -> ``steps["my-step"]``) and keeps
the source offset of every token it emits, so that errors found by ``ast.parse`` or by the
whitelist walk below point at the user's column. No ``.`` attribute access ever reaches the AST.
"""

from __future__ import annotations

import ast
import bisect
import difflib
import keyword
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from magicflow.dsl._expr_runtime import PathNode, path_display
from magicflow.errors import MagicFlowError

MAX_SOURCE_LENGTH = 10_000  # characters in one expression
MAX_NESTING = 50  # open brackets at once
MAX_DEPTH = 100  # levels of the syntax tree (keeps evaluation far from the recursion limit)

ROOTS = ("input", "steps", "item", "index", "execution", "workflow")
FUNCTIONS = {
    "len": 1,
    "contains": 2,
    "starts_with": 2,
    "ends_with": 2,
    "lower": 1,
    "upper": 1,
    "default": 2,
}
_ROOT_FIELDS = {"execution": ("id",), "workflow": ("name", "version"), "steps": ()}
_STEP_FIELDS = ("output", "status")
_WORDS = {"true": "True", "false": "False", "null": "None", "and": "and", "or": "or"}
_WORDS |= {"not": "not", "in": "in"}
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_OPS = {"&&": "and", "||": "or", "!": "not"}
_BAD_OPS = {
    "**": "'**' is not supported",
    "//": "'//' is not supported; use '/'",
    "%": "'%' is not supported",
    "=": "'=' is not an operator; use '==' to compare",
    "&": "use '&&' or 'and'",
    "|": "use '||' or 'or'",
    "?": "conditional expressions are not supported; use default() or a step condition",
    "$": "expressions cannot be nested: '$' inside ${...}",
}
_KEYWORD_HINTS = {
    "is": "; use '==' or '!='",
    "if": "; use default() or a step condition",
    "else": "; use default() or a step condition",
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0", "/": "/"}
_ESCAPES |= {"\\": "\\", "'": "'", '"': '"'}

_TOKEN = re.compile(
    r"(?P<ws>\s+)|(?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_]\w*)|(?P<dot>\.)"
    r"|(?P<str>['\"])|(?P<op>\*\*|//|==|!=|<=|>=|&&|\|\||[-+*/<>!()\[\]{},:])",
    re.ASCII,
)
_NAME = re.compile(r"[A-Za-z_]\w*", re.ASCII)
_STEP_RUN = re.compile(r"[\w-]+", re.ASCII)
_OPENERS, _CLOSERS = "([{", ")]}"


class ExpressionError(ValueError, MagicFlowError):
    """An expression that cannot be compiled. ``column``: 0-based offset in the template string."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


@dataclass(frozen=True, slots=True)
class Translation:
    """The Python text, where each emitted token came from, and where the expression ended."""

    python: str
    py_starts: tuple[int, ...]
    src_starts: tuple[int, ...]
    end: int  # index after the expression (after its closing '}' in a template)

    def column(self, py_col: int) -> int:
        i = bisect.bisect_right(self.py_starts, py_col) - 1
        return self.src_starts[max(i, 0)] if self.src_starts else 0


class _Translator:
    """Tokenizes ``text`` from ``start``; in a template, stops at the '}' that closes '${'."""

    def __init__(self, text: str, start: int, template: bool) -> None:
        self.text, self.start, self.template = text, start, template
        self.parts: list[str] = []
        self.py_starts: list[int] = []
        self.src_starts: list[int] = []
        self.length = 0
        self.depth = 0
        self.last = ""

    def emit(self, python: str, src: int, kind: str) -> None:
        self.parts.append(python)
        self.py_starts.append(self.length)
        self.src_starts.append(src)
        self.length += len(python) + 1  # tokens are joined by one space
        self.last = kind

    def run(self) -> Translation:
        text, pos = self.text, self.start
        while pos < len(text):
            if text[pos] == "}" and self.depth == 0 and self.template:
                return self._finish(pos + 1)
            m = _TOKEN.match(text, pos)
            if m is None:
                msg = _BAD_OPS.get(text[pos], f"unexpected character {text[pos]!r}")
                raise ExpressionError(msg, pos)
            pos = self._token(m)
        if self.template:
            raise ExpressionError("unclosed '${': missing '}'", max(self.start - 2, 0))
        return self._finish(pos)

    def _finish(self, end: int) -> Translation:
        python = " ".join(self.parts)
        return Translation(python, tuple(self.py_starts), tuple(self.src_starts), end)

    def _token(self, m: re.Match[str]) -> int:
        kind, pos, end = m.lastgroup, m.start(), m.end()
        if kind == "num":
            if m.group().startswith("0") and len(m.group()) > 1 and m.group()[1].isdigit():
                raise ExpressionError("numbers cannot have leading zeros", pos)
            if _NAME.match(self.text, end):
                raise ExpressionError("invalid number", pos)
            self.emit(m.group(), pos, "num")
        elif kind == "name":
            return self._name(m.group(), pos, end)
        elif kind == "dot":
            return self._dot(pos)
        elif kind == "str":
            return self._string(pos)
        elif kind == "op":
            self._op(m.group(), pos)
        return end

    def _name(self, word: str, pos: int, end: int) -> int:
        if word in _WORDS:
            self.emit(_WORDS[word], pos, "word")
        elif word in _PY_LITERALS:
            raise ExpressionError(
                f"unknown name {word!r}; did you mean {_PY_LITERALS[word]!r}?", pos
            )
        elif keyword.iskeyword(word):
            hint = _KEYWORD_HINTS.get(word, "")
            raise ExpressionError(f"{word!r} is not supported in expressions{hint}", pos)
        elif word.startswith("__"):
            raise ExpressionError(f"names starting with '__' are not allowed: {word!r}", pos)
        elif word == "steps" and self.text.startswith(".", end):
            run = _STEP_RUN.match(self.text, end + 1)
            if run is None:
                raise ExpressionError("expected a step id after 'steps.'", end + 1)
            self.emit("steps", pos, "name")
            self._key(run.group(), end, run.start())
            return run.end()
        else:
            self.emit(word, pos, "name")
        return end

    def _dot(self, pos: int) -> int:
        m = _NAME.match(self.text, pos + 1)
        if m is None:
            msg = "expected a key name after '.'; write [0] to index a list, 0.5 for a number"
            raise ExpressionError(msg, pos)
        if m.group().startswith("__"):
            raise ExpressionError(
                f"keys starting with '__' are not allowed: {m.group()!r}", pos + 1
            )
        self._key(m.group(), pos, pos + 1)
        return m.end()

    def _key(self, key: str, dot: int, pos: int) -> None:
        self.emit("[", dot, "op")
        self.emit(ascii(key), pos, "key")
        self.emit("]", pos + len(key), "op")

    def _string(self, start: int) -> int:
        text, quote, pos = self.text, self.text[start], start + 1
        chars: list[str] = []
        while pos < len(text) and text[pos] != quote:
            if text[pos] != "\\":
                chars.append(text[pos])
                pos += 1
                continue
            esc = text[pos + 1 : pos + 2]
            if esc == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[pos + 2 : pos + 6]):
                chars.append(chr(int(text[pos + 2 : pos + 6], 16)))
                pos += 6
            elif esc in _ESCAPES and esc:
                chars.append(_ESCAPES[esc])
                pos += 2
            else:
                raise ExpressionError(f"invalid escape sequence '\\{esc}' in string", pos)
        if pos >= len(text):
            raise ExpressionError("unterminated string literal", start)
        if self.last == "str":
            raise ExpressionError("two strings in a row: missing operator (use + to join)", start)
        self.emit(ascii("".join(chars)), start, "str")
        return pos + 1

    def _op(self, op: str, pos: int) -> None:
        if op in _BAD_OPS:
            raise ExpressionError(_BAD_OPS[op], pos)
        if op in _OPENERS:
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise ExpressionError(f"more than {MAX_NESTING} nested brackets", pos)
        elif op in _CLOSERS:
            if self.depth == 0:
                raise ExpressionError(f"unmatched {op!r}", pos)
            self.depth -= 1
        self.emit(_OPS.get(op, op), pos, "op")


def translate(text: str, start: int, template: bool) -> Translation:
    return _Translator(text, start, template).run()


def _const_key(node: ast.expr) -> str | int | None:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, str | int) and not isinstance(value, bool):
            return value
    return None


class _Folder(ast.NodeTransformer):
    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        keys: list[str | int] = []
        base: ast.expr = node
        while type(base) is ast.Subscript and (key := _const_key(base.slice)) is not None:
            keys.append(key)
            base = base.value
        if not keys or not isinstance(base, ast.Name):
            self.generic_visit(node)
            return node
        hops, display = [], base.id
        for key in reversed(keys):
            hops.append((key, display))
            display = path_display(display, key)
        return ast.copy_location(PathNode(base.id, tuple(hops), display), node)

    def visit_Call(self, node: ast.Call) -> ast.expr:
        node.args = [self.visit(arg) for arg in node.args]  # node.func stays a plain Name
        return node

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return ast.copy_location(PathNode(node.id, (), node.id), node)


@dataclass(frozen=True, slots=True)
class Checked:
    tree: ast.expr  # with PathNodes folded in
    step_refs: frozenset[str]
    uses_item: bool


class _Checker:
    """Walks the parsed tree and rejects everything outside the language (a whitelist)."""

    def __init__(self, tr: Translation, step_ids: Collection[str]) -> None:
        self.tr, self.step_ids = tr, step_ids
        self.step_refs: set[str] = set()
        self.uses_item = False

    def error(self, message: str, node: ast.AST) -> ExpressionError:
        return ExpressionError(message, self.tr.column(getattr(node, "col_offset", 0)))

    def visit(self, node: ast.expr, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep", node)
        if isinstance(node, ast.Constant):
            return
        if isinstance(node, ast.Name):
            self._name(node)
        elif isinstance(node, ast.Subscript):
            self._subscript(node, depth)
        elif isinstance(node, ast.Call):
            self._call(node, depth)
        else:
            for child in self._children(node):
                self.visit(child, depth + 1)

    def _children(self, node: ast.expr) -> list[ast.expr]:
        if isinstance(node, ast.BoolOp):
            return node.values
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub | ast.UAdd):
            return [node.operand]
        if isinstance(node, ast.BinOp) and isinstance(
            node.op, ast.Add | ast.Sub | ast.Mult | ast.Div
        ):
            return [node.left, node.right]
        if isinstance(node, ast.Compare):
            return [node.left, *node.comparators]
        if isinstance(node, ast.Starred):
            raise self.error("unpacking with '*' is not supported", node)
        if isinstance(node, ast.List):
            return node.elts
        if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
            return [*(k for k in node.keys if k is not None), *node.values]
        what = {ast.Tuple: "tuples are", ast.Set: "sets are"}.get(type(node))
        hint = "; use a list [...]" if what else ""
        what = what or f"this construct ({type(node).__name__}) is"
        raise self.error(f"{what} not supported in expressions{hint}", node)

    def _name(self, node: ast.Name) -> None:
        if node.id in ("item", "index"):
            self.uses_item = True
        elif node.id in _ROOT_FIELDS:
            fields = " or ".join(f"{node.id}.{f}" for f in _ROOT_FIELDS[node.id])
            raise self.error(f"use {fields or 'steps.<id>.output'}, not {node.id} alone", node)
        elif node.id in FUNCTIONS:
            raise self.error(f"{node.id!r} is a function: call it as {node.id}(...)", node)
        elif node.id not in ROOTS:
            hint = did_you_mean(node.id, [*ROOTS, *_WORDS])
            roots = ", ".join(ROOTS)
            raise self.error(f"unknown name {node.id!r}{hint or f' (known roots: {roots})'}", node)

    def _subscript(self, node: ast.Subscript, depth: int) -> None:
        chain: list[ast.expr] = []
        base: ast.expr = node
        while isinstance(base, ast.Subscript):
            if isinstance(base.slice, ast.Slice):
                raise self.error("slices are not supported", base.slice)
            chain.append(base.slice)
            base = base.value
        chain.reverse()
        if depth + len(chain) > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep", node)
        skip = 0
        if isinstance(base, ast.Name) and base.id in _ROOT_FIELDS:
            skip = self._scoped(base.id, chain)
        else:
            self.visit(base, depth + 1)
        for key in chain[skip:]:
            self.visit(key, depth + len(chain))

    def _literal(self, node: ast.expr, what: str) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        raise self.error(f"{what} must be written literally", node)

    def _scoped(self, root: str, keys: list[ast.expr]) -> int:
        if root != "steps":
            key = self._literal(keys[0], f"the field of {root}")
            if key not in _ROOT_FIELDS[root]:
                hint = did_you_mean(key, _ROOT_FIELDS[root])
                known = ", ".join(_ROOT_FIELDS[root])
                raise self.error(
                    f"{root} has no field {key!r}{hint or f' (it has: {known})'}", keys[0]
                )
            return 1
        sid = self._literal(keys[0], "a step id after steps")
        if sid not in self.step_ids:
            known = ", ".join(sorted(self.step_ids)[:10]) or "none"
            hint = did_you_mean(sid, self.step_ids) or f" (known steps: {known})"
            raise self.error(f"unknown step id {sid!r}{hint}", keys[0])
        self.step_refs.add(sid)
        field = _const_key(keys[1]) if len(keys) > 1 else ""
        if field not in _STEP_FIELDS:
            where = keys[1] if len(keys) > 1 else keys[0]
            hint = did_you_mean(field, _STEP_FIELDS) if isinstance(field, str) else ""
            raise self.error(f"steps.{sid} must be followed by .output or .status{hint}", where)
        return 2

    def _call(self, node: ast.Call, depth: int) -> None:
        funcs = ", ".join(FUNCTIONS)
        if not isinstance(node.func, ast.Name):
            raise self.error(f"only these functions can be called: {funcs}", node)
        name = node.func.id
        if name not in FUNCTIONS:
            hint = did_you_mean(name, FUNCTIONS) or f" (functions: {funcs})"
            raise self.error(f"unknown function {name!r}{hint}", node)
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.error(f"{name}() takes plain arguments only", node)
        if len(node.args) != FUNCTIONS[name]:
            want = FUNCTIONS[name]
            plural = "s" if want > 1 else ""
            raise self.error(
                f"{name}() takes {want} argument{plural} ({len(node.args)} given)", node
            )
        for arg in node.args:
            self.visit(arg, depth + 1)


def parse(
    text: str, start: int, step_ids: Collection[str], *, template: bool
) -> tuple[Checked, int]:
    """Compile the expression at ``text[start:]``; returns it and the index where it ended."""
    tr = translate(text, start, template)
    body = text[start : tr.end - 1 if template else tr.end]
    where = start - 2 if template else start
    if not body.strip():
        raise ExpressionError("empty expression", where)
    if len(body) > MAX_SOURCE_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_SOURCE_LENGTH} characters", where)
    try:
        tree = ast.parse(tr.python, mode="eval").body
    except SyntaxError as exc:
        if not exc.offset:  # Python says 0 when it ran out of tokens
            raise ExpressionError("incomplete expression", start + len(body.rstrip())) from None
        message = f"syntax error: {exc.msg or 'invalid syntax'}"
        raise ExpressionError(message, tr.column(exc.offset - 1)) from None
    except (RecursionError, MemoryError):
        raise ExpressionError("expression too long or nested too deeply", where) from None
    checker = _Checker(tr, step_ids)
    try:
        checker.visit(tree, 0)
    except RecursionError:
        raise ExpressionError("expression nested too deeply", where) from None
    folded = _Folder().visit(tree)
    return Checked(folded, frozenset(checker.step_refs), checker.uses_item), tr.end
