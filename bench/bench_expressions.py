"""Micro-benchmark of the expression language: µs per evaluation of compiled expressions.

Run: ``python bench/bench_expressions.py`` (about two seconds). Compilation happens once,
outside the timed loops, as it does once per workflow version in the engine.
"""

from __future__ import annotations

import timeit
from typing import Any

from magicflow.dsl.expressions import compile_condition, compile_expression, compile_template

STEP_IDS = ("validate-user", "create-account", "send-welcome")
SCOPE: dict[str, Any] = {
    "input": {"email": "ada@example.com", "plan": "pro", "items": [1, 2, 3], "blocked": False},
    "steps": {
        "validate-user": {
            "output": {"email": "ada@example.com", "score": 7},
            "status": "completed",
        },
        "create-account": {"output": {"user_id": "u-1", "tags": ["a"]}, "status": "completed"},
    },
    "execution": {"id": "01HX"},
    "workflow": {"name": "user-onboarding", "version": "1.2.0"},
}


def per_call_us(fn: Any, repeat: int = 5) -> float:
    """Best of ``repeat`` runs of about 0.05 s each (min filters out a busy machine's noise)."""
    timer = timeit.Timer(fn)
    number = max(1, timer.autorange()[0] // 4)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def main() -> None:
    path = compile_expression("steps.validate-user.output.email", STEP_IDS)
    condition = compile_condition(
        "${input.plan == 'pro' && steps.validate-user.output.score > 5 && !input.blocked}",
        STEP_IDS,
    )
    template = compile_template(
        {
            "email": "${input.email}",
            "user_id": "${steps.create-account.output.user_id}",
            "greeting": "Hello ${input.email}, welcome to ${workflow.name}",
            "items": "${input.items}",
            "score": "${default(steps.validate-user.output.score, 0) + 1}",
        },
        STEP_IDS,
    )
    assert condition.evaluate(SCOPE) is True
    cases = [
        ("pure path        steps.validate-user.output.email", lambda: path.evaluate(SCOPE)),
        ("3-clause condition (==, >, !, joined by &&)", lambda: condition.evaluate(SCOPE)),
        (
            "template of 5 fields (2 paths, 1 interpolation, 1 list, 1 arithmetic)",
            lambda: template.render(SCOPE),
        ),
    ]
    for label, fn in cases:
        print(f"{per_call_us(fn):8.2f} µs  {label}")


if __name__ == "__main__":
    main()
