"""Building the app (with the webhook and admin routers) and the worker stack for tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.api.conftest import Api
from vocalis.app import ROUTERS, create_app
from vocalis.core.migrate import upgrade
from vocalis.settings import Settings
from vocalis.wiring import build_backends
from vocalis.workers import publish
from vocalis.workers.lifecycle import api_background

T = TypeVar("T")

# Until the lead adds them to vocalis.app.ROUTERS, the tests mount them themselves.
OWN_ROUTERS = ("vocalis.webhooks.api", "vocalis.admin.api")


def fast_settings(data_dir: Path, database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Settings with the schedules shrunk so the suite stays fast."""
    values: dict[str, Any] = {
        "env": "test",
        "data_dir": data_dir,
        "database_url": database_url,
        "redis_url": redis_url,
        "outbound_allowlist": "127.0.0.1",
        "webhook_retry_schedule": "0.3s,0.3s",
        "webhook_timeout_s": 2.0,
        "task_visibility_timeout_s": 4,
        "task_retry_base_s": 0.1,
        "task_max_retries": 2,
        "outbox_sweep_interval_s": 1.0,
        "webhook_requeue_after_s": 6,
        "worker_metrics_port": 0,
        "rate_limit_burst": 1000,
        "log_level": "INFO",
    }
    values.update(overrides)
    return Settings(**values)


def worker_env(settings: Settings) -> dict[str, str]:
    """The same settings as environment variables for a worker subprocess."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, dict | list):
            text = json.dumps(value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"VOCALIS_{name.upper()}"] = text
    return env


async def start_app(settings: Settings) -> AsyncIterator[Api]:
    """Migrate, build backends and the app with our routers, run its lifespan."""
    import importlib

    await asyncio.to_thread(upgrade, settings.resolved_database_url)
    backends = await build_backends(settings)
    app = create_app(settings, backends=backends)
    for module in OWN_ROUTERS:
        if module not in ROUTERS:
            app.include_router(importlib.import_module(module).router)
    publish.reset_broker_state()
    async with app.router.lifespan_context(app), api_background(backends):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(app, client, backends, settings)
    await backends.close()
