"""From YAML text to a compiled :class:`~magicflow.dsl.plan.WorkflowPlan`, or diagnostics.

:func:`parse_workflow` runs the whole pipeline: read (``loader``), structural checks
(``structure`` against ``schema``), whole-document rules (``validate``), expressions
(``scope``), input schema, then the plan (``build``). Every problem of every stage is
collected before returning, sorted by position. Plans are cached by the digest of the source
and the settings, so the same version is compiled once per process.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from magicflow.dsl.build import build_plan
from magicflow.dsl.diagnostics import Diagnostic
from magicflow.dsl.loader import load_yaml
from magicflow.dsl.plan import WorkflowPlan, WorkflowRef
from magicflow.dsl.policies import Defaults
from magicflow.dsl.report import Reporter
from magicflow.dsl.schema import WORKFLOW
from magicflow.dsl.scope import compile_expressions
from magicflow.dsl.source import Limits, SourceMap
from magicflow.dsl.structure import check
from magicflow.dsl.validate import analyse, split_ref
from magicflow.errors import WorkflowValidationError

__all__ = [
    "RefSite",
    "ValidationResult",
    "clear_plan_cache",
    "compile_workflow",
    "load_workflow",
    "parse_workflow",
    "plan_from_document",
]

_CACHE_SIZE = 256


class RefSite(NamedTuple):
    """A ``workflow:`` step, where it is written: to resolve sub-workflows among files."""

    step_id: str
    ref: WorkflowRef
    line: int
    col: int


@dataclass(slots=True)
class ValidationResult:
    """What validating one document found: a plan when valid, else diagnostics."""

    file: str
    plan: WorkflowPlan | None
    diagnostics: list[Diagnostic]
    name: str | None = None  # the document's name and version, when they could be read
    version: str | None = None
    refs: tuple[RefSite, ...] = ()
    document: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def valid(self) -> bool:
        return self.plan is not None and not self.diagnostics

    def raise_for_diagnostics(self) -> WorkflowPlan:
        """The plan, or :class:`~magicflow.errors.WorkflowValidationError`."""
        if self.plan is None or self.diagnostics:
            raise WorkflowValidationError(self.diagnostics)
        return self.plan


class _Entry(NamedTuple):
    plan: WorkflowPlan
    refs: tuple[RefSite, ...]


_cache: OrderedDict[tuple[str, Limits, Defaults], _Entry] = OrderedDict()
_lock = threading.Lock()


def clear_plan_cache() -> None:
    with _lock:
        _cache.clear()


def parse_workflow(
    source: str | bytes,
    filename: str = "<string>",
    *,
    limits: Limits | None = None,
    defaults: Defaults | None = None,
) -> ValidationResult:
    """Validate and compile one workflow document. Never raises for bad input."""
    limits = limits or Limits()
    defaults = defaults or Defaults()
    raw = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
    key = (hashlib.sha256(raw).hexdigest(), limits, defaults)
    with _lock:
        entry = _cache.get(key)
        if entry is not None:
            _cache.move_to_end(key)
    if entry is not None:
        plan = entry.plan
        return ValidationResult(
            filename, plan, [], plan.name, plan.version, entry.refs, plan.document
        )
    try:
        with _gc_paused():
            result = _validate(source, filename, limits, defaults)
    except Exception as exc:  # a bug of ours must still reach the user as one readable line
        message = f"internal error while validating: {type(exc).__name__}: {exc} (please report it)"
        return ValidationResult(filename, None, [Diagnostic(filename, 1, 1, message)])
    if result.plan is not None:
        with _lock:
            _cache[key] = _Entry(result.plan, result.refs)
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return result


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a document is compiled.

    Compiling allocates tens of thousands of long-lived containers (the data, positions,
    expression trees), which makes CPython 3.11 run full collections over the whole heap
    again and again: in a process that already holds a few plans, that tripled the time to
    compile a 1,000-step workflow. Nothing compiled here forms cycles that need collecting
    soon; the collector runs again as usual afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _validate(
    source: str | bytes, filename: str, limits: Limits, defaults: Defaults
) -> ValidationResult:
    loaded = load_yaml(source, filename, limits)
    data = loaded.data
    if data is None:
        return ValidationResult(filename, None, sorted(loaded.diagnostics))
    rep = Reporter(filename, loaded.source_map)
    rep.diagnostics.extend(loaded.diagnostics)
    check(data, WORKFLOW, (), rep)
    analysis = analyse(data, rep, limits, defaults)
    compiled = compile_expressions(data, analysis, rep)
    if isinstance(data.get("input_schema"), dict):
        _check_input_schema(data["input_schema"], rep)
    name = data.get("name") if isinstance(data.get("name"), str) else None
    version = data.get("version") if isinstance(data.get("version"), str) else None
    refs = _ref_sites(data, loaded.source_map)
    if rep.diagnostics:
        diagnostics = sorted(set(rep.diagnostics))
        return ValidationResult(filename, None, diagnostics, name, version, refs, data)
    plan = build_plan(data, analysis.steps, analysis.graph, compiled, loaded.source_map, defaults)
    return ValidationResult(filename, plan, [], name, version, refs, data)


def _check_input_schema(schema: dict[str, Any], rep: Reporter) -> None:
    # jsonschema costs ~100 ms to import: only documents that have an input_schema pay it.
    from magicflow.dsl.inputs import schema_problems

    for path, message in schema_problems(schema):
        rep.at(("input_schema", *path), f"invalid input_schema: {message}")


def _ref_sites(data: dict[str, Any], source_map: SourceMap) -> tuple[RefSite, ...]:
    steps = data.get("steps")
    if not isinstance(steps, list):
        return ()
    sites: list[RefSite] = []
    for position, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        ref, step_id = step.get("workflow"), step.get("id")
        if isinstance(ref, str) and isinstance(step_id, str) and ref:
            name, version = split_ref(ref)
            span = source_map.value(("steps", position, "workflow"))
            sites.append(RefSite(step_id, WorkflowRef(name, version), span.line, span.col))
    return tuple(sites)


def compile_workflow(
    source: str | bytes,
    filename: str = "<string>",
    *,
    limits: Limits | None = None,
    defaults: Defaults | None = None,
) -> WorkflowPlan:
    """The plan of a valid document; raises :class:`~magicflow.errors.WorkflowValidationError`."""
    return parse_workflow(
        source, filename, limits=limits, defaults=defaults
    ).raise_for_diagnostics()


def load_workflow(
    path: str | os.PathLike[str],
    *,
    limits: Limits | None = None,
    defaults: Defaults | None = None,
) -> ValidationResult:
    """Read and validate a workflow file. An unreadable file is a diagnostic, not an error."""
    limits = limits or Limits()
    filename = os.fspath(path)
    try:
        with open(filename, "rb") as handle:
            source = handle.read(limits.max_bytes + 1)
            if len(source) > limits.max_bytes:
                size = os.fstat(handle.fileno()).st_size
                message = f"the document is {size:,} bytes; the limit is {limits.max_bytes:,} bytes"
                return ValidationResult(filename, None, [Diagnostic(filename, 1, 1, message)])
    except OSError as exc:
        reason = exc.strerror or str(exc)
        message = f"cannot read the file: {reason}"
        return ValidationResult(filename, None, [Diagnostic(filename, 1, 1, message)])
    return parse_workflow(source, filename, limits=limits, defaults=defaults)


def plan_from_document(
    document: dict[str, Any], *, limits: Limits | None = None, defaults: Defaults | None = None
) -> WorkflowPlan:
    """The plan of a stored document (JSON data); JSON is YAML, so the same pipeline runs."""
    return compile_workflow(json.dumps(document), "<document>", limits=limits, defaults=defaults)
