"""The process-wide Celery app (imported by `vocalis worker`, `beat` and task producers)."""

from __future__ import annotations

from vocalis.settings import get_settings
from vocalis.workers.celery_app import create_celery
from vocalis.workers.publish import broker_url

_settings = get_settings()
celery_app = create_celery(_settings, redis_url=broker_url(_settings))
celery_app.autodiscover_tasks(
    ["vocalis.knowledge", "vocalis.webhooks", "vocalis.conversations", "vocalis.workers"],
    force=True,
)
