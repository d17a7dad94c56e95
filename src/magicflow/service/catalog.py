"""Workflow definitions: saved in the store, compiled once per version, resolved by reference.

The store keeps each version's canonical document (JSON) and the YAML it came from; a plan
is compiled from the document the first time a process needs it and cached by (name, version)
(versions are immutable, so that cache never goes stale). Which version is the latest is
remembered for ``latest_ttl`` seconds (and forgotten at once when this process registers one),
so a version registered by another process is seen within that time.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from magicflow.dsl import WorkflowPlan, plan_from_document
from magicflow.errors import NotFoundError
from magicflow.stores.base import DefinitionRecord, Store

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class Catalog:
    def __init__(self, store: Store, latest_ttl: float = 1.0) -> None:
        self.store = store
        self.latest_ttl = latest_ttl
        self._plans: dict[tuple[str, str], WorkflowPlan] = {}
        self._latest: dict[str, tuple[float, WorkflowPlan]] = {}  # name -> (until, plan)

    async def register(self, plan: WorkflowPlan, source: str | None = None) -> bool:
        """Save ``plan``'s version: True if created, False if that very content was there.
        ConflictError: the same name and version with other content."""
        record = DefinitionRecord(
            name=plan.name,
            version=plan.version,
            digest=plan.digest,
            document=_encode(plan.document),
            created_at=time.time(),
            source=source,
        )
        created = await self.store.save_definition(record)
        self._plans[(plan.name, plan.version)] = plan
        self._latest.pop(plan.name, None)
        return created

    def forget_latest(self, name: str) -> None:
        """Ask the store again which version is the latest (after a delete, say)."""
        self._latest.pop(name, None)

    async def resolve(self, name: str, version: str | None = None) -> WorkflowPlan:
        """The plan of ``name@version`` (deleted versions included, so running executions can
        finish), or of the latest version not deleted; NotFoundError if there is none."""
        if version is not None:
            plan = self._plans.get((name, version))
            if plan is not None:
                return plan
            record = await self.store.get_definition(name, version, include_deleted=True)
        else:
            cached = self._latest.get(name)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            record = await self.store.get_definition(name)
        if record is None:
            what = name if version is None else f"{name}@{version}"
            raise NotFoundError(f"workflow {what} is not registered")
        plan = self.plan_of(record)
        if version is None:
            self._latest[name] = (time.monotonic() + self.latest_ttl, plan)
        return plan

    def plan_of(self, record: DefinitionRecord) -> WorkflowPlan:
        key = (record.name, record.version)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = plan_from_document(_decode(record.document))
        return plan
