"""The Celery application: broker on Redis, queues and routing declared in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from celery import Celery
from celery.signals import setup_logging, task_prerun
from kombu import Queue

from vocalis.core.embedded import redis_url as embedded_redis_url
from vocalis.core.logging import bind_context, clear_context, configure_logging
from vocalis.settings import Settings, get_settings


@setup_logging.connect
def _logging(**_: object) -> None:
    """Workers log JSON through the same redacting pipeline as the API."""
    configure_logging(get_settings())


@task_prerun.connect
def _task_context(task_id: str | None = None, task: object = None, **_: object) -> None:
    clear_context()
    bind_context(task_id=task_id, task_name=getattr(task, "name", None))


QUEUES: dict[str, str] = {
    "ingest": "Document parsing, chunking, embedding and indexing.",
    "analysis": "Post-conversation analysis.",
    "webhooks": "Webhook deliveries.",
    "maintenance": "Retention, sweepers, periodic housekeeping.",
    "default": "Everything else.",
}

# Task name prefix → queue. The one place routing is declared.
ROUTES: dict[str, str] = {
    "vocalis.knowledge.*": "ingest",
    "vocalis.conversations.analysis.*": "analysis",
    "vocalis.webhooks.*": "webhooks",
    "vocalis.maintenance.*": "maintenance",
}


@dataclass(frozen=True)
class BeatJob:
    """A periodic job: the task beat sends and how often."""

    task: str
    every_s: Callable[[Settings], float]
    what: str


# The periodic jobs `vocalis beat` runs. Each message expires after one interval, so a
# worker outage does not leave a pile of identical sweeps behind.
BEAT_JOBS: dict[str, BeatJob] = {
    "sweep-outbox": BeatJob(
        "vocalis.maintenance.sweep_outbox",
        lambda s: s.outbox_sweep_interval_s,
        "Dispatch events the immediate publish missed; re-enqueue due or lost deliveries.",
    ),
    "disable-failing-endpoints": BeatJob(
        "vocalis.maintenance.disable_failing_endpoints",
        lambda s: 60.0,
        "Disable webhook endpoints past the consecutive-failure limit.",
    ),
    "retention": BeatJob(
        "vocalis.maintenance.retention",
        lambda s: float(s.retention_interval_s),
        "Delete conversations, messages and recordings older than each organisation's "
        "retention; prune old webhook history.",
    ),
    "compact-vector-store": BeatJob(
        "vocalis.knowledge.compact_vector_store",
        lambda s: 3600.0,
        "Purge deleted chunks from LanceDB's older table versions; fold new rows into its indexes.",
    ),
    "sweep-stuck-documents": BeatJob(
        "vocalis.maintenance.sweep_stuck_documents",
        lambda s: 300.0,
        "Hand documents stuck in `processing` to the registered sweepers.",
    ),
}


def broker_url(settings: Settings) -> str:
    """The broker URL for `settings` (the broker setting, else the Redis URL)."""
    if settings.broker_url:
        return settings.broker_url
    if settings.redis_url:
        return settings.redis_url
    return embedded_redis_url(settings.data_dir)


def celery_broker_url(redis_url: str) -> str:
    """Kombu spells unix-socket Redis URLs `redis+socket://`."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url


def create_celery(settings: Settings | None = None, redis_url: str | None = None) -> Celery:
    """A configured Celery app (the broker URL is resolved by the caller or from settings)."""
    settings = settings or get_settings()
    url = celery_broker_url(redis_url or settings.redis_url or "redis://127.0.0.1:6379/0")
    app = Celery("vocalis", broker=url, backend=None)
    app.conf.update(
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="default",
        task_routes={pattern: {"queue": queue} for pattern, queue in ROUTES.items()},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=4,
        broker_transport_options=transport_options(settings),
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_ignore_result=True,
        beat_schedule={
            name: {
                "task": job.task,
                "schedule": job.every_s(settings),
                "options": {"expires": job.every_s(settings)},
            }
            for name, job in BEAT_JOBS.items()
        },
    )
    return app


def transport_options(settings: Settings) -> dict[str, float]:
    """Broker options: redelivery of unacknowledged messages after the visibility timeout."""
    timeout = settings.task_visibility_timeout_s
    return {
        "visibility_timeout": timeout,
        # Look for messages of dead workers often enough for the timeout to mean something.
        "unacked_restore_interval": max(1, min(10, timeout // 2)),
        "unacked_restore_throttle": 1,
    }
