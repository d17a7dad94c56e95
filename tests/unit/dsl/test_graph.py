import re
import xml.etree.ElementTree as ET

import pytest

from magicflow.dsl import compile_workflow
from magicflow.dsl.graph import render_graph

WORKFLOW = """
name: shapes
version: "1"
steps:
  - id: fetch
    function: fetch
  - id: per-item
    function: handle
    depends_on: [fetch]
    for_each: ${steps.fetch.output.items}
    max_parallel: 4
  - id: child
    workflow: other@2.0.0
    depends_on: [fetch]
    condition: ${steps.fetch.output.deep == true}
  - id: approval
    wait_for: approve
    depends_on: [per-item, child]
  - id: pause
    sleep: 90s
    depends_on: [approval]
"""


@pytest.fixture(scope="module")
def plan():
    return compile_workflow(WORKFLOW, "shapes.yaml")


def test_mermaid_draws_every_step_with_its_kind_and_every_edge(plan) -> None:
    text = render_graph(plan, "mermaid")
    assert text.startswith("flowchart TD")
    assert '[["child<br/>workflow: other@2.0.0<br/>if: steps.fetch.output.deep == true"]]' in text
    assert '{{"approval<br/>wait for: approve"}}' in text
    assert '(["pause<br/>sleep: 1m30s"])' in text
    assert "for each: steps.fetch.output.items (max 4)" in text
    edges = re.findall(r"^  (s\d+) --> (s\d+)$", text, re.MULTILINE)
    assert len(edges) == sum(len(step.depends_on) for step in plan.steps)


def test_dot_quotes_hyphenated_ids_and_marks_fan_out(plan) -> None:
    text = render_graph(plan, "dot")
    assert '"fetch" -> "per-item";' in text
    assert '"per-item" -> "approval";' in text
    assert "peripheries=2" in text
    assert "shape=component" in text
    assert text.rstrip().endswith("}")


def test_svg_is_well_formed_with_one_group_per_step(plan) -> None:
    root = ET.fromstring(render_graph(plan, "svg"))
    groups = root.findall(".//{http://www.w3.org/2000/svg}g")
    assert [g.get("data-step") for g in groups] == [step.id for step in plan.steps]
    lines = root.findall(".//{http://www.w3.org/2000/svg}line")
    assert len(lines) == sum(len(step.depends_on) for step in plan.steps)


def test_unknown_format_is_refused(plan) -> None:
    with pytest.raises(ValueError, match="unknown graph format 'png'"):
        render_graph(plan, "png")
