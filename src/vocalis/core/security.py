"""Authentication and authorisation: the scope a route needs lives in its signature.

async def get_org(principal: Annotated[Principal, Scoped("org:read")]): ...

The keys themselves are the organisations' business: the app factory puts an `ApiKeyStore`
(`orgs.keys.OrgApiKeys`, behind a `CachedKeyStore`) on `app.state.api_keys`, and the rate
limiter it puts on `app.state.rate_limiter` knows which organisations are limited.

The principal cache keeps a live key's grant in process memory for at most
`api_key_cache_ttl_s` (≤ 1 s): a key revoked in any process, or by hand in the database, is
refused within that time; one revoked through this process is refused at once. Every
request still goes through the rate limiter, and is still logged, traced and counted.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, get_type_hints

import structlog
from fastapi import Request, Security
from fastapi.security import HTTPBearer, SecurityScopes
from starlette.requests import HTTPConnection
from starlette.types import Scope

from vocalis.core import errors
from vocalis.core.auth_throttle import AuthThrottle
from vocalis.core.deps import get_backends
from vocalis.core.metrics import AUTH_FAILURES, RATE_LIMITED
from vocalis.core.ratelimit import GuardTripped, RateLimiter, route_class
from vocalis.core.redis_keys import API_KEY_LAST_USED
from vocalis.core.scopes import SCOPES, Role
from vocalis.core.tracing import tag_request_span


@dataclass(frozen=True)
class KeyGrant:
    """What a live API key grants: its organisation, role and scopes."""

    key_id: str
    org_id: str
    role: Role
    scopes: frozenset[str]
    created_by: str | None = None
    expires_at: datetime | None = None


class ApiKeyStore(Protocol):
    """Finds live API keys and records their use."""

    async def active_key(self, plaintext: str) -> KeyGrant | None:
        """The live (not revoked, not expired) key matching `plaintext`, or None."""
        ...

    async def touch(self, key_id: str) -> None:
        """Record that the key was used now."""
        ...


class CachedKeyStore:
    """An `ApiKeyStore` remembering live grants for `ttl_s` seconds (the principal cache).

    Entries are keyed by a digest of the key, never the key itself; they age from the moment
    the lookup started, so a revocation committed during it is seen `ttl_s` later at most.
    Unknown keys are not remembered (a new key works at once); an entry never outlives its
    key's expiry. `forget(key_id)` drops a key this process revoked.
    """

    def __init__(self, inner: ApiKeyStore, *, ttl_s: float, max_entries: int = 10_000) -> None:
        self.inner = inner
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._grants: dict[bytes, tuple[KeyGrant, float]] = {}

    async def active_key(self, plaintext: str) -> KeyGrant | None:
        """The live key matching `plaintext`, from memory while its entry is fresh."""
        digest = hashlib.sha256(plaintext.encode()).digest()
        now = time.monotonic()
        cached = self._grants.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        grant = await self.inner.active_key(plaintext)
        if grant is None:
            self._grants.pop(digest, None)
            return None
        if self.ttl_s > 0:
            until = now + self.ttl_s
            if grant.expires_at is not None:
                until = min(until, now + (grant.expires_at.timestamp() - time.time()))
            if len(self._grants) >= self.max_entries:
                self._grants.clear()
            self._grants[digest] = (grant, until)
        return grant

    def cached(self, plaintext: str) -> KeyGrant | None:
        """The live key matching `plaintext` when its entry is fresh; no lookup."""
        cached = self._grants.get(hashlib.sha256(plaintext.encode()).digest())
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return None

    async def touch(self, key_id: str) -> None:
        """Record that the key was used now."""
        await self.inner.touch(key_id)

    def forget(self, key_id: str) -> None:
        """Drop the cached grant of `key_id` (revoked here: refused from the next request)."""
        for digest, (grant, _) in list(self._grants.items()):
            if grant.key_id == key_id:
                self._grants.pop(digest, None)


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


def client_address(connection: HTTPConnection) -> str | None:
    """The caller's address (the proxy's `X-Forwarded-For` when uvicorn trusts it)."""
    return connection.client.host if connection.client is not None else None


def _api_keys(request: Request) -> ApiKeyStore:
    keys: ApiKeyStore = request.app.state.api_keys
    return keys


async def _rate_limit(
    request: Request,
    principal: Principal,
    throttle: AuthThrottle | None = None,
    address: str | None = None,
) -> None:
    """Take the request's tokens; with `throttle`, check the address's failed
    authentications in the same Redis round trip (first: a throttled address takes none)."""
    limiter: RateLimiter = request.app.state.rate_limiter
    if not limiter.applies_to(principal.org_id):
        if throttle is not None:
            await throttle.check(address)
        return
    route = request.scope.get("route")
    rate_class = route_class(route, request.method) if limiter.classes else None
    guard = throttle.guard(address) if throttle is not None else None
    try:
        decision = await limiter.hit(principal.key_id, rate_class=rate_class, guard=guard)
    except GuardTripped as tripped:
        assert throttle is not None
        raise throttle.tripped(tripped.ttl_s) from None
    request.state.rate_limit_headers = decision.headers()
    if not decision.allowed:
        RATE_LIMITED.inc()
        bucket = f"the `{decision.rate_class}` class" if decision.rate_class else "the key"
        raise errors.RateLimited(
            f"Rate limit of {bucket} exceeded; retry in {decision.retry_after_s} s.",
            headers=decision.headers(),
        )


TOUCH_EVERY_S = 60.0
_touch_due: dict[str, float] = {}  # key id -> when this process next asks Redis


async def _mark_used(request: Request, key_id: str) -> None:
    """Write `last_used_at` at most once a minute per key (across processes, via Redis)."""
    now = time.monotonic()
    if _touch_due.get(key_id, 0.0) > now:
        return
    if len(_touch_due) > 10_000:
        _touch_due.clear()
    _touch_due[key_id] = now + TOUCH_EVERY_S
    backends = get_backends(request)
    key = API_KEY_LAST_USED.format(key_id=key_id)
    if not await backends.redis.set(key, b"1", ex=int(TOUCH_EVERY_S), nx=True):
        return
    await _api_keys(request).touch(key_id)


async def _authenticate(
    security_scopes: SecurityScopes,
    request: Request,
    token: str | None,
) -> Principal:
    """Resolve the bearer key, check its scopes, apply the rate limit."""
    if not token:
        raise _unauthorised(
            errors.AUTH_MISSING, "missing", "Send `Authorization: Bearer <api key>`."
        )
    throttle: AuthThrottle | None = getattr(request.app.state, "auth_throttle", None)
    address = client_address(request)
    keys = _api_keys(request)
    cached = getattr(keys, "cached", None)
    # A key the principal cache holds needs no lookup: the throttle is then checked in the
    # rate limiter's round trip, before any token is taken (one Redis call, not two).
    key = cached(token) if cached is not None else None
    deferred = throttle if key is not None else None
    if key is None:
        if throttle is not None:
            await throttle.check(address)
        key = await keys.active_key(token)
    if key is None:
        if throttle is not None:
            await throttle.failed(address)
        raise _unauthorised(
            errors.AUTH_INVALID, "invalid", "The API key is invalid, revoked or expired."
        )
    principal = Principal(
        org_id=key.org_id,
        key_id=key.key_id,
        role=key.role,
        scopes=key.scopes,
        user_id=key.created_by,
    )
    request.state.principal = principal
    structlog.contextvars.bind_contextvars(org_id=principal.org_id)
    tag_request_span(org_id=principal.org_id)
    missing = [s for s in security_scopes.scopes if not principal.has(s)]
    if missing:
        if deferred is not None:
            await deferred.check(address)  # a throttled address hears that first
        raise errors.PermissionDenied(f"This key lacks the scope(s): {', '.join(missing)}.")
    await _rate_limit(request, principal, deferred, address)
    await _mark_used(request, key.key_id)
    return principal


def bearer_token(scope: Scope) -> str | None:
    """What `HTTPBearer(auto_error=False)` reads, without building `request.headers` and a
    credentials model for it: the first `Authorization` header's credentials when its
    scheme is `Bearer` (any case), else None."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, param = value.decode("latin-1").partition(" ")
            token = param.strip()
            return token if scheme and token and scheme.lower() == "bearer" else None
    return None


class ApiKeyAuthentication(HTTPBearer):
    """The API key scheme (`Authorization: Bearer vk_…`) and the authentication it opens,
    as one dependency: FastAPI resolves one per request where it resolved two (the
    scheme's reading of the header, then the authentication depending on it), and the
    OpenAPI document shows the same `HTTPBearer` scheme with each operation's scopes."""

    async def __call__(  # type: ignore[override]
        self, request: Request, security_scopes: SecurityScopes
    ) -> Principal:
        """The caller, authenticated, holding `security_scopes`, within its rate limit."""
        return await _authenticate(security_scopes, request, bearer_token(request.scope))


# FastAPI reads a dependency object's parameter types from its signature without this
# module's globals: it gets them evaluated (this module's annotations are strings).
ApiKeyAuthentication.__call__.__annotations__ = get_type_hints(ApiKeyAuthentication.__call__)

authenticate = ApiKeyAuthentication(
    scheme_name="HTTPBearer", auto_error=False, description="An API key `vk_…`."
)


def Scoped(*scopes: str) -> Any:
    """A dependency marker: the caller must hold every one of `scopes`."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scopes {unknown}")
    return Security(authenticate, scopes=list(scopes))
