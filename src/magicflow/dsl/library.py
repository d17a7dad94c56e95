"""Several definitions at once: resolve ``workflow: name[@version]`` between them.

``magic-flow validate a.yaml b.yaml`` and ``magic-flow run FILE --workflows DIR`` put every
document they read into a :class:`WorkflowLibrary`; :meth:`WorkflowLibrary.check` then reports
what only the set reveals: sub-workflow cycles across files ("where known"), and — when every
child must be present, as for ``run`` — references to unknown or invalid definitions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from magicflow.dsl.compile import RefSite, ValidationResult, load_workflow
from magicflow.dsl.diagnostics import Diagnostic
from magicflow.dsl.plan import WorkflowPlan, WorkflowRef
from magicflow.dsl.policies import Defaults
from magicflow.dsl.source import Limits
from magicflow.dsl.text import did_you_mean

__all__ = ["WorkflowLibrary", "load_library", "version_key"]

_PART = re.compile(r"\d+|[^\d.+-]+")


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key for versions: ``1.10.0`` after ``1.9.2``, ``2.0.0-rc1`` before ``2.0.0``."""
    main, _, pre = version.partition("+")[0].partition("-")
    release = tuple(_parts(main))
    return (release, (0, tuple(_parts(pre))) if pre else (1,))


def _parts(text: str) -> list[tuple[int, int | str]]:
    return [(1, int(p)) if p.isdigit() else (0, p) for p in _PART.findall(text)]


class _Known(NamedTuple):
    result: ValidationResult
    plan: WorkflowPlan | None


class WorkflowLibrary:
    """Definitions by name and version, valid or not, as read from their files."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, _Known]] = {}

    def add(self, result: ValidationResult) -> list[Diagnostic]:
        """Record a validated document; a second, different one of the same version is an error."""
        if result.name is None or result.version is None:
            return []
        versions = self._by_name.setdefault(result.name, {})
        known = versions.get(result.version)
        if known is not None and known.result.file != result.file:
            same = known.plan and result.plan and known.plan.digest == result.plan.digest
            if not same:
                message = (
                    f"workflow {result.name}@{result.version} is also defined in "
                    f"{known.result.file}, differently"
                )
                return [Diagnostic(result.file, 1, 1, message)]
        # The same document read again (another path to one file): the last one names it.
        versions[result.version] = _Known(result, result.plan if result.valid else None)
        return []

    def resolve(self, ref: WorkflowRef) -> WorkflowPlan | None:
        """The valid plan ``ref`` names: its version, or the latest valid one."""
        versions = self._by_name.get(ref.name, {})
        if ref.version is not None:
            known = versions.get(ref.version)
            return known.plan if known else None
        valid = [k.plan for k in versions.values() if k.plan is not None]
        return max(valid, key=lambda p: version_key(p.version), default=None)

    def plans(self) -> list[WorkflowPlan]:
        return [k.plan for v in self._by_name.values() for k in v.values() if k.plan is not None]

    def closure(self, plan: WorkflowPlan) -> dict[WorkflowRef, WorkflowPlan]:
        """Every sub-workflow ``plan`` may start, transitively, as far as they are known."""
        found: dict[WorkflowRef, WorkflowPlan] = {}
        pending = list(plan.workflow_refs)
        while pending:
            ref = pending.pop()
            child = self.resolve(ref)
            if ref in found or child is None:
                continue
            found[ref] = child
            pending.extend(child.workflow_refs)
        return found

    def check(self, *, require_known: bool = False) -> list[Diagnostic]:
        """Problems between the documents: cycles; unknown children if ``require_known``."""
        diagnostics: list[Diagnostic] = []
        for versions in self._by_name.values():
            for known in versions.values():
                for site in known.result.refs:
                    problem = self._site_problem(known, site, require_known)
                    if problem:
                        diagnostics.append(_at(known.result, site, problem))
        diagnostics.extend(self._cycles())
        return sorted(set(diagnostics))

    def _site_problem(self, known: _Known, site: RefSite, require_known: bool) -> str | None:
        if not require_known or self.resolve(site.ref) is not None:
            return None
        versions = self._by_name.get(site.ref.name, {})
        if site.ref.version is not None and site.ref.version in versions:
            child = versions[site.ref.version].result
        elif site.ref.version is None and versions:
            child = next(iter(versions.values())).result
        else:
            names = self._by_name.keys()
            if versions:
                listed = ", ".join(sorted(versions, key=version_key))
                return f"unknown sub-workflow {str(site.ref)!r} (known versions: {listed})"
            return f"unknown sub-workflow {str(site.ref)!r}{did_you_mean(site.ref.name, names)}"
        first = child.diagnostics[0].format() if child.diagnostics else "invalid"
        return (
            f"sub-workflow {str(site.ref)!r} is defined in {child.file}, which is invalid: {first}"
        )

    def _cycles(self) -> list[Diagnostic]:
        """A diagnostic at every ``workflow:`` step on a cycle of sub-workflows."""
        diagnostics: list[Diagnostic] = []
        for plan in self.plans():
            cycle = self._cycle_from(plan)
            if cycle is None:
                continue
            text = " -> ".join(f"{p.name}@{p.version}" for p in cycle)
            known = self._by_name[plan.name][plan.version]
            for site in known.result.refs:
                if self.resolve(site.ref) is cycle[1]:
                    message = f"sub-workflow cycle: {text}"
                    diagnostics.append(_at(known.result, site, message))
        return diagnostics

    def _cycle_from(self, start: WorkflowPlan) -> list[WorkflowPlan] | None:
        """The shortest chain of sub-workflows from ``start`` back to itself, if any."""
        previous: dict[int, WorkflowPlan] = {}
        frontier = [start]
        seen = {id(start)}
        while frontier:
            following: list[WorkflowPlan] = []
            for plan in frontier:
                for ref in sorted(plan.workflow_refs, key=str):
                    child = self.resolve(ref)
                    if child is start:
                        chain = [plan]
                        while chain[-1] is not start:
                            chain.append(previous[id(chain[-1])])
                        return (
                            [start, *reversed(chain[:-1]), start]
                            if plan is not start
                            else [start, start]
                        )
                    if child is not None and id(child) not in seen:
                        seen.add(id(child))
                        previous[id(child)] = plan
                        following.append(child)
            frontier = following
        return None


def _at(result: ValidationResult, site: RefSite, message: str) -> Diagnostic:
    return Diagnostic(result.file, site.line, site.col, message, path=("steps",))


def load_library(
    paths: Iterable[str | os.PathLike[str]],
    *,
    limits: Limits | None = None,
    defaults: Defaults | None = None,
) -> tuple[WorkflowLibrary, list[ValidationResult]]:
    """Read the YAML files among ``paths`` (files, or directories scanned one level deep)."""
    library = WorkflowLibrary()
    results: list[ValidationResult] = []
    for path in _yaml_files(paths):
        result = load_workflow(path, limits=limits, defaults=defaults)
        result.diagnostics.extend(library.add(result))
        results.append(result)
    return library, results


def _yaml_files(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    files: list[str] = []
    for item in paths:
        path = os.fspath(item)
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith((".yaml", ".yml")))
            files.extend(os.path.join(path, n) for n in names)
        else:
            files.append(path)
    return list(dict.fromkeys(files))
