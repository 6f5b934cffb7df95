"""Short-lived client secrets: a browser opens `WS /v1/realtime` without holding an API key.

`POST /v1/realtime/client_secrets` (OpenAI's name and shapes) mints a secret `ek_…` for
the caller's organisation. Only its SHA-256 is stored, in Redis, with the secret's lifetime
as TTL, so an expired secret is simply gone. The secret grants one thing: opening realtime
sessions (the `conversations:write` scope, if the minting key had it), optionally pinned to
one agent and starting from the session configuration given when it was minted. It can
open several sessions until it expires.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from vocalis.core.redis_keys import declare
from vocalis.core.scopes import Role
from vocalis.core.security import Principal
from vocalis.realtime.protocol import Session, SessionPatch

PREFIX = "ek_"
SCOPE = "conversations:write"
MIN_TTL_S, MAX_TTL_S = 10, 7200

CLIENT_SECRET = declare(
    "realtime_client_secret",
    "vocalis:rt:secret:{digest}",
    "JSON grant of a realtime client secret (organisation, minting key, scopes, pinned "
    "agent, initial session configuration), under the SHA-256 of the secret.",
    "The secret's lifetime: 10 s to 2 h (default `VOCALIS_VOICE_CLIENT_SECRET_TTL_S`).",
)


class ExpiresAfter(BaseModel):
    """When the secret expires, counted from its creation."""

    model_config = ConfigDict(extra="forbid")

    anchor: Literal["created_at"] = "created_at"
    seconds: int = Field(ge=MIN_TTL_S, le=MAX_TTL_S)


class ClientSecretSession(SessionPatch):
    """The session the secret opens: the agent (`model`) and its initial configuration."""

    model: str | None = Field(default=None, max_length=64, description="An agent id.")


class ClientSecretCreateRequest(BaseModel):
    """`POST /v1/realtime/client_secrets`."""

    model_config = ConfigDict(extra="forbid")

    expires_after: ExpiresAfter | None = None
    session: ClientSecretSession | None = None


class ClientSecretCreateResponse(BaseModel):
    """A new client secret (OpenAI's `ClientSecretCreateResponse`)."""

    value: str = Field(description="The secret: a Bearer value or `?token=` for the WebSocket.")
    expires_at: int = Field(description="Expiry, in seconds since the epoch.")
    session: Session


@dataclass(frozen=True)
class ClientSecretGrant:
    """What a client secret allows."""

    org_id: str
    key_id: str
    role: str
    scopes: list[str]
    user_id: str | None
    expires_at: int
    agent_id: str | None = None
    session: dict[str, Any] = field(default_factory=dict)

    def principal(self) -> Principal:
        """The caller a secret's holder acts as."""
        return Principal(
            org_id=self.org_id,
            key_id=self.key_id,
            role=Role(self.role),
            scopes=frozenset(self.scopes),
            user_id=self.user_id,
        )

    @property
    def declares_input_format(self) -> bool:
        """Whether the secret's session fixes the input audio format (binary frames allowed)."""
        audio = self.session.get("audio") or {}
        return "format" in (audio.get("input") or {})


def digest(value: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(value.encode()).hexdigest()


def is_client_secret(token: str) -> bool:
    """Whether a bearer value looks like a client secret rather than an API key."""
    return token.startswith(PREFIX)


async def mint(
    redis: aioredis.Redis,
    principal: Principal,
    *,
    ttl_s: int,
    agent_id: str | None,
    session: dict[str, Any],
) -> tuple[str, ClientSecretGrant]:
    """Create a secret for `principal`; returns its value (shown once) and its grant."""
    value = PREFIX + secrets.token_urlsafe(32)
    grant = ClientSecretGrant(
        org_id=principal.org_id,
        key_id=principal.key_id,
        role=principal.role.value,
        scopes=[SCOPE] if principal.has(SCOPE) else [],
        user_id=principal.user_id,
        expires_at=int(time.time()) + ttl_s,
        agent_id=agent_id,
        session=session,
    )
    key = CLIENT_SECRET.format(digest=digest(value))
    await redis.set(key, json.dumps(asdict(grant)).encode(), ex=ttl_s)
    return value, grant


async def redeem(redis: aioredis.Redis, value: str) -> ClientSecretGrant | None:
    """The grant of a live secret, or None (unknown or expired)."""
    raw = await redis.get(CLIENT_SECRET.format(digest=digest(value)))
    if raw is None:
        return None
    grant = ClientSecretGrant(**json.loads(raw))
    if time.time() > grant.expires_at:  # belt and braces: Redis expiry is exact anyway
        return None
    return grant


async def forget(redis: aioredis.Redis, value: str) -> None:
    """Delete a secret (its key was revoked: it is never accepted again)."""
    await redis.delete(CLIENT_SECRET.format(digest=digest(value)))
