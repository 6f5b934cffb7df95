"""Generated reference: Celery queues, routing, tasks, periodic jobs, retries, dead letters."""

from __future__ import annotations

import importlib
from typing import Any

from vocalis.settings import Settings
from vocalis.workers.retry import format_duration, transient_types

# Packages whose `tasks` module the worker imports (the same list as `wiring.worker`).
TASK_PACKAGES = (
    "vocalis.knowledge",
    "vocalis.webhooks",
    "vocalis.conversations",
    "vocalis.workers",
)


def _load_tasks() -> None:
    for package in TASK_PACKAGES:
        try:
            importlib.import_module(f"{package}.tasks")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.tasks":
                raise


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def celery_reference() -> str:
    """Queues, routing, every task with its queue and retry policy, beat jobs, dead letters."""
    from vocalis.workers.base import TASKS, default_policy
    from vocalis.workers.celery_app import BEAT_JOBS, QUEUES, ROUTES, create_celery

    _load_tasks()
    defaults = Settings.model_construct()
    app = create_celery(defaults, redis_url="redis://broker:6379/0")
    app.finalize()
    router = app.amqp.router

    def queue_of(name: str) -> str:
        route = router.route({}, name)
        queue = route.get("queue")
        return str(getattr(queue, "name", queue) or "default")

    # Only tasks defined by the package itself (test suites register their own on the app).
    names = sorted(
        n
        for n, task in app.tasks.items()
        if n.startswith("vocalis.") and type(task).__module__.startswith("vocalis.")
    )
    task_rows = []
    for name in names:
        spec = TASKS.get(name)
        task_rows.append(
            [
                f"`{name}`",
                f"`{queue_of(name)}`",
                spec.summary if spec else "",
                (spec.retry_note + "; " if spec and spec.retry_note else "")
                + (spec.policy(defaults).describe() if spec else "Celery defaults")
                + (" on transient errors" if spec else ""),
                spec.idempotency if spec else "",
            ]
        )
    transient = ", ".join(f"`{t.__module__}.{t.__qualname__}`" for t in transient_types())
    policy = default_policy(defaults)
    return "\n".join(
        [
            "# Background work (Celery)\n",
            "Workers (`vocalis worker`) consume the queues below from the Redis broker "
            "(`VOCALIS_BROKER_URL`, default `VOCALIS_REDIS_URL`); `vocalis beat` sends the "
            "periodic jobs. Messages are JSON, acknowledged *after* the task finishes "
            "(`acks_late`), and a message whose worker died is handed to another worker once "
            "`VOCALIS_TASK_VISIBILITY_TIMEOUT_S` "
            f"({format_duration(defaults.task_visibility_timeout_s)} by default) has passed. "
            "Delivery is therefore at least once, and every task is idempotent.\n",
            "## Queues\n",
            _table(["Queue", "Holds"], [[f"`{q}`", what] for q, what in QUEUES.items()]),
            "## Routing\n",
            "Declared once in `vocalis/workers/celery_app.py`: a task goes to the queue of the "
            "first pattern its name matches, else `default`.\n",
            _table(
                ["Task name pattern", "Queue"], [[f"`{p}`", f"`{q}`"] for p, q in ROUTES.items()]
            ),
            "## Tasks\n",
            _table(["Task", "Queue", "What it does", "Retries", "Idempotency"], task_rows),
            "## Periodic jobs (beat)\n",
            "Each message expires after one interval, so a pile of identical sweeps never "
            "builds up while workers are down.\n",
            _table(
                ["Job", "Task", "Every (default)", "What"],
                [
                    [name, f"`{job.task}`", format_duration(job.every_s(defaults)), job.what]
                    for name, job in BEAT_JOBS.items()
                ],
            ),
            "## Retry rules\n",
            "- Only errors marked transient are retried: subclasses of "
            "`vocalis.workers.retry.TransientError` and " + transient + ".",
            f"- Default policy: {policy.describe()} (`VOCALIS_TASK_MAX_RETRIES`, "
            "`VOCALIS_TASK_RETRY_BASE_S`, `VOCALIS_TASK_RETRY_CAP_S`; the cap never exceeds "
            "half the visibility timeout). The delay before retry *n* is drawn uniformly "
            "from [0, min(cap, base * 2^n)] (full jitter).",
            "- Webhook deliveries follow their own schedule (`VOCALIS_WEBHOOK_RETRY_SCHEDULE`); "
            "delays longer than half the visibility timeout wait in the database and are "
            "enqueued by the outbox sweep when due.",
            "- Any other error fails the task at once.\n",
            "## Dead letters\n",
            "A task that exhausts its retries, or fails with an error that is not transient, "
            "is stored in the `dead_letters` table: task name and id, queue, arguments and "
            "keyword arguments with secrets and PII redacted, error type and message, "
            "whether it was transient, attempts, first and last failure. It is counted in "
            "`vocalis_dead_letters_total{task}`. Operators (scope `admin`) list them at "
            "`GET /v1/admin/dead-letters`, replay one (`POST …/{id}/replay`: the task is "
            "enqueued again with its arguments; refused when redaction changed them) or "
            "discard it (`POST …/{id}/discard`). Replayed and discarded dead letters are "
            "pruned after `VOCALIS_WEBHOOK_HISTORY_DAYS`.\n",
            "## Metrics and traces\n",
            "`vocalis_task_total{task,outcome}` (success, retry, failure), "
            "`vocalis_task_duration_seconds{task}`, `vocalis_task_retries_total{task}`, "
            "`vocalis_queue_depth{queue}` (read from the broker at scrape), "
            "`vocalis_dead_letters_total{task}`; a worker serves them on "
            "`VOCALIS_WORKER_METRICS_PORT`. The producer's trace context travels in the "
            "message headers (`traceparent`); each task runs in a consumer span "
            "`celery.task <name>` under it.\n",
        ]
    )
