"""API keys of the HTTP service: made here, stored hashed, checked by ``service.auth``.

A key is ``mf_`` followed by 43 URL-safe characters (32 random bytes); the store keeps only
its sha256, so a stolen database yields no usable key. The key is shown once, when it is
created (``magic-flow keys create``). ``KeyCache`` keeps keys that verified for a few seconds,
so a request does not read the store. Roles nest: ``admin`` may do everything, ``operator``
may start, control and signal executions and read everything, ``viewer`` may only read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
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


async def _verify(store: Store, digest: str) -> ApiKeyRecord | None:
    """The active key record with this hash; None when unknown or revoked."""
    record = await store.find_api_key(digest)
    if record is None or record.revoked or not hmac.compare_digest(record.key_hash, digest):
        return None
    return record if record.role in _ROLES else None


class KeyCache:
    """Checks API keys against the store and remembers, for ``ttl`` seconds, those that verified.

    A key revoked in the store (``magic-flow keys revoke``, from any process) is refused by this
    service at most ``ttl`` seconds later. Refusals are never remembered, so a new key works at
    once and unknown keys cannot fill the cache; at most ``size`` keys are kept (the oldest
    goes first). ``ttl`` 0 reads the store on every request.
    """

    def __init__(
        self, ttl: float = 5.0, size: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._verified: dict[str, tuple[float, ApiKeyRecord]] = {}  # digest -> (until, record)

    async def authenticate(self, store: Store, key: str) -> ApiKeyRecord | None:
        """The active key record for ``key``; None when unknown, revoked or malformed."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        digest = hash_key(key)
        now = self.clock()
        cached = self._verified.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await _verify(store, digest)
        self._verified.pop(digest, None)
        if record is None or self.ttl <= 0:
            return record
        if len(self._verified) >= self.size:
            del self._verified[next(iter(self._verified))]
        self._verified[digest] = (now + self.ttl, record)
        return record
