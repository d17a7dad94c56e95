"""``magic-flow db upgrade``: create or migrate a store's tables explicitly.

A store also migrates itself when a service opens it; running this first (at deploy time, from
one place) keeps that out of the start of every instance and shows the version reached.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import typer

from magicflow.cli.app import app
from magicflow.config import load_settings
from magicflow.stores import store_from_url  # light: a backend's driver loads on use

DEFAULT_STORE = "sqlite:///magicflow.db"  # the server's default

db_app = typer.Typer(name="db", help="Manage the store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@runtime_checkable
class _Versioned(Protocol):
    schema_version: int  # set by open(): the schema version the tables are at


@db_app.command("upgrade")
def upgrade(
    store: Annotated[
        str | None,
        typer.Option("--store", help=f"Store URL (default: MAGICFLOW_STORE, or {DEFAULT_STORE})."),
    ] = None,
) -> None:
    """Create the store's tables, or apply the migrations it has not seen; print the version."""
    url = load_settings({"store": store}).store or DEFAULT_STORE
    version = asyncio.run(_upgrade(url))
    where = _without_password(url)
    if version is None:
        typer.echo(f"{where}: nothing to migrate (this store keeps no schema)")
    else:
        typer.echo(f"{where}: schema version {version}")


async def _upgrade(url: str) -> int | None:
    backend = store_from_url(url)
    await backend.open()  # creates or migrates the tables
    try:
        return backend.schema_version if isinstance(backend, _Versioned) else None
    finally:
        await backend.close()


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))
