"""Source text: size and encoding checks, positions of keys and values, and read limits."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from magicflow.dsl.diagnostics import Diagnostic

__all__ = ["Limits", "Path", "SourceMap", "Span", "decode_source"]

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


@dataclass(slots=True)
class SourceMap:
    """Positions of keys and values by path; unknown paths fall back to the nearest parent."""

    values: dict[Path, Span] = field(default_factory=dict)
    keys: dict[Path, Span] = field(default_factory=dict)
    raw: dict[Path, str] = field(default_factory=dict)  # source text of non-string scalars

    def value(self, path: Path) -> Span:
        for end in range(len(path), -1, -1):
            span = self.values.get(path[:end])
            if span is not None:
                return span
        return Span(1, 1)

    def key(self, path: Path) -> Span:
        span = self.keys.get(path)
        return span if span is not None else self.value(path)

    def inside(self, path: Path, offset: int) -> Span:
        """The position of character ``offset`` of the string at ``path``."""
        span = self.values.get(path)
        if span is None:
            return self.value(path)
        if span.inner and offset >= 0:
            return Span(span.line, span.inner + offset)
        return span


_BAD_CHAR = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
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
    bad = _BAD_CHAR.search(text)
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
