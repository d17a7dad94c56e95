"""Compile every expression of a document once, and check what each one may read.

A step's expressions (``condition``, ``for_each``, ``input``, its fallback's ``output`` and
``input``, its compensation's ``input``) may read only the steps it depends on, directly or
transitively; a compensation may also read its own step. ``item`` and ``index`` exist only
where a ``for_each`` step handles one item (its input, fallback and compensation). The
workflow ``output`` may read any step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from magicflow.dsl.expressions import (
    Expression,
    ExpressionError,
    Template,
    TemplateError,
    compile_condition,
    compile_template,
)
from magicflow.dsl.report import Reporter
from magicflow.dsl.source import Path
from magicflow.dsl.validate import Analysis, StepInfo

__all__ = ["Compiled", "compile_expressions"]

Compiled = dict[Path, Expression | Template]


class _Site(NamedTuple):
    """One place that holds expressions, and what they may read there."""

    path: Path
    value: Any
    condition: bool  # a single expression (condition, for_each) rather than a template
    allow_item: bool
    allow_self: bool = False


def compile_expressions(data: dict[str, Any], analysis: Analysis, rep: Reporter) -> Compiled:
    """Every compiled expression of ``data`` by path; problems go to ``rep``."""
    compiled: Compiled = {}
    checker = _Checker(analysis, rep, compiled)
    for step in analysis.steps:
        for site in _step_sites(step):
            checker.site(site, step)
    if "output" in data:
        checker.site(_Site(("output",), data["output"], False, False), None)
    return compiled


def _step_sites(step: StepInfo) -> Iterator[_Site]:
    raw = step.data
    fan_out = "for_each" in raw
    for key in ("condition", "for_each"):
        value = raw.get(key)
        if isinstance(value, str | bool) and not (key == "for_each" and isinstance(value, bool)):
            yield _Site((*step.path, key), value, True, False)
    if "input" in raw:
        yield _Site((*step.path, "input"), raw["input"], False, fan_out)
    for base, option in _fallback_options(raw.get("fallback"), (*step.path, "fallback")):
        for key in ("output", "input"):
            if key in option:
                yield _Site((*base, key), option[key], False, fan_out)
    compensation = raw.get("compensation")
    if isinstance(compensation, dict) and "input" in compensation:
        path = (*step.path, "compensation", "input")
        yield _Site(path, compensation["input"], False, fan_out, allow_self=True)


def _fallback_options(fallback: Any, path: Path) -> list[tuple[Path, dict[str, Any]]]:
    """A single fallback mapping, or each mapping of a chain, with its path."""
    if isinstance(fallback, dict):
        return [(path, fallback)]
    if isinstance(fallback, list):
        return [((*path, i), o) for i, o in enumerate(fallback) if isinstance(o, dict)]
    return []


class _Checker:
    def __init__(self, analysis: Analysis, rep: Reporter, compiled: Compiled) -> None:
        self.analysis = analysis
        self.rep = rep
        self.compiled = compiled

    def site(self, site: _Site, step: StepInfo | None) -> None:
        compiled = self.compile(site)
        if compiled is None:
            return
        self.compiled[site.path] = compiled
        if compiled.uses_item and not site.allow_item:
            self.misplaced_item(site)
        if step is not None and step.id is not None:
            for ref in sorted(compiled.step_refs):
                self.check_ref(site, step.id, ref)

    def compile(self, site: _Site) -> Expression | Template | None:
        ids = self.analysis.ids
        try:
            if site.condition:
                return compile_condition(site.value, ids)
            return compile_template(site.value, ids)
        except TemplateError as exc:
            for subpath, column, message in exc.errors:
                self.rep.inside((*site.path, *subpath), column, message)
        except ExpressionError as exc:
            self.rep.inside(site.path, exc.column, exc.message)
        return None

    def check_ref(self, site: _Site, step_id: str, ref: str) -> None:
        graph = self.analysis.graph
        if ref == step_id:
            if site.allow_self:
                return
            message = f"step {step_id!r} cannot read its own output here"
        elif ref not in graph.index or step_id not in graph.index:
            return  # an unknown id is a compile error; a duplicate id was reported
        elif graph.in_cycle(step_id) or graph.depends_on(step_id, ref):
            return
        else:
            message = (
                f"step {step_id!r} reads steps.{ref} but does not depend on it: "
                f"add {ref!r} to its depends_on"
            )
        subpath, offset = _locate(site.value, (f"steps.{ref}", ref))
        self.rep.inside((*site.path, *subpath), offset, message)

    def misplaced_item(self, site: _Site) -> None:
        if site.path == ("output",):
            where = "the workflow output"
        else:
            where = f"{site.path[-1]!r} of a step without for_each"
        if site.path[-1] in ("condition", "for_each"):
            where = f"{site.path[-1]!r}, which is evaluated once for the whole step"
        message = (
            f"'item' and 'index' exist only while a for_each step handles one item, not in {where}"
        )
        subpath, offset = _locate(site.value, ("item", "index"))
        self.rep.inside((*site.path, *subpath), offset, message)


def _locate(value: Any, needles: tuple[str, ...]) -> tuple[Path, int]:
    """The first string inside ``value`` that holds one of ``needles`` in an expression."""
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str) and ("${" in item or path == ()):
            for needle in needles:
                offset = item.find(needle)
                if offset >= 0:
                    return path, offset
        elif isinstance(item, dict):
            stack.extend(reversed([((*path, k), v) for k, v in item.items()]))
        elif isinstance(item, list):
            stack.extend(reversed([((*path, i), v) for i, v in enumerate(item)]))
    return (), -1
