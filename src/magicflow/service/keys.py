"""API keys of the HTTP service: made here, stored hashed, checked by ``service.auth``.

A key is ``mf_`` followed by 43 URL-safe characters (32 random bytes); the store keeps only
its sha256, so a stolen database yields no usable key. The key is shown once, when it is
created (``magic-flow keys create``). Roles nest: ``admin`` may do everything, ``operator``
may start, control and signal executions and read everything, ``viewer`` may only read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from enum import StrEnum

from magicflow.stores.base import ApiKeyRecord, Store

KEY_PREFIX = "mf_"


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


class Permission(StrEnum):
    READ = "read"  # definitions, executions, events, health
    OPERATE = "operate"  # start, cancel, pause, resume, retry, signal
    ADMINISTER = "administer"  # register and delete definitions


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset({Permission.READ, Permission.OPERATE}),
    Role.VIEWER: frozenset({Permission.READ}),
}


_ROLES = frozenset(role.value for role in Role)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_key(store: Store, role: Role, name: str | None = None) -> tuple[str, ApiKeyRecord]:
    """A new key (returned once, never stored) and its record (stored)."""
    key = new_key()
    record = ApiKeyRecord(
        id=secrets.token_hex(6),
        key_hash=hash_key(key),
        role=str(role),
        created_at=time.time(),
        name=name,
    )
    await store.save_api_key(record)
    return key, record


async def authenticate(store: Store, key: str) -> ApiKeyRecord | None:
    """The active key record for ``key``; None when unknown, revoked or malformed."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(key)
    record = await store.find_api_key(digest)
    if record is None or record.revoked or not hmac.compare_digest(record.key_hash, digest):
        return None
    return record if record.role in _ROLES else None
