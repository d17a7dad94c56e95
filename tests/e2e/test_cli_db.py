"""``magic-flow db upgrade`` as a user runs it: real processes, real servers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from magicflow.stores._postgresql_schema import MIGRATIONS as POSTGRESQL_MIGRATIONS
from magicflow.stores._sqlite_schema import MIGRATIONS as SQLITE_MIGRATIONS
from magicflow.stores.redis import SCHEMA_VERSION as REDIS_SCHEMA_VERSION

from ..service_stores import POSTGRESQL, postgresql_url, redis_url


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "magicflow", *args]


def magic_flow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=60)


async def run(*args: str) -> tuple[int, str, str]:
    """``magic-flow ARGS`` without blocking the loop: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        *command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_sqlite_tables_are_created_and_the_version_printed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    for _ in range(2):  # the second run finds nothing left to do
        done = magic_flow("db", "upgrade", "--store", url)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"{url}: schema version {len(SQLITE_MIGRATIONS)}\n"


@pytest.mark.services
async def test_concurrent_upgrades_of_a_new_postgresql_schema_migrate_once() -> None:
    async with postgresql_url() as url:
        outputs = await asyncio.gather(*(run("db", "upgrade", "--store", url) for _ in range(4)))
        expected = f"{url}: schema version {len(POSTGRESQL_MIGRATIONS)}\n"
        assert [(code, out) for code, out, _ in outputs] == [(0, expected)] * 4, outputs
        schema = url.rpartition("schema=")[2]
        conn = await asyncpg.connect(POSTGRESQL)
        try:
            versions = await conn.fetch(
                f'SELECT version FROM "{schema}".magicflow_schema_version ORDER BY version'
            )
            tables = await conn.fetchval(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", schema
            )
        finally:
            await conn.close()
        assert [row[0] for row in versions] == list(range(1, len(POSTGRESQL_MIGRATIONS) + 1))
        assert tables == 16  # 15 tables and the version table


@pytest.mark.services
async def test_redis_reports_its_key_layout_version() -> None:
    async with redis_url() as url:
        code, out, err = await run("db", "upgrade", "--store", url)
        assert code == 0, err
        assert out == f"{url}: schema version {REDIS_SCHEMA_VERSION}\n"


def test_an_unreachable_store_is_one_line_and_exit_2() -> None:
    done = magic_flow("db", "upgrade", "--store", "postgresql://u:secret@127.0.0.1:1/none")
    assert done.returncode == 2
    assert done.stderr.startswith("magic-flow: error: PostgreSQL: cannot open")
    assert "secret" not in done.stderr
    assert done.stderr.count("\n") == 1
