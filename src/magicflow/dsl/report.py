"""Collects diagnostics for one document, placed by path through its source map."""

from __future__ import annotations

from magicflow.dsl.diagnostics import Diagnostic
from magicflow.dsl.source import Path, SourceMap

__all__ = ["Reporter"]


class Reporter:
    """Where each problem goes: at a value, at a key, or at a column inside a string."""

    __slots__ = ("diagnostics", "filename", "source_map")

    def __init__(self, filename: str, source_map: SourceMap) -> None:
        self.filename = filename
        self.source_map = source_map
        self.diagnostics: list[Diagnostic] = []

    def at(self, path: Path, message: str) -> None:
        """A problem with the value at ``path``."""
        span = self.source_map.value(path)
        self.diagnostics.append(Diagnostic(self.filename, span.line, span.col, message, path=path))

    def at_key(self, path: Path, message: str) -> None:
        """A problem with the key that ends ``path`` (its value when the key is unknown)."""
        span = self.source_map.key(path)
        self.diagnostics.append(Diagnostic(self.filename, span.line, span.col, message, path=path))

    def inside(self, path: Path, offset: int, message: str) -> None:
        """A problem at character ``offset`` of the string at ``path``."""
        span = self.source_map.inside(path, offset)
        self.diagnostics.append(Diagnostic(self.filename, span.line, span.col, message, path=path))

    def raw(self, path: Path) -> str | None:
        """The source text of the number or boolean at ``path``, if known."""
        return self.source_map.raw(path)
