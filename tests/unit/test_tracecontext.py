"""Trace ids derived from execution ids: the same in every process, W3C-valid, one trace per
tree of executions."""

from __future__ import annotations

import re

from magicflow.tracecontext import (
    parse_traceparent,
    root_execution_id,
    span_id,
    trace_id,
    traceparent,
)

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


def test_traceparent_is_w3c_and_made_of_the_derived_ids() -> None:
    header = traceparent("01JABCDEFGHJKMNPQRSTVWXYZ1")
    match = TRACEPARENT.match(header)
    assert match is not None
    assert int(match[1], 16) == trace_id("01JABCDEFGHJKMNPQRSTVWXYZ1") != 0
    assert int(match[2], 16) == span_id("01JABCDEFGHJKMNPQRSTVWXYZ1") != 0


def test_ids_are_stable_and_distinct_per_execution() -> None:
    assert traceparent("a") == traceparent("a")
    assert trace_id("a") != trace_id("b")
    assert span_id("a") != span_id("b")
    # fixed values: other processes and other versions must derive the same ids
    assert traceparent.__wrapped__("ex1") == traceparent("ex1")
    assert f"{trace_id('ex1'):032x}" == "248be51637900baffca0944b51662d71"


def test_a_sub_workflow_shares_its_parents_trace_but_has_its_own_span() -> None:
    child = "01PARENT.charge.3"
    grandchild = f"{child}.refund.0.7"
    assert root_execution_id(grandchild) == "01PARENT"
    assert trace_id(child) == trace_id(grandchild) == trace_id("01PARENT")
    assert len({span_id("01PARENT"), span_id(child), span_id(grandchild)}) == 3


def test_parse_traceparent_reads_ours_and_refuses_what_is_not_one() -> None:
    assert parse_traceparent(traceparent("ex1")) == (trace_id("ex1"), span_id("ex1"))
    valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert parse_traceparent(valid) == (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331)
    for bad in (
        "",
        "00-abc",
        valid.replace("0af7", "zzzz"),
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",
    ):
        assert parse_traceparent(bad) is None
