"""Maintenance tasks run by beat (routed to the `maintenance` queue)."""

from __future__ import annotations

from typing import Any

from vocalis.webhooks.dispatch import prune_history
from vocalis.workers import analysis, maintenance
from vocalis.workers.base import TaskContext, default_policy, vocalis_task

ANALYZE_TASK = "vocalis.conversations.analysis.analyze"


@vocalis_task("vocalis.maintenance.retention")
async def retention(ctx: TaskContext) -> dict[str, int]:
    """Delete data older than each organisation's retention; prune old webhook history."""
    report = await maintenance.apply_retention(ctx.backends)
    events = await prune_history(ctx.backends)
    letters = await maintenance.prune_dead_letters(ctx.backends)
    return {
        "conversations": report.conversations,
        "messages": report.messages,
        "recordings": report.recordings,
        "webhook_events": events,
        "dead_letters": letters,
    }


@vocalis_task("vocalis.maintenance.sweep_stuck_documents")
async def sweep_stuck_documents(ctx: TaskContext) -> int:
    """Hand documents stuck in `processing` to the registered sweepers."""
    return await maintenance.sweep_stuck_documents(ctx.backends)


@vocalis_task(
    ANALYZE_TASK,
    idempotency_note="one analysis per conversation (stored once), one "
    "`conversation.analyzed` event (id derived from the conversation)",
    retry_note="model outages are retried; the last retry falls back to the heuristic",
)
async def analyze_conversation(
    ctx: TaskContext, *, org_id: str, conversation_id: str
) -> dict[str, Any] | None:
    """Analyse an ended conversation (summary, outcome, sentiment, plan fields)."""
    last_try = not default_policy(ctx.settings).can_retry(ctx.retries)
    result = await analysis.analyze_conversation(
        ctx.backends,
        org_id=org_id,
        conversation_id=conversation_id,
        fallback_on_model_failure=last_try,
    )
    # Only the verdict: Celery logs return values, and the summary quotes the transcript.
    return {"outcome": result["outcome"], "method": result["method"]} if result else None
