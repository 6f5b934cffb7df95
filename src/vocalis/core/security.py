"""Authentication and authorisation: the scope a route needs lives in its signature.

async def get_org(principal: Annotated[Principal, Scoped("org:read")]): ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from vocalis.core import errors
from vocalis.core.deps import get_backends
from vocalis.core.metrics import AUTH_FAILURES, RATE_LIMITED
from vocalis.core.ratelimit import RateLimiter
from vocalis.core.redis_keys import API_KEY_LAST_USED
from vocalis.core.scopes import SCOPES, Role
from vocalis.flags.registry import RATE_LIMITING
from vocalis.flags.service import flag_value
from vocalis.orgs import service as orgs

_bearer = HTTPBearer(auto_error=False, description="An API key `vk_…`.")


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key of one organisation, with its scopes."""

    org_id: str
    key_id: str
    role: Role
    scopes: frozenset[str]
    user_id: str | None = None

    def has(self, scope: str) -> bool:
        """Whether the caller holds `scope`."""
        return scope in self.scopes


def _unauthorised(code: str, reason: str, detail: str) -> errors.AuthError:
    AUTH_FAILURES.labels(reason=reason).inc()
    return errors.AuthError(detail, code=code, headers={"WWW-Authenticate": "Bearer"})


async def _rate_limit(request: Request, principal: Principal) -> None:
    if not flag_value(RATE_LIMITING, principal.org_id):
        return
    limiter: RateLimiter = request.app.state.rate_limiter
    decision = await limiter.hit(principal.key_id)
    request.state.rate_limit_headers = decision.headers()
    if not decision.allowed:
        RATE_LIMITED.inc()
        raise errors.RateLimited(
            f"Rate limit exceeded; retry in {decision.retry_after_s} s.",
            headers=decision.headers(),
        )


async def _mark_used(request: Request, key_id: str) -> None:
    """Write `last_used_at` at most once a minute per key."""
    backends = get_backends(request)
    if not await backends.redis.set(API_KEY_LAST_USED.format(key_id=key_id), b"1", ex=60, nx=True):
        return
    async with backends.database.session() as session:
        await orgs.touch_last_used(session=session, key_id=key_id)


async def authenticate(
    security_scopes: SecurityScopes,
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Security(_bearer),
) -> Principal:
    """Resolve the bearer key, check its scopes, apply the rate limit."""
    if credentials is None or not credentials.credentials:
        raise _unauthorised(
            errors.AUTH_MISSING, "missing", "Send `Authorization: Bearer <api key>`."
        )
    backends = get_backends(request)
    async with backends.database.session() as session:
        key = await orgs.find_active_key(session=session, plaintext=credentials.credentials)
    if key is None:
        raise _unauthorised(
            errors.AUTH_INVALID, "invalid", "The API key is invalid, revoked or expired."
        )
    principal = Principal(
        org_id=key.org_id,
        key_id=key.id,
        role=Role(key.role),
        scopes=frozenset(key.scopes),
        user_id=key.created_by,
    )
    request.state.principal = principal
    structlog.contextvars.bind_contextvars(org_id=principal.org_id)
    missing = [s for s in security_scopes.scopes if not principal.has(s)]
    if missing:
        raise errors.PermissionDenied(f"This key lacks the scope(s): {', '.join(missing)}.")
    await _rate_limit(request, principal)
    await _mark_used(request, key.id)
    return principal


def Scoped(*scopes: str) -> Any:
    """A dependency marker: the caller must hold every one of `scopes`."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scopes {unknown}")
    return Security(authenticate, scopes=list(scopes))
