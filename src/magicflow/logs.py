"""Structured logs: every line about an execution or a step carries its ids as fields.

Fields come from two places: ``extra={"execution_id": ...}`` on the logging call, and the
fields bound to the current context (``bind``): the executor binds a task's ids while it runs,
so whatever is logged during a step, by the executor or by the business function itself (a
sync function's thread gets a copy of the context), carries them.

Two formats, for the handler ``configure`` installs on stderr:

- ``text`` (default): ``2025-01-01 12:00:00,123 INFO magicflow.executor.worker: message
  [execution_id=01J... step_id=charge attempt=2 task_id=01J...:charge:4]``
- ``json``: one object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
  ``message``, then the fields (the known ones and any other ``extra``), and ``exception``
  (the formatted traceback) when there is one.

Standard library only: the engine and the executor import it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Final

from magicflow.errors import ConfigurationError

FORMATS: Final = ("text", "json")
FIELDS: Final = ("execution_id", "workflow", "step_id", "attempt", "item_index", "task_id")

Fields = Mapping[str, Any]
_bound: ContextVar[Fields | Callable[[], Fields] | None] = ContextVar(
    "magicflow_log_fields", default=None
)
# what every LogRecord has: the rest of its attributes came from ``extra`` (but uvicorn's
# ``color_message``, the message again with terminal colours)
_STANDARD: Final = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


def bind(**fields: Any) -> None:
    """Attach ``fields`` to every record logged from the current context from now on (in an
    asyncio task: until it ends; the task's context is its own copy)."""
    current = _bound.get()
    _bound.set(fields if current is None else {**_resolve(current), **fields})


def bind_lazily(make: Callable[[], Fields]) -> None:
    """Like ``bind``, replacing what was bound; ``make()`` is called only when a record is
    logged (the executor binds every task, and most tasks log nothing)."""
    _bound.set(make)


def _resolve(bound: Fields | Callable[[], Fields]) -> Fields:
    return bound() if callable(bound) else bound


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The record's fields: the bound ones, then its ``extra`` (which win)."""
    bound = _bound.get()
    fields: dict[str, Any] = dict(_resolve(bound)) if bound is not None else {}
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = value
    return fields


class TextFormatter(logging.Formatter):
    """Human-readable: the classic line, then the known fields as ``[key=value ...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = fields_of(record)
        shown = " ".join(f"{k}={fields[k]}" for k in FIELDS if fields.get(k) is not None)
        if not shown:
            return text
        first, newline, rest = text.partition("\n")  # after the message, before a traceback
        return f"{first} [{shown}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            document.setdefault(key, value)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def check_format(name: str) -> str:
    if name in FORMATS:
        return name
    raise ConfigurationError(f"log format must be text or json, not {name!r}")


def configure(level: int | str, log_format: str = "text", stream: IO[str] | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in ``log_format``,
    replacing the root logger's handlers."""
    formatter = JsonFormatter() if check_format(log_format) == "json" else TextFormatter()
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)
