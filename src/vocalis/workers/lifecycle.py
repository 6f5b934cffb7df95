"""Process lifecycle for the background-work side: the API's background and the worker's.

`api_background(backends)` is entered in the app's lifespan: publishes after a commit go
to the configured broker, `vocalis_queue_depth` reads the broker at scrape, and the
organisation flag overrides are loaded and kept fresh. The worker's host
(`vocalis.wiring.worker`) imports this module, which connects the worker's start and
shutdown signals: tracing, publishing and metrics set up; every thread's backends closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from celery.signals import worker_init, worker_process_init, worker_shutdown

from vocalis.core.backends import Backends
from vocalis.core.tracing import configure_tracing
from vocalis.flags import overrides as flags
from vocalis.settings import Settings, get_settings
from vocalis.workers import publish, runtime
from vocalis.workers.telemetry import install_queue_depth

log = structlog.get_logger(__name__)

FLAG_REFRESH_S = 30.0


@asynccontextmanager
async def api_background(backends: Backends) -> AsyncIterator[None]:
    """Set up publishing, the queue-depth gauge and the flag-override refresher."""
    publish.configure(backends.settings)
    install_queue_depth(backends.settings)
    with contextlib.suppress(Exception):  # a missing table must not stop the API starting
        await flags.refresh(backends.database)
    refresher = asyncio.create_task(flags.refresher(backends.database, FLAG_REFRESH_S))
    try:
        yield
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher


# --- the worker process -------------------------------------------------------------------
def prepare_process(settings: Settings) -> None:
    """Tracing and publishing set up for a worker (or a prefork child) process."""
    configure_tracing(settings)
    publish.configure(settings)


@worker_process_init.connect
def _child_started(**_: Any) -> None:
    prepare_process(get_settings())


@worker_init.connect
def _worker_started(**_: Any) -> None:
    settings = get_settings()
    prepare_process(settings)
    install_queue_depth(settings)
    if settings.worker_metrics_port:
        from vocalis.workers import health_server
        from vocalis.workers.celery_app import broker_url

        try:  # /metrics, /healthz, and /readyz (the broker answers): the pod's probes
            health_server.start(settings.worker_metrics_port, broker_url(settings))
        except OSError as exc:  # another worker on this host already serves the port
            log.warning(
                "worker_metrics_port_busy", port=settings.worker_metrics_port, error=str(exc)
            )


@worker_shutdown.connect
def _worker_stopping(**_: Any) -> None:
    runtime.close_all()
