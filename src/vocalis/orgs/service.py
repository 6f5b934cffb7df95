"""Organisations and API keys: plain functions over an explicit session."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from vocalis.core.db import Database, RowQuery, utcnow
from vocalis.core.errors import NotFound, ValidationFailed
from vocalis.core.scopes import Role, scopes_for
from vocalis.orgs.models import ApiKey, Membership, Organization, User

KEY_PREFIX = "vk_"
_PUBLIC_LEN = 12  # characters after `vk_` used to look the key up
_SECRET_BYTES = 32


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key: the only moment its plaintext exists."""

    key: ApiKey
    plaintext: str


def hash_secret(plaintext: str) -> str:
    """SHA-256 of a key; keys are 256-bit random, so a fast hash is the right tool."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def split_key(plaintext: str) -> str | None:
    """The lookup prefix of a well-formed key, or None."""
    if not plaintext.startswith(KEY_PREFIX) or len(plaintext) < len(KEY_PREFIX) + _PUBLIC_LEN + 20:
        return None
    return plaintext[: len(KEY_PREFIX) + _PUBLIC_LEN]


async def create_org(
    *, session: AsyncSession, name: str, owner_email: str, owner_name: str = ""
) -> tuple[Organization, User]:
    """Create an organisation with its owner (reusing the user if the email exists)."""
    org = Organization(name=name)
    user = (await session.scalars(select(User).where(User.email == owner_email))).first()
    if user is None:
        user = User(email=owner_email, name=owner_name)
        session.add(user)
    session.add(org)
    await session.flush()
    session.add(Membership(org_id=org.id, user_id=user.id, role=Role.OWNER.value))
    await session.flush()
    return org, user


async def get_org(*, session: AsyncSession, org_id: str) -> Organization:
    """The organisation, or NotFound."""
    org = await session.get(Organization, org_id)
    if org is None:
        raise NotFound("Organisation not found.")
    return org


class OrgRow(NamedTuple):
    """The organisation's public fields, as `GET /v1/org` serves them."""

    id: str
    name: str
    retention_days: int | None
    created_at: datetime


# Built once: each call binds `org_id` (compiled once per dialect: `RowQuery`).
_ORG_READ = RowQuery(
    select(
        Organization.id, Organization.name, Organization.retention_days, Organization.created_at
    ).where(Organization.id == bindparam("org_id")),
    OrgRow,
)


async def read_org(database: Database, org_id: str) -> OrgRow:
    """The organisation's public fields, or NotFound: one read in one hop, no ORM session
    (`GET /v1/org` serves it on every call)."""
    row = await database.first(_ORG_READ, {"org_id": org_id})
    if row is None:
        raise NotFound("Organisation not found.")
    return row


async def update_org(
    *, session: AsyncSession, org_id: str, name: str | None, retention_days: int | None
) -> Organization:
    """Rename an organisation or change its retention."""
    org = await get_org(session=session, org_id=org_id)
    if name is not None:
        org.name = name
    if retention_days is not None:
        org.retention_days = retention_days
    await session.flush()
    return org


async def create_api_key(
    *,
    session: AsyncSession,
    org_id: str,
    name: str,
    role: Role,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    created_by: str | None = None,
) -> IssuedKey:
    """Issue a key; its plaintext is returned once and only its hash is stored."""
    try:
        granted = scopes_for(role, scopes)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from exc
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationFailed("expires_at must be in the future.")
    public = secrets.token_urlsafe(16).replace("-", "a").replace("_", "b")[:_PUBLIC_LEN]
    plaintext = f"{KEY_PREFIX}{public}{secrets.token_urlsafe(_SECRET_BYTES)}"
    key = ApiKey(
        org_id=org_id,
        name=name,
        prefix=f"{KEY_PREFIX}{public}",
        secret_hash=hash_secret(plaintext),
        role=role.value,
        scopes=granted,
        expires_at=expires_at,
        created_by=created_by,
    )
    session.add(key)
    await session.flush()
    return IssuedKey(key=key, plaintext=plaintext)


async def find_active_key(*, session: AsyncSession, plaintext: str) -> ApiKey | None:
    """The live key matching `plaintext` (not revoked, not expired), or None."""
    prefix = split_key(plaintext)
    if prefix is None:
        return None
    key = (await session.scalars(select(ApiKey).where(ApiKey.prefix == prefix))).first()
    if key is None or not hmac.compare_digest(key.secret_hash, hash_secret(plaintext)):
        return None
    if key.revoked_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= utcnow():
        return None
    return key


async def list_api_keys(
    *, session: AsyncSession, org_id: str, limit: int, after: str | None
) -> list[ApiKey]:
    """The organisation's keys, newest first, after a cursor id."""
    query = select(ApiKey).where(ApiKey.org_id == org_id).order_by(ApiKey.id.desc())
    if after:
        query = query.where(ApiKey.id < after)
    return list((await session.scalars(query.limit(limit))).all())


async def revoke_api_key(*, session: AsyncSession, org_id: str, key_id: str) -> ApiKey:
    """Revoke a key of this organisation (idempotent)."""
    key = (
        await session.scalars(select(ApiKey).where(ApiKey.id == key_id, ApiKey.org_id == org_id))
    ).first()
    if key is None:
        raise NotFound("API key not found.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
    return key


async def touch_last_used(*, session: AsyncSession, key_id: str) -> None:
    """Record that a key was used now."""
    key = await session.get(ApiKey, key_id)
    if key is not None:
        key.last_used_at = utcnow()


async def key_is_live(*, session: AsyncSession, key_id: str) -> bool:
    """Whether the key exists and is neither revoked nor expired (a client secret minted
    by a key lives only as long as the key)."""
    key = await session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return False
    return key.expires_at is None or key.expires_at > utcnow()
