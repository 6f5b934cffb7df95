"""The worker process's Celery app (`vocalis worker`, `beat`): every domain's tasks, with
backends from the composition root."""

from __future__ import annotations

from vocalis.settings import get_settings
from vocalis.wiring import build_backends
from vocalis.workers import lifecycle as _lifecycle  # noqa: F401  (connects the worker's signals)
from vocalis.workers import runtime
from vocalis.workers.celery_app import broker_url, create_celery

runtime.install(build_backends)
_settings = get_settings()
celery_app = create_celery(_settings, redis_url=broker_url(_settings))
celery_app.autodiscover_tasks(
    ["vocalis.knowledge", "vocalis.webhooks", "vocalis.conversations", "vocalis.workers"],
    force=True,
)
