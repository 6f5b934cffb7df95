"""Celery tasks of conversations: the post-conversation analysis (the `analysis` queue)."""

from __future__ import annotations

from typing import Any

from vocalis.conversations import analysis
from vocalis.workers.base import TaskContext, default_policy, vocalis_task

ANALYZE_TASK = "vocalis.conversations.analysis.analyze"


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
