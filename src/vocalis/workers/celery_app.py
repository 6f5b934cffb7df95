"""The Celery application: broker on Redis, queues and routing declared in one place."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from vocalis.settings import Settings, get_settings

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
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        task_ignore_result=True,
    )
    return app
