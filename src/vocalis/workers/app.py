"""The process-wide Celery app (imported by `vocalis worker`, `beat` and task producers)."""

from __future__ import annotations

from vocalis.adapters import embedded_redis
from vocalis.settings import get_settings
from vocalis.workers.celery_app import create_celery

_settings = get_settings()
celery_app = create_celery(
    _settings, redis_url=_settings.redis_url or embedded_redis.url_for(_settings.data_dir)
)
celery_app.autodiscover_tasks(
    ["vocalis.knowledge", "vocalis.webhooks", "vocalis.conversations"], force=True
)
