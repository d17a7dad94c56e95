"""Source text: size and encoding checks, positions of keys and values, and read limits."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

from magicflow.dsl.diagnostics import Diagnostic

__all__ = ["Limits", "Node", "Path", "SourceMap", "Span", "decode_source"]

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a definition may cost to read and validate."""

    max_bytes: int = 1 << 20
    max_steps: int = 1000
    max_depth: int = 64
    max_nodes: int = 200_000  # values in the document once every alias is expanded


class Span(NamedTuple):
    """Where a node starts (1-based). ``inner`` is the column where the text of a one-line
    scalar starts, when offsets inside the string map to columns one to one (else 0)."""

    line: int
    col: int
    inner: int = 0


class Node:
    """Positions inside one mapping or list: its start, its keys and its values.

    Marks are the parser's own objects (line and column 0-based), kept as they come and
    turned into :class:`Span` only when a message needs one. A scalar's entry is its parse
    event, which also knows its style and end, so offsets inside the string can be placed.
    """

    __slots__ = ("children", "keys", "start")

    def __init__(self, start: Any, mapping: bool) -> None:
        self.start = start
        self.keys: dict[str, Any] | None = {} if mapping else None
        self.children: dict[str, Any] | list[Any] = {} if mapping else []


class SourceMap:
    """Positions of keys and values by path; unknown paths fall back to the nearest parent."""

    __slots__ = ("nodes", "root")

    def __init__(self) -> None:
        self.root: Any = None
        self.nodes: dict[int, Node] = {}  # by id() of each mapping and list of ``root``

    def _walk(self, path: Path) -> tuple[Any, Any, bool]:
        """(mark of the deepest value found, mark of its key, whether all of path was found)."""
        container = self.root
        node = self.nodes.get(id(container))
        found: Any = node.start if node is not None else None
        key: Any = None
        for part in path:
            if node is None:
                return found, None, False
            try:
                found = node.children[part]  # type: ignore[index]
                key = node.keys.get(part) if node.keys is not None else None  # type: ignore[arg-type]
                container = container[part]
            except (LookupError, TypeError):
                return found, None, False
            node = self.nodes.get(id(container)) if isinstance(container, dict | list) else None
        return found, key, True

    def item_lines(self, path: Path) -> list[int]:
        """The line of each item of the list at ``path`` (1-based), or [] if unknown."""
        container: Any = self.root
        try:
            for part in path:
                container = container[part]
        except (LookupError, TypeError):
            return []
        node = self.nodes.get(id(container))
        if node is None or not isinstance(node.children, list):
            return []
        return [_to_span(mark).line for mark in node.children]

    def value(self, path: Path) -> Span:
        return _to_span(self._walk(path)[0])

    def key(self, path: Path) -> Span:
        found, key, exact = self._walk(path)
        return _to_span(key if exact and key is not None else found)

    def inside(self, path: Path, offset: int) -> Span:
        """The position of character ``offset`` of the string at ``path``."""
        found, _, exact = self._walk(path)
        span = _to_span(found)
        if exact and offset >= 0 and hasattr(found, "end_mark"):
            inner = _inner_column(found)
            if inner:
                return Span(span.line, inner + offset)
        return span

    def raw(self, path: Path) -> str | None:
        """The source text of the scalar at ``path``, if it is one."""
        found, _, exact = self._walk(path)
        return found.value if exact and hasattr(found, "end_mark") else None


def _to_span(mark: Any) -> Span:
    mark = getattr(mark, "start_mark", mark)
    if mark is None:
        return Span(1, 1)
    return Span(mark.line + 1, mark.column + 1)


def _inner_column(event: Any) -> int:
    """1-based column of a one-line plain or quoted scalar's first character, else 0."""
    quoted = 1 if event.style in ("'", '"') else 0
    if event.style and not quoted:
        return 0
    start, end = event.start_mark, event.end_mark
    if start is None or end is None or end.line != start.line:
        return 0
    if end.column - start.column != len(event.value) + 2 * quoted:
        return 0
    return int(start.column) + 1 + quoted


_BAD_ASCII = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@cache
def _bad_char() -> re.Pattern[str]:
    """Characters YAML refuses; compiled on first non-ASCII text (it costs ~10 ms)."""
    return re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_source(
    source: str | bytes, filename: str, limits: Limits
) -> tuple[str | None, list[Diagnostic]]:
    """The text of ``source``, or None and why it cannot be read as YAML at all."""
    if isinstance(source, str):
        size = len(source) if len(source) * 4 <= limits.max_bytes else _utf8_size(source)
    else:
        size = len(source)
    if size > limits.max_bytes:
        message = f"the document is {size:,} bytes; the limit is {limits.max_bytes:,} bytes"
        return None, [Diagnostic(filename, 1, 1, message)]
    if isinstance(source, bytes):
        encoding = next((enc for bom, enc in _BOMS if source.startswith(bom)), "utf-8")
        try:
            text = source.decode(encoding)
        except UnicodeDecodeError as exc:
            return None, [_decode_error(source, exc, encoding, filename)]
    else:
        text = source
    bad = (_BAD_ASCII if text.isascii() else _bad_char()).search(text)
    if bad is None:
        return text, []
    line = text.count("\n", 0, bad.start()) + 1
    col = bad.start() - text.rfind("\n", 0, bad.start())
    what = "binary data" if "\x00" in text[:8192] else "YAML text"
    message = f"character U+{ord(bad.group()):04X} is not allowed in {what}"
    if what == "binary data":
        message = f"the file is binary data, not YAML text (character U+{ord(bad.group()):04X})"
    return None, [Diagnostic(filename, line, col, message)]


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _decode_error(
    source: bytes, exc: UnicodeDecodeError, encoding: str, filename: str
) -> Diagnostic:
    line = source.count(b"\n", 0, exc.start) + 1
    start = source.rfind(b"\n", 0, exc.start) + 1
    col = len(source[start : exc.start].decode("utf-8", "replace")) + 1
    label = encoding.removesuffix("-sig").upper()
    what = "binary data" if b"\x00" in source[:8192] else f"not {label} text"
    byte = source[exc.start]
    message = f"the file is {what} (invalid byte 0x{byte:02x}); a workflow is YAML text"
    return Diagnostic(filename, line, col, message)
