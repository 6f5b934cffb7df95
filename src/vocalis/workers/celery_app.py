"""The Celery application: broker on Redis, queues and routing declared in one place."""

from __future__ import annotations

from celery import Celery
from celery.signals import setup_logging, task_prerun
from kombu import Queue

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
