"""``magic-flow keys create|list|revoke``: API keys of the HTTP service, in its store.

``create`` prints the new key alone on stdout (it is shown once: the store keeps only its
sha256), so ``KEY=$(magic-flow keys create --role admin)`` works. Keys live in the store the
server uses (``--store``, ``MAGICFLOW_STORE``, default ``sqlite:///magicflow.db``); the server
sees a new or revoked key on the next request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from magicflow.cli.app import app, fail
from magicflow.cli.server import DEFAULT_STORE
from magicflow.config import load_settings

if TYPE_CHECKING:
    from magicflow.stores import ApiKeyRecord, Store

T = TypeVar("T")

keys_app = typer.Typer(
    name="keys", help="API keys of the HTTP service (create, list, revoke).", no_args_is_help=True
)
app.add_typer(keys_app)


class RoleChoice(StrEnum):  # service.keys.Role, without importing the service here
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


StoreOption = Annotated[
    str | None,
    typer.Option("--store", help=f"The server's store URL (default: {DEFAULT_STORE})."),
]


def _store(url: str | None) -> Store:
    from magicflow.stores import store_from_url

    resolved = load_settings({"store": url}).store or DEFAULT_STORE
    if resolved.startswith("memory:"):
        fail("a memory:// store lives inside one process: give the server's --store")
    return store_from_url(resolved)


async def _with_store(url: str | None, action: Callable[[Store], Awaitable[T]]) -> T:
    store = _store(url)
    await store.open()
    try:
        return await action(store)
    finally:
        await store.close()


def _time(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@keys_app.command("create")
def create(
    role: Annotated[RoleChoice, typer.Option("--role", help="admin, operator or viewer.")],
    store: StoreOption = None,
    name: Annotated[
        str | None, typer.Option("--name", help="A label for people (who or what uses it).")
    ] = None,
) -> None:
    """Create an API key and print it, alone, on stdout (shown once: store it now)."""
    from magicflow.service.keys import Role, create_key

    async def action(backend: Store) -> str:
        key, _ = await create_key(backend, Role(role.value), name)
        return key

    typer.echo(asyncio.run(_with_store(store, action)))


@keys_app.command("list")
def list_keys(
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """The keys: id, role, name, created, revoked (never the key itself)."""

    async def action(backend: Store) -> list[ApiKeyRecord]:
        return await backend.list_api_keys()

    records = asyncio.run(_with_store(store, action))
    rows = [
        {
            "id": r.id,
            "role": r.role,
            "name": r.name,
            "created": _time(r.created_at),
            "revoked": _time(r.revoked_at) if r.revoked else None,
        }
        for r in records
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    typer.echo(f"{'ID':<14}{'ROLE':<10}{'CREATED':<22}{'REVOKED':<22}NAME")
    for row in rows:
        typer.echo(
            f"{row['id']:<14}{row['role']:<10}{row['created']:<22}"
            f"{row['revoked'] or '-':<22}{row['name'] or ''}"
        )


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (keys list).")],
    store: StoreOption = None,
) -> None:
    """Revoke a key: the server refuses it from its next request on."""

    async def action(backend: Store) -> bool:
        return await backend.revoke_api_key(key_id, time.time())

    if not asyncio.run(_with_store(store, action)):
        fail(f"no active API key {key_id!r} (see magic-flow keys list)", code=1)
    typer.echo(f"revoked {key_id}", err=True)
