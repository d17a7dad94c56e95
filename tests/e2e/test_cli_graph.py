"""``magic-flow graph`` as a user runs it: a real process, real files."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def magic_flow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "magicflow", *args], capture_output=True, text=True, timeout=60
    )


def test_graph_prints_mermaid_by_default() -> None:
    done = magic_flow("graph", str(EXAMPLES / "ecommerce-order" / "workflow.yaml"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("flowchart TD")
    assert "ship-items" in done.stdout


def test_graph_svg_and_dot(tmp_path: Path) -> None:
    workflow = str(EXAMPLES / "data-pipeline" / "workflow.yaml")
    svg = magic_flow("graph", workflow, "--format", "svg")
    assert svg.returncode == 0, svg.stderr
    assert svg.stdout.startswith("<svg")
    dot = magic_flow("graph", workflow, "--format", "dot")
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith("digraph")


def test_graph_of_an_invalid_file_prints_diagnostics_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('name: x\nversion: "1"\nsteps:\n  - id: a\n    functoin: f\n')
    done = magic_flow("graph", str(bad))
    assert done.returncode == 2
    assert f"{bad}:5:5: error: unknown key 'functoin'" in done.stderr
    assert done.stdout == ""
