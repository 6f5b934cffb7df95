"""Publishing tasks by name, without letting a broker outage reach the caller.

Producers (the API, and tasks starting follow-up work) never import task modules: they
send a task name and JSON arguments, and the routing in `celery_app.ROUTES` picks the
queue. Publishing is best effort by design: everything that must not be lost is written
to the database first (outbox events, webhook deliveries), and a periodic sweep enqueues
whatever a failed publish left behind. So `enqueue` returns None instead of raising when
the broker is down, and after a failure it stops trying for a few seconds (the sweep
will catch up) rather than making every request wait for a connection timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from celery import Celery

from vocalis.settings import Settings, get_settings
from vocalis.workers import telemetry as _telemetry  # noqa: F401  (trace context on publish)
from vocalis.workers.celery_app import broker_url, create_celery

log = structlog.get_logger(__name__)

BROKER_DOWN_BACKOFF_S = 5.0
# One quick reconnect, then give up: the outbox sweep is the real retry.
_PUBLISH_RETRY = {
    "max_retries": 1,
    "interval_start": 0.0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}

_apps: dict[str, Celery] = {}
_apps_lock = threading.Lock()
_down_until: dict[str, float] = {}
_configured: Settings | None = None
_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vocalis-publish")


def configure(settings: Settings) -> None:
    """Set the settings that publishes after a database commit use (API and worker startup)."""
    global _configured
    _configured = settings


def configured_settings() -> Settings:
    """The settings given to `configure`, else the process settings."""
    return _configured or get_settings()


def producer(settings: Settings) -> Celery:
    """A Celery app used only to publish, one per broker URL."""
    url = broker_url(settings)
    with _apps_lock:
        app = _apps.get(url)
        if app is None:
            app = _apps[url] = create_celery(settings, redis_url=url)
        return app


def publish(
    settings: Settings,
    name: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    countdown: float | None = None,
) -> str | None:
    """Send task `name` (blocking); its id, or None when the broker is unreachable."""
    url = broker_url(settings)
    if time.monotonic() < _down_until.get(url, 0.0):
        return None
    try:
        result = producer(settings).send_task(
            name,
            args=list(args),
            kwargs=kwargs or {},
            countdown=countdown,
            retry=True,
            retry_policy=_PUBLISH_RETRY,
        )
    except Exception as exc:  # kombu/redis raise many types; all mean "not sent"
        _down_until[url] = time.monotonic() + BROKER_DOWN_BACKOFF_S
        log.warning("task_publish_failed", task=name, error=f"{type(exc).__name__}: {exc}")
        return None
    _down_until.pop(url, None)
    return str(result.id)


async def enqueue(
    settings: Settings,
    name: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    countdown: float | None = None,
) -> str | None:
    """`publish` without blocking the event loop."""
    ctx = contextvars.copy_context()  # keeps the trace context for the publish signal
    return await asyncio.get_running_loop().run_in_executor(
        _executor, lambda: ctx.run(publish, settings, name, args, kwargs, countdown=countdown)
    )


def publish_in_background(name: str, args: Sequence[Any] = ()) -> None:
    """Fire and forget (used from synchronous hooks such as after-commit)."""
    settings = configured_settings()
    ctx = contextvars.copy_context()
    _executor.submit(ctx.run, publish, settings, name, args)


class CoalescingPublisher:
    """Fire-and-forget publishes of id lists, at most one in flight per process.

    `add(ids)` publishes at once when nothing is being sent; ids added while a message is
    on its way wait and leave together in the next one (one id: `single_task` with `[id]`;
    several: `many_task` with `[ids]`, at most `max_batch` per message). Under load this
    turns one broker message and one task run per transaction into one per batch, and it
    never delays a lone publish. The trace context is the one of the call that started
    the drain (the first of a batch).
    """

    def __init__(self, single_task: str, many_task: str, *, max_batch: int = 200) -> None:
        self.single_task = single_task
        self.many_task = many_task
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._draining = False

    def add(self, ids: Sequence[str]) -> None:
        """Queue `ids` for publishing (in this order, after the ids queued before)."""
        if not ids:
            return
        with self._lock:
            self._pending.extend(ids)
            if self._draining:
                return
            self._draining = True
        settings = configured_settings()
        ctx = contextvars.copy_context()
        try:
            _executor.submit(ctx.run, self._drain, settings)
        except RuntimeError:  # the executor is shut down (interpreter exit)
            with self._lock:
                self._draining = False

    def _drain(self, settings: Settings) -> None:
        while True:
            with self._lock:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                if not batch:
                    self._draining = False
                    return
            try:
                if len(batch) == 1:
                    publish(settings, self.single_task, batch)
                else:
                    publish(settings, self.many_task, [batch])
            except Exception:  # pragma: no cover - publish never raises; keep draining
                log.exception("task_publish_failed", task=self.many_task)


def reset_broker_state() -> None:
    """Forget that a broker was down (tests restarting a broker)."""
    _down_until.clear()
