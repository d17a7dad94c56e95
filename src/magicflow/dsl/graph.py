"""Drawings of a workflow's DAG: Mermaid, Graphviz DOT, and a self-contained SVG.

Each node shows the step id, its kind (function, sub-workflow, signal, sleep), its fan-out and
its condition; edges follow ``depends_on``. The SVG is laid out here (layers by longest path
from a root), so drawing needs no Graphviz install.
"""

from __future__ import annotations

from html import escape

from magicflow.dsl.durations import format_duration
from magicflow.dsl.plan import StepKind, StepPlan, WorkflowPlan

_FORMATS = ("mermaid", "dot", "svg")


def render_graph(plan: WorkflowPlan, fmt: str = "mermaid") -> str:
    if fmt == "mermaid":
        return to_mermaid(plan)
    if fmt == "dot":
        return to_dot(plan)
    if fmt == "svg":
        return to_svg(plan)
    raise ValueError(f"unknown graph format {fmt!r}: expected one of {', '.join(_FORMATS)}")


def _lines(step: StepPlan) -> list[str]:
    """What a node says, one entry per line: id, kind, fan-out, condition."""
    if step.kind is StepKind.FUNCTION:
        kind = f"fn: {step.function}"
    elif step.kind is StepKind.WORKFLOW:
        kind = f"workflow: {step.workflow}"
    elif step.kind is StepKind.WAIT:
        kind = f"wait for: {step.signal}"
    else:
        kind = f"sleep: {format_duration(step.sleep or 0)}"
    lines = [step.id, kind]
    if step.for_each is not None:
        parallel = f" (max {step.max_parallel})" if step.max_parallel else ""
        lines.append(f"for each: {step.for_each.source}{parallel}")
    if step.condition is not None:
        lines.append(f"if: {step.condition.source}")
    return lines


_MERMAID_SHAPES = {
    StepKind.FUNCTION: ('["', '"]'),
    StepKind.WORKFLOW: ('[["', '"]]'),
    StepKind.WAIT: ('{{"', '"}}'),
    StepKind.SLEEP: ('(["', '"])'),
}


def to_mermaid(plan: WorkflowPlan) -> str:
    ids = {step.id: f"s{n}" for n, step in enumerate(plan.steps)}
    out = ["flowchart TD", f"  %% {plan.name} {plan.version}"]
    for step in plan.steps:
        label = "<br/>".join(
            escape(line, quote=False).replace('"', "#quot;") for line in _lines(step)
        )
        left, right = _MERMAID_SHAPES[step.kind]
        out.append(f"  {ids[step.id]}{left}{label}{right}")
    for step in plan.steps:
        out.extend(f"  {ids[dep]} --> {ids[step.id]}" for dep in step.depends_on)
    return "\n".join(out) + "\n"


_DOT_SHAPES = {
    StepKind.FUNCTION: "box",
    StepKind.WORKFLOW: "component",
    StepKind.WAIT: "hexagon",
    StepKind.SLEEP: "ellipse",
}


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(plan: WorkflowPlan) -> str:
    out = [
        f"digraph {_dot_quote(plan.name)} {{",
        f"  label={_dot_quote(f'{plan.name} {plan.version}')};",
        "  rankdir=TB;",
        '  node [fontname="Helvetica", style="rounded"];',
    ]
    for step in plan.steps:
        label = "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in _lines(step))
        extra = ", peripheries=2" if step.for_each is not None else ""
        out.append(
            f'  {_dot_quote(step.id)} [label="{label}", shape={_DOT_SHAPES[step.kind]}{extra}];'
        )
    for step in plan.steps:
        out.extend(f"  {_dot_quote(dep)} -> {_dot_quote(step.id)};" for dep in step.depends_on)
    out.append("}")
    return "\n".join(out) + "\n"


_NODE_W, _NODE_H, _GAP_X, _GAP_Y, _LINE_H = 220, 64, 40, 56, 15
_FILL = {
    StepKind.FUNCTION: "#e8f0fe",
    StepKind.WORKFLOW: "#e6f4ea",
    StepKind.WAIT: "#fef7e0",
    StepKind.SLEEP: "#f3e8fd",
}


def _layers(plan: WorkflowPlan) -> list[list[StepPlan]]:
    depth: dict[str, int] = {}
    for step in plan.steps:  # topological order: dependencies come first
        depth[step.id] = 1 + max((depth[d] for d in step.depends_on), default=-1)
    layers: list[list[StepPlan]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step in plan.steps:
        layers[depth[step.id]].append(step)
    return layers


def to_svg(plan: WorkflowPlan) -> str:
    layers = _layers(plan)
    width = max((len(layer) for layer in layers), default=1) * (_NODE_W + _GAP_X) + _GAP_X
    height = len(layers) * (_NODE_H + _GAP_Y) + _GAP_Y
    centre: dict[str, tuple[float, float]] = {}
    nodes: list[str] = []
    for row, layer in enumerate(layers):
        offset = (width - len(layer) * (_NODE_W + _GAP_X) + _GAP_X) / 2
        for col, step in enumerate(layer):
            x = offset + col * (_NODE_W + _GAP_X)
            y = _GAP_Y + row * (_NODE_H + _GAP_Y)
            centre[step.id] = (x + _NODE_W / 2, y)
            nodes.append(_svg_node(step, x, y))
    edges = []
    for step in plan.steps:
        x2, y2 = centre[step.id]
        for dep in step.depends_on:
            x1, y1 = centre[dep]
            edges.append(
                f'<line x1="{x1:.0f}" y1="{y1 + _NODE_H:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" '
                'stroke="#5f6368" stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
    title = escape(f"{plan.name} {plan.version}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif">\n'
        f"<title>{title}</title>\n"
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#5f6368"/></marker></defs>\n'
        f'<text x="{_GAP_X}" y="24" font-size="14" font-weight="bold">{title}</text>\n'
        + "\n".join(edges + nodes)
        + "\n</svg>\n"
    )


def _svg_node(step: StepPlan, x: float, y: float) -> str:
    lines = _lines(step)
    border = ' stroke-dasharray="4 2"' if step.condition is not None else ""
    stack = (
        f'<rect x="{x + 4:.0f}" y="{y + 4:.0f}" width="{_NODE_W}" height="{_NODE_H}" rx="8" '
        f'fill="{_FILL[step.kind]}" stroke="#5f6368"/>'
        if step.for_each is not None
        else ""
    )
    texts = "".join(
        _svg_text(line, x + 10, y + 18 + n * _LINE_H, first=n == 0)
        for n, line in enumerate(lines[:4])
    )
    return (
        f'<g class="step" data-step="{escape(step.id)}">{stack}'
        f'<rect x="{x:.0f}" y="{y:.0f}" width="{_NODE_W}" height="{_NODE_H}" rx="8" '
        f'fill="{_FILL[step.kind]}" stroke="#5f6368"{border}/>{texts}</g>'
    )


def _svg_text(line: str, x: float, y: float, *, first: bool) -> str:
    style = 'font-size="13" font-weight="bold"' if first else 'font-size="11"'
    return f'<text x="{x:.0f}" y="{y:.0f}" {style}>{escape(_clip(line))}</text>'


def _clip(text: str, limit: int = 34) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
