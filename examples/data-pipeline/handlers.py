"""Business functions of the data-pipeline workflow, simulated so the example runs anywhere.

    magic-flow run examples/data-pipeline/workflow.yaml \
      --handlers examples/data-pipeline/handlers.py \
      --input '{"run_date": "2026-11-25", "sources": ["orders", "payments", "clicks"]}'

Extraction is async (I/O bound); transformation is sync (CPU bound: it runs in the executor's
thread pool). The quality check fails on purpose when a source is called "corrupt", to show
`continue_on_failure`.
"""

from __future__ import annotations

import asyncio
import hashlib

import magicflow


@magicflow.function
async def extract_source(ctx: magicflow.StepContext) -> dict[str, object]:
    source = ctx.input["source"]
    await asyncio.sleep(0.05)  # a query against the source system
    rows = 1000 + int(hashlib.sha256(source.encode()).hexdigest(), 16) % 9000
    return {"source": source, "rows": rows, "path": f"s3://raw/{ctx.input['run_date']}/{source}"}


@magicflow.function
def transform_batch(ctx: magicflow.StepContext) -> dict[str, object]:
    batches = ctx.input["batches"]
    total = sum(batch["rows"] for batch in batches)
    sources = sorted(batch["source"] for batch in batches)
    return {"staging_table": "staging.nightly", "rows": total, "sources": sources}


@magicflow.function
def run_quality_checks(ctx: magicflow.StepContext) -> dict[str, object]:
    if "corrupt" in ctx.input["table"]:
        raise magicflow.NonRetryableError(f"null primary keys in {ctx.input['table']}")
    return {"table": ctx.input["table"], "checks": 12, "passed": 12}


@magicflow.function
async def load_warehouse(ctx: magicflow.StepContext) -> dict[str, object]:
    await asyncio.sleep(0.05)  # COPY into the warehouse
    return {"rows": 24_000 if ctx.input["mode"] == "replace" else 8_000, "mode": ctx.input["mode"]}


@magicflow.function
async def load_warehouse_replica(ctx: magicflow.StepContext) -> dict[str, object]:
    return {"rows": 8_000, "replica": ctx.input["replica"]}


@magicflow.function
async def refresh_dashboards(ctx: magicflow.StepContext) -> dict[str, object]:
    return {"refreshed": ["revenue", "funnel"]}


@magicflow.function
async def post_to_slack(ctx: magicflow.StepContext) -> dict[str, object]:
    return {"channel": ctx.input["channel"], "text": ctx.input["text"]}
