"""Who may call what: ``Authorization: Bearer <API key>``, checked against the store's keys.

Keys that verified are trusted for ``ServiceSettings.key_cache_seconds`` (5) without reading
the store again (``keys.KeyCache``): a key revoked meanwhile is refused after at most that long.
Every unknown, revoked or malformed key (or none) gets the same 401, so an answer tells an
attacker nothing about which keys exist; a valid key whose role may not do a thing gets 403.
With ``ServiceSettings.auth`` off (``magic-flow server --no-auth``) every call is allowed.
``/health``, ``/health/ready`` and ``/metrics`` need ``CanRead`` only when
``ServiceSettings.open_health`` is off (``create_app`` decides, so the OpenAPI document says it).
"""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from magicflow.service.keys import GRANTS, Permission, Role
from magicflow.service.state import service_of

_DESCRIPTION = "An API key made by `magic-flow keys create --role admin|operator|viewer`."
UNAUTHORIZED = "missing or invalid API key (send Authorization: Bearer <key>)"
_VERBS = {
    Permission.READ: "read",
    Permission.OPERATE: "start or control executions",
    Permission.ADMINISTER: "register or delete workflow definitions or manage webhooks",
}


def _unauthorized() -> HTTPException:
    return HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


async def _check(
    request: Request, credentials: HTTPAuthorizationCredentials | None, permission: Permission
) -> None:
    service = service_of(request)
    if not service.settings.auth:
        return
    if credentials is None:
        raise _unauthorized()
    record = await service.keys.authenticate(service.engine.store, credentials.credentials)
    if record is None:
        raise _unauthorized()
    if permission not in GRANTS[Role(record.role)]:
        raise HTTPException(403, f"the {record.role} role may not {_VERBS[permission]}")
    request.state.api_key = record


class _Require(HTTPBearer):
    """The bearer scheme (so the OpenAPI document says how to authenticate) that lets through
    the keys whose role grants ``permission``: one dependency per route, not two, since FastAPI
    spends more CPU resolving a dependency than the check itself takes."""

    def __init__(self, permission: Permission) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer", description=_DESCRIPTION)
        self.permission = permission

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        await _check(request, await super().__call__(request), self.permission)


CanRead = Depends(_Require(Permission.READ))
CanOperate = Depends(_Require(Permission.OPERATE))
CanAdminister = Depends(_Require(Permission.ADMINISTER))
