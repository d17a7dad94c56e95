"""Diagnostics: one problem in a workflow document, at its file, line and column."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    """One problem found in a document. Lines and columns are 1-based, as editors count."""

    file: str
    line: int
    col: int
    message: str
    severity: str = "error"
    path: tuple[str | int, ...] = field(default=(), compare=False)

    def format(self) -> str:
        """Compiler style: ``FILE:LINE:COL: error: MESSAGE``."""
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "severity": self.severity,
            "message": self.message,
            "path": list(self.path),
        }
