"""Dead letters: recording a failed task, listing, replaying and discarding it.

A task lands here when its retries are exhausted or it failed with an error that is not
transient. Its arguments are stored redacted (`redact_value`); tasks take ids, never
secrets, so the redacted arguments normally equal the real ones and the task can be
replayed. When redaction did change them, replaying would run the task with placeholders,
so such a dead letter is marked not replayable.

A domain can prepare a replay (a webhook delivery is reset to pending first) by
registering a hook with `on_replay(task_name)`.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from vocalis.core.db import Database, utcnow
from vocalis.core.errors import BackendUnavailable, Conflict, NotFound
from vocalis.core.metrics import DEAD_LETTERS
from vocalis.core.redaction import redact, redact_value
from vocalis.settings import Settings
from vocalis.workers import publish
from vocalis.workers.models import DeadLetter, DeadLetterStatus

log = structlog.get_logger(__name__)

MAX_ERROR_CHARS = 4000
ReplayHook = Callable[[AsyncSession, DeadLetter], Awaitable[None]]
REPLAY_HOOKS: dict[str, ReplayHook] = {}
# Modules that register replay hooks; imported before a replay so the hooks exist in any
# process (the API may never have imported a task module).
REPLAY_HOOK_MODULES = ("vocalis.webhooks.service",)


def on_replay(task_name: str) -> Callable[[ReplayHook], ReplayHook]:
    """Register a hook that prepares the replay of a dead letter of `task_name`."""

    def register(hook: ReplayHook) -> ReplayHook:
        REPLAY_HOOKS[task_name] = hook
        return hook

    return register


async def record(
    database: Database,
    *,
    task_name: str,
    task_id: str,
    queue: str,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    org_id: str | None,
    error: BaseException,
    transient: bool,
    attempts: int,
    first_failed_at: datetime,
    last_failed_at: datetime,
) -> DeadLetter:
    """Store one failed task (arguments redacted) and count it."""
    safe_args = redact_value(list(args))
    safe_kwargs = redact_value(dict(kwargs))
    letter = DeadLetter(
        org_id=org_id,
        task_name=task_name,
        task_id=task_id,
        queue=queue,
        args=safe_args,
        kwargs=safe_kwargs,
        replayable=safe_args == list(args) and safe_kwargs == dict(kwargs),
        error_type=type(error).__name__,
        error=redact(str(error) or type(error).__name__)[:MAX_ERROR_CHARS],
        transient=transient,
        attempts=attempts,
        first_failed_at=first_failed_at,
        last_failed_at=last_failed_at,
    )
    async with database.session() as session:
        session.add(letter)
    DEAD_LETTERS.labels(task=task_name).inc()
    log.error(
        "task_dead_lettered",
        task=task_name,
        task_id=task_id,
        dead_letter_id=letter.id,
        attempts=attempts,
        error_type=letter.error_type,
    )
    return letter


def _visible(org_id: str) -> Any:
    # System tasks (no organisation) are visible to every organisation's operators: they
    # carry no tenant data. An organisation's failures are visible to it alone.
    return or_(DeadLetter.org_id == org_id, DeadLetter.org_id.is_(None))


async def list_dead_letters(
    *,
    session: AsyncSession,
    org_id: str,
    limit: int,
    status: str | None = None,
    task_name: str | None = None,
    before: tuple[datetime, str] | None = None,
) -> list[DeadLetter]:
    """Dead letters visible to an organisation, newest first."""
    query = select(DeadLetter).where(_visible(org_id))
    if status:
        query = query.where(DeadLetter.status == status)
    if task_name:
        query = query.where(DeadLetter.task_name == task_name)
    if before is not None:
        query = query.where(tuple_(DeadLetter.created_at, DeadLetter.id) < before)
    query = query.order_by(DeadLetter.created_at.desc(), DeadLetter.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def get_dead_letter(*, session: AsyncSession, org_id: str, letter_id: str) -> DeadLetter:
    """One visible dead letter, or NotFound."""
    letter = await session.scalar(
        select(DeadLetter).where(DeadLetter.id == letter_id, _visible(org_id))
    )
    if letter is None:
        raise NotFound(f"No dead letter {letter_id}.")
    return letter


def _require_open(letter: DeadLetter) -> None:
    if letter.status != DeadLetterStatus.OPEN:
        raise Conflict(f"Dead letter {letter.id} is already {letter.status}.")


async def replay(
    *,
    session: AsyncSession,
    settings: Settings,
    org_id: str,
    letter_id: str,
    actor: str | None,
) -> DeadLetter:
    """Enqueue the task again with its arguments and mark the dead letter replayed."""
    letter = await get_dead_letter(session=session, org_id=org_id, letter_id=letter_id)
    _require_open(letter)
    if not letter.replayable:
        raise Conflict(
            "Its arguments were redacted when it was stored, so it cannot be replayed as it was."
        )
    for module in REPLAY_HOOK_MODULES:
        importlib.import_module(module)
    hook = REPLAY_HOOKS.get(letter.task_name)
    if hook is not None:
        await hook(session, letter)
    letter.status = DeadLetterStatus.REPLAYED
    letter.replay_count += 1
    letter.replayed_at = utcnow()
    letter.resolved_by = actor
    # Commit before publishing: a worker picking the task up at once must see the reset.
    await session.commit()
    task_id = await publish.enqueue(settings, letter.task_name, letter.args, letter.kwargs)
    if task_id is None:
        letter.status = DeadLetterStatus.OPEN
        letter.replayed_at = None
        await session.commit()
        raise BackendUnavailable("The task broker is unreachable; the dead letter stays open.")
    letter.replay_task_id = task_id
    return letter


async def discard(
    *, session: AsyncSession, org_id: str, letter_id: str, actor: str | None
) -> DeadLetter:
    """Mark a dead letter as dealt with, without running it."""
    letter = await get_dead_letter(session=session, org_id=org_id, letter_id=letter_id)
    _require_open(letter)
    letter.status = DeadLetterStatus.DISCARDED
    letter.discarded_at = utcnow()
    letter.resolved_by = actor
    return letter
