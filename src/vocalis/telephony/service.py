"""Phone numbers: the logic behind `/v1/phone-numbers`, and the lookups carriers need.

Every change is written to the audit log (`audit` log lines: action, actor key, number id);
the number itself is PII and is redacted there like everywhere else in the logs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vocalis.agents import service as agents
from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.core.errors import NotFound, ValidationFailed
from vocalis.core.security import Principal
from vocalis.telephony.errors import NumberTaken
from vocalis.telephony.models import PhoneNumber
from vocalis.telephony.schemas import check_credentials

log = structlog.get_logger(__name__)


def audit(action: str, principal: Principal, number: PhoneNumber) -> None:
    """One audit-log line for a change to a phone number."""
    log.info(
        "audit",
        action=action,
        resource="phone_number",
        resource_id=number.id,
        org_id=principal.org_id,
        actor_key_id=principal.key_id,
        agent_id=number.agent_id,
        provider=number.provider,
    )


async def _check_agent(session: AsyncSession, org_id: str, agent_id: str) -> None:
    await agents.get_agent(session=session, org_id=org_id, agent_id=agent_id)


async def create_number(
    *,
    session: AsyncSession,
    backends: Backends,
    principal: Principal,
    number: str,
    provider: str,
    agent_id: str,
    credentials: dict[str, str],
) -> PhoneNumber:
    """Register a number for an agent of the organisation (409 if already registered)."""
    await _check_agent(session, principal.org_id, agent_id)
    taken = await session.scalar(select(PhoneNumber.id).where(PhoneNumber.number == number))
    if taken is not None:
        raise NumberTaken(f"{number} is already registered.")
    box = await backends.secret_box.get()
    row = PhoneNumber(
        org_id=principal.org_id,
        number=number,
        provider=provider,
        agent_id=agent_id,
        credentials_encrypted=box.encrypt(json.dumps(credentials)),
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise NumberTaken(f"{number} is already registered.") from None
    audit("phone_number.created", principal, row)
    return row


async def get_number(*, session: AsyncSession, org_id: str, number_id: str) -> PhoneNumber:
    """One number of the organisation, or NotFound."""
    row = await session.scalar(
        select(PhoneNumber).where(PhoneNumber.id == number_id, PhoneNumber.org_id == org_id)
    )
    if row is None:
        raise NotFound(f"No phone number {number_id}.")
    return row


async def list_numbers(
    *, session: AsyncSession, org_id: str, limit: int, before: tuple[datetime, str] | None
) -> Sequence[PhoneNumber]:
    """The organisation's numbers, newest first."""
    query = select(PhoneNumber).where(PhoneNumber.org_id == org_id)
    if before is not None:
        query = query.where(tuple_(PhoneNumber.created_at, PhoneNumber.id) < before)
    query = query.order_by(PhoneNumber.created_at.desc(), PhoneNumber.id.desc())
    return (await session.scalars(query.limit(limit))).all()


async def update_number(
    *,
    session: AsyncSession,
    backends: Backends,
    principal: Principal,
    number_id: str,
    agent_id: str | None,
    credentials: dict[str, str] | None,
) -> PhoneNumber:
    """Re-point a number at another agent, or replace its credentials."""
    row = await get_number(session=session, org_id=principal.org_id, number_id=number_id)
    if agent_id is not None:
        await _check_agent(session, principal.org_id, agent_id)
        row.agent_id = agent_id
    if credentials is not None:
        try:
            check_credentials(row.provider, credentials)
        except ValueError as exc:
            raise ValidationFailed(str(exc)) from None
        box = await backends.secret_box.get()
        row.credentials_encrypted = box.encrypt(json.dumps(credentials))
    row.updated_at = utcnow()
    await session.flush()
    audit("phone_number.updated", principal, row)
    return row


async def delete_number(*, session: AsyncSession, principal: Principal, number_id: str) -> None:
    """Remove a number (calls to it are refused from then on)."""
    row = await get_number(session=session, org_id=principal.org_id, number_id=number_id)
    await session.delete(row)
    audit("phone_number.deleted", principal, row)


async def find_by_number(backends: Backends, *, number: str, provider: str) -> PhoneNumber | None:
    """The number a carrier webhook names (any organisation), or None."""
    async with backends.database.session() as session:
        row = await session.scalar(
            select(PhoneNumber).where(
                PhoneNumber.number == number, PhoneNumber.provider == provider
            )
        )
        if row is not None:
            session.expunge(row)
        return row


async def find_by_id(backends: Backends, *, number_id: str) -> PhoneNumber | None:
    """A number by id (any organisation), or None."""
    async with backends.database.session() as session:
        row = await session.get(PhoneNumber, number_id)
        if row is not None:
            session.expunge(row)
        return row


async def credentials(backends: Backends, number: PhoneNumber) -> dict[str, Any]:
    """The number's decrypted carrier credentials."""
    box = await backends.secret_box.get()
    value: dict[str, Any] = json.loads(box.decrypt(number.credentials_encrypted))
    return value
