"""Maintenance tasks run by beat (routed to the `maintenance` queue)."""

from __future__ import annotations

from vocalis.workers import maintenance
from vocalis.workers.base import TaskContext, vocalis_task


@vocalis_task("vocalis.maintenance.retention")
async def retention(ctx: TaskContext) -> dict[str, int]:
    """Delete data older than each organisation's retention; prune old history."""
    report = await maintenance.apply_retention(ctx.backends)
    history = await maintenance.prune_history(ctx.backends)
    letters = await maintenance.prune_dead_letters(ctx.backends)
    return {
        "conversations": report.conversations,
        "messages": report.messages,
        "recordings": report.recordings,
        **history,
        "dead_letters": letters,
    }


@vocalis_task("vocalis.maintenance.sweep_stuck_documents")
async def sweep_stuck_documents(ctx: TaskContext) -> int:
    """Hand documents stuck in `processing` to the registered sweepers."""
    return await maintenance.sweep_stuck_documents(ctx.backends)
