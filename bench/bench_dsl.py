"""Micro-benchmark of the workflow language: ms to validate + compile, ms to resolve a graph.

Run: ``python bench/bench_dsl.py`` (a few seconds). Targets, on the project's
2-core machine: a 1,000-step workflow validated and compiled (YAML text to plan, cache off)
in under 200 ms; a 100-node dependency graph resolved (order, dependents, cycle check,
ancestor queries) in under 50 ms. Best and median of several runs are printed, since the
machine is shared and noisy.
"""

from __future__ import annotations

import itertools
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import yaml

from magicflow.dsl import Defaults, Limits, parse_workflow
from magicflow.dsl.build import build_plan
from magicflow.dsl.dag import resolve_graph
from magicflow.dsl.loader import load_yaml
from magicflow.dsl.report import Reporter
from magicflow.dsl.schema import WORKFLOW
from magicflow.dsl.scope import compile_expressions
from magicflow.dsl.structure import check
from magicflow.dsl.validate import analyse

TARGET_COMPILE_MS = 200.0
TARGET_GRAPH_MS = 50.0


def big_workflow(steps: int = 1000, seed: int = 7) -> str:
    """A realistic mix: fan-in, expressions, conditions, fan-out, policies, fallbacks."""
    rng = random.Random(seed)
    lines = [
        "name: big-pipeline",
        'version: "1.0.0"',
        "timeout: 1h",
        "defaults:",
        "  timeout: 30s",
        "  retry_config: {strategy: exponential, max_attempts: 3, initial_interval: 500ms}",
        "steps:",
    ]
    for i in range(steps):
        lines += [f"  - id: step-{i}", f"    function: handler_{i % 25}"]
        if i:
            deps = sorted({f"step-{rng.randrange(max(0, i - 20), i)}" for _ in range(3)})
            lines.append(f"    depends_on: [{', '.join(deps)}]")
        if i % 50 == 7:
            lines += ["    for_each: ${input.items}", "    max_parallel: 5"]
            lines.append('    input: {item: "${item}", index: "${index}"}')
        elif i:
            lines.append(
                f'    input: {{value: "${{steps.{deps[0]}.output.value}}", '
                f'email: "${{input.email}}", n: {i}, label: "item {i}"}}'
            )
        if i % 10 == 3:
            lines.append(f"    condition: ${{input.tier == 'gold' and {i} > 2}}")
        if i % 4 == 0:
            lines.append("    retry_config: {max_attempts: 5, max_interval: 10s}")
        if i % 9 == 0:
            lines.append("    fallback: {output: {degraded: true}}")
        if i % 13 == 0:
            lines.append("    timeout: 2m")
    return "\n".join(lines) + "\n"


def random_graph(nodes: int = 100, seed: int = 3) -> tuple[list[str], dict[str, list[str]]]:
    rng = random.Random(seed)
    ids = [f"n{i}" for i in range(nodes)]
    deps = {
        ids[i]: sorted({ids[rng.randrange(i)] for _ in range(3)}) if i else [] for i in range(nodes)
    }
    return ids, deps


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """(best, median) wall time in ms over ``runs`` calls (freeing the result not included)."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - start) * 1000)
        del result
    return min(samples), statistics.median(samples)


_runs = itertools.count()


def compile_big(text: str) -> Any:
    """Validate and compile ``text`` as a new document (a comment defeats the plan cache)."""
    result = parse_workflow(f"{text}# run {next(_runs)}\n", "big.yaml")
    assert result.plan is not None, result.diagnostics[:3]
    return result


def resolve_small(ids: list[str], deps: dict[str, list[str]]) -> None:
    graph = resolve_graph(ids, deps)
    assert not graph.cycles
    for step in ids:
        graph.depends_on(step, ids[0])
    _ = graph.roots, graph.leaves


def stages(text: str, runs: int = 7) -> dict[str, float]:
    """Best ms of each stage of the pipeline, to see where the time goes."""
    loaded = load_yaml(text, "big.yaml")
    data = loaded.data
    assert data is not None
    rep = Reporter("big.yaml", loaded.source_map)
    analysis = analyse(data, rep, Limits(), Defaults())
    compiled = compile_expressions(data, analysis, rep)
    return {
        "read YAML": timed(lambda: load_yaml(text, "big.yaml"), runs)[0],
        "check keys and types": timed(lambda: check(data, WORKFLOW, (), rep), runs)[0],
        "check the graph": timed(lambda: analyse(data, rep, Limits(), Defaults()), runs)[0],
        "compile expressions": timed(lambda: compile_expressions(data, analysis, rep), runs)[0],
        "build the plan": timed(
            lambda: build_plan(
                data, analysis.steps, analysis.graph, compiled, loaded.source_map, Defaults()
            ),
            runs,
        )[0],
    }


def main() -> None:
    text = big_workflow()
    ids, deps = random_graph()
    compile_big(text)  # warm up: imports, regex caches
    best, median = timed(lambda: compile_big(text), 15)
    verdict = "ok" if best < TARGET_COMPILE_MS else "OVER TARGET"
    print(
        f"validate + compile 1,000 steps ({len(text) // 1024} KiB): best {best:.1f} ms, "
        f"median {median:.1f} ms (target < {TARGET_COMPILE_MS:.0f} ms: {verdict})"
    )
    print("  by stage (best ms): " + ", ".join(f"{k} {v:.1f}" for k, v in stages(text).items()))
    reference, _ = timed(lambda: sum(1 for _ in yaml.parse(text, Loader=yaml.CSafeLoader)), 7)
    print(f"  for scale: libyaml alone parses the text in {reference:.1f} ms (machine load check)")
    cached, _ = timed(lambda: parse_workflow(text, "big.yaml"), 50)
    print(f"same document again (plan cache hit): best {cached:.2f} ms")
    best, median = timed(lambda: resolve_small(ids, deps), 200)
    verdict = "ok" if best < TARGET_GRAPH_MS else "OVER TARGET"
    print(
        f"resolve a 100-node dependency graph: best {best:.3f} ms, median {median:.3f} ms "
        f"(target < {TARGET_GRAPH_MS:.0f} ms: {verdict})"
    )


if __name__ == "__main__":
    main()
