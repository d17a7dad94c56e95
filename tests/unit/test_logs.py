"""Structured logs: fields from ``extra`` and from the bound context, in both formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from magicflow.errors import ConfigurationError
from magicflow.logs import JsonFormatter, TextFormatter, bind, configure

Capture = tuple[logging.Logger, io.StringIO, "logging.StreamHandler[io.StringIO]"]


@pytest.fixture
def capture() -> Iterator[Capture]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("magicflow.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def test_json_has_the_standard_keys_and_the_fields(capture: Capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(JsonFormatter())
    logger.info("step %s failed", "charge", extra={"execution_id": "01J", "step_id": "charge"})
    [line] = stream.getvalue().splitlines()
    document = json.loads(line)
    assert document["message"] == "step charge failed"
    assert document["level"] == "INFO"
    assert document["logger"] == "magicflow.test-logs"
    assert document["time"].endswith("+00:00")
    assert (document["execution_id"], document["step_id"]) == ("01J", "charge")


def test_json_carries_the_exception_on_the_same_line(capture: Capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(JsonFormatter())
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logger.exception("it broke")
    [line] = stream.getvalue().splitlines()
    assert "ValueError: bad" in json.loads(line)["exception"]


def test_text_appends_the_known_fields(capture: Capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(TextFormatter())
    logger.warning("plain")
    logger.warning("retrying", extra={"execution_id": "01J", "attempt": 2, "other": "x"})
    plain, fields = stream.getvalue().splitlines()
    assert plain.endswith("WARNING magicflow.test-logs: plain")
    assert fields.endswith("retrying [execution_id=01J attempt=2]")


async def test_bound_fields_follow_the_context_into_tasks_and_threads(capture: Capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(JsonFormatter())

    async def step(execution_id: str) -> None:
        bind(execution_id=execution_id, step_id="s")
        logger.info("in the task")
        await asyncio.to_thread(logger.info, "in a thread")

    await asyncio.gather(step("one"), step("two"))
    logger.info("outside")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_message: dict[str, set[str | None]] = {}
    for line in lines:
        by_message.setdefault(line["message"], set()).add(line.get("execution_id"))
    assert by_message == {
        "in the task": {"one", "two"},
        "in a thread": {"one", "two"},
        "outside": {None},
    }


def test_configure_refuses_an_unknown_format() -> None:
    with pytest.raises(ConfigurationError, match="text or json"):
        configure(logging.INFO, "xml")


def test_configure_sends_json_to_the_stream() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    before = root.handlers[:], root.level
    try:
        configure(logging.INFO, "json", stream)
        logging.getLogger("magicflow.x").info("hello", extra={"task_id": "t1"})
    finally:
        root.handlers[:], _ = before
        root.setLevel(before[1])
    assert json.loads(stream.getvalue())["task_id"] == "t1"
