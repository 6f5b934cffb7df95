"""Organisation flag overrides: stored in `flag_overrides`, applied to the flag provider.

The provider lives in each process's memory, so every process loads the table at start
and refreshes it periodically (`refresher` in the API, `refresh_if_stale` before tasks in
workers); the process that changes an override applies it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vocalis.core.db import Database, utcnow
from vocalis.core.errors import NotFound, ValidationFailed
from vocalis.flags.models import FlagOverride
from vocalis.flags.registry import FLAGS, Flag
from vocalis.flags.service import flag_value, set_org_overrides

log = structlog.get_logger(__name__)

_last_refresh = 0.0


@dataclass(frozen=True)
class FlagState:
    """A flag as one organisation sees it."""

    flag: Flag[Any]
    deployment: Any
    override: Any
    effective: Any


def coerce(flag: Flag[Any], value: Any) -> Any:
    """`value` as the flag's type, or ValidationFailed."""
    kind = flag.kind
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ValidationFailed(
            f"Flag {flag.key} takes a {kind.__name__}, not {type(value).__name__}."
        )
    return kind(value)


def _flag(key: str) -> Flag[Any]:
    flag = FLAGS.get(key)
    if flag is None:
        raise NotFound(f"No feature flag {key!r}.")
    return flag


async def apply_all(session: AsyncSession) -> int:
    """Load every override into the flag provider; how many there are."""
    global _last_refresh
    rows = (await session.scalars(select(FlagOverride))).all()
    url = getattr(session.bind, "url", None)
    source = url.render_as_string(hide_password=True) if url is not None else ""
    set_org_overrides([(r.org_id, r.key, r.value) for r in rows if r.key in FLAGS], source)
    _last_refresh = time.monotonic()
    return len(rows)


async def refresh(database: Database) -> int:
    """Reload the overrides from the database."""
    async with database.session() as session:
        return await apply_all(session)


async def refresh_if_stale(database: Database, max_age_s: float = 30.0) -> None:
    """Reload the overrides when the last load is older than `max_age_s`."""
    if time.monotonic() - _last_refresh >= max_age_s:
        try:
            await refresh(database)
        except Exception as exc:  # stale flags beat a failed task
            log.warning("flag_refresh_failed", error=f"{type(exc).__name__}: {exc}")


async def refresher(database: Database, interval_s: float = 30.0) -> None:
    """Reload the overrides forever (run as a background task of the API)."""
    while True:
        with contextlib.suppress(Exception):
            await refresh(database)
        await asyncio.sleep(interval_s)


async def list_flags(
    *, session: AsyncSession, org_id: str, deployment: dict[str, Any]
) -> list[FlagState]:
    """Every flag with its default, deployment value, this organisation's override and value."""
    await apply_all(session)
    rows = await session.scalars(select(FlagOverride).where(FlagOverride.org_id == org_id))
    overrides = {r.key: r.value for r in rows.all()}
    return [
        FlagState(
            flag=flag,
            deployment=deployment.get(key),
            override=overrides.get(key),
            effective=flag_value(flag, org_id),
        )
        for key, flag in sorted(FLAGS.items())
    ]


async def set_override(
    *, session: AsyncSession, org_id: str, key: str, value: Any, actor: str | None
) -> FlagOverride:
    """Set this organisation's value of a flag."""
    flag = _flag(key)
    typed = coerce(flag, value)
    row = await session.get(FlagOverride, (org_id, key))
    if row is None:
        row = FlagOverride(org_id=org_id, key=key, value=typed, updated_by=actor)
        session.add(row)
    else:
        row.value = typed
        row.updated_by = actor
        row.updated_at = utcnow()
    await session.commit()
    await apply_all(session)
    return row


async def delete_override(*, session: AsyncSession, org_id: str, key: str) -> None:
    """Remove this organisation's override; the deployment value or default applies again."""
    _flag(key)
    row = await session.get(FlagOverride, (org_id, key))
    if row is None:
        raise NotFound(f"No override of {key!r} for this organisation.")
    await session.delete(row)
    await session.commit()
    await apply_all(session)
