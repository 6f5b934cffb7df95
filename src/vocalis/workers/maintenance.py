"""Periodic housekeeping: data retention and the stuck-document sweeper.

Retention deletes, for every organisation with `retention_days` set, the conversations
(with their recordings and messages) and the messages created before the cutoff. The
document store holds `created_at` as ISO-8601 strings in UTC, which sort like the times
they spell, so `$lt` on the cutoff's ISO string selects exactly the older documents.

Documents stuck in `processing` belong to the knowledge domain, so the sweeper only keeps
a registry: knowledge registers a function with `register_stuck_document_sweeper`, and
the periodic job calls every registered function with the cutoff.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, select

from vocalis.core import object_keys
from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.orgs.models import Organization
from vocalis.workers.models import DeadLetter, DeadLetterStatus
from vocalis.workers.retry import TransientError

log = structlog.get_logger(__name__)

CONVERSATIONS = "conversations"
MESSAGES = "messages"
BATCH = 200


@dataclass
class RetentionReport:
    """What one retention run deleted."""

    conversations: int = 0
    messages: int = 0
    recordings: int = 0
    failed_orgs: list[str] = field(default_factory=list)


async def purge_org(backends: Backends, org_id: str, cutoff: datetime) -> RetentionReport:
    """Delete one organisation's conversations, messages and recordings older than `cutoff`."""
    report = RetentionReport()
    before = {"created_at": {"$lt": cutoff.isoformat()}}
    documents = backends.documents
    while True:
        batch = await documents.find(CONVERSATIONS, org_id, before, limit=BATCH)
        if not batch:
            break
        ids = [str(doc["_id"]) for doc in batch]
        for conversation_id in ids:
            prefix = object_keys.conversation_prefix(org_id, conversation_id)
            report.recordings += await backends.objects.delete_prefix(prefix)
        report.messages += await documents.delete_many(
            MESSAGES, org_id, {"conversation_id": {"$in": ids}}
        )
        # Recordings and messages first: if this stops half-way, the next run finds the
        # conversation again and finishes, instead of leaving orphans nobody can find.
        report.conversations += await documents.delete_many(
            CONVERSATIONS, org_id, {"_id": {"$in": ids}}
        )
    report.messages += await documents.delete_many(MESSAGES, org_id, before)
    return report


async def apply_retention(backends: Backends, now: datetime | None = None) -> RetentionReport:
    """Purge every organisation that has a retention period; one failure does not stop others."""
    now = now or utcnow()
    async with backends.database.session() as session:
        rows = await session.execute(
            select(Organization.id, Organization.retention_days).where(
                Organization.retention_days.is_not(None)
            )
        )
        orgs = [(str(org_id), int(days or 0)) for org_id, days in rows.all()]
    total = RetentionReport()
    for org_id, days in orgs:
        try:
            report = await purge_org(backends, org_id, now - timedelta(days=days))
        except Exception as exc:
            log.error("retention_failed", org_id=org_id, error=f"{type(exc).__name__}: {exc}")
            total.failed_orgs.append(org_id)
            continue
        total.conversations += report.conversations
        total.messages += report.messages
        total.recordings += report.recordings
        if report.conversations or report.messages:
            log.info(
                "retention_purged",
                org_id=org_id,
                conversations=report.conversations,
                messages=report.messages,
                recordings=report.recordings,
            )
    if total.failed_orgs:
        raise TransientError(f"retention failed for {len(total.failed_orgs)} organisation(s)")
    return total


async def prune_dead_letters(backends: Backends, now: datetime | None = None) -> int:
    """Delete replayed or discarded dead letters older than the history window."""
    cutoff = (now or utcnow()) - timedelta(days=backends.settings.webhook_history_days)
    async with backends.database.session() as session:
        result = await session.execute(
            delete(DeadLetter).where(
                DeadLetter.status != DeadLetterStatus.OPEN, DeadLetter.updated_at < cutoff
            )
        )
    return int(getattr(result, "rowcount", 0) or 0)


# --- history other domains keep -------------------------------------------------------------
HistoryPruner = Callable[[Backends], Awaitable[int]]
HISTORY_PRUNERS: dict[str, HistoryPruner] = {}


def register_history_pruner(name: str) -> Callable[[HistoryPruner], HistoryPruner]:
    """Register `fn(backends)` under `name`: delete the domain's history past its window.

    The retention job runs every registered pruner and reports the rows each deleted; the
    webhooks domain registers one (from a module the worker imports, `webhooks/tasks.py`).
    """

    def register(fn: HistoryPruner) -> HistoryPruner:
        HISTORY_PRUNERS[name] = fn
        return fn

    return register


async def prune_history(backends: Backends) -> dict[str, int]:
    """Run every registered history pruner; rows deleted by name."""
    return {name: await prune(backends) for name, prune in sorted(HISTORY_PRUNERS.items())}


# --- stuck documents ------------------------------------------------------------------------
StuckDocumentSweeper = Callable[[Backends, datetime], Awaitable[int]]
STUCK_DOCUMENT_SWEEPERS: list[StuckDocumentSweeper] = []


def register_stuck_document_sweeper(fn: StuckDocumentSweeper) -> StuckDocumentSweeper:
    """Register `fn(backends, cutoff)`: handle documents `processing` since before `cutoff`.

    It returns how many documents it re-queued or failed. The knowledge domain registers
    one (from a module the worker imports, e.g. `vocalis/knowledge/tasks.py`).
    """
    if fn not in STUCK_DOCUMENT_SWEEPERS:
        STUCK_DOCUMENT_SWEEPERS.append(fn)
    return fn


async def sweep_stuck_documents(backends: Backends, now: datetime | None = None) -> int:
    """Call every registered sweeper with the stuck cutoff; total documents handled."""
    cutoff = (now or utcnow()) - timedelta(seconds=backends.settings.stuck_document_after_s)
    handled = 0
    for sweeper in list(STUCK_DOCUMENT_SWEEPERS):
        handled += await sweeper(backends, cutoff)
    if not STUCK_DOCUMENT_SWEEPERS:
        log.debug("no_stuck_document_sweeper_registered")
    return handled
