"""`vocalis_task`: every Vocalis Celery task is an async function wrapped by this decorator.

The wrapper gives the function its backends (see `runtime`), applies the retry policy
(only transient errors, exponential backoff with full jitter), writes the dead letter when
retries run out or the error is permanent, and skips work an idempotency key says is
already done. Delivery is at least once (late acknowledgement, redelivery when a worker
dies), so a task must be safe to run twice; the idempotency key makes the common case cheap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import structlog
from celery import Task, shared_task
from celery.exceptions import Retry

from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.core.redis_keys import TASK_DONE, TASK_FIRST_FAILURE
from vocalis.flags import overrides as flags
from vocalis.settings import Settings
from vocalis.workers import deadletters, runtime
from vocalis.workers.retry import RetryPolicy, is_transient

log = structlog.get_logger(__name__)
T = TypeVar("T")

FAILURE_MEMORY_S = 7 * 86400
DONE_MEMORY_S = 7 * 86400


@dataclass(frozen=True)
class TaskContext:
    """What a task body gets besides its arguments."""

    task_id: str
    task_name: str
    retries: int
    backends: Backends

    @property
    def settings(self) -> Settings:
        """The worker's settings."""
        return self.backends.settings


@dataclass(frozen=True)
class TaskSpec:
    """A registered task, as the documentation lists it."""

    name: str
    summary: str
    policy: Callable[[Settings], RetryPolicy]
    idempotency: str
    retry_note: str = ""


TASKS: dict[str, TaskSpec] = {}

TaskBody = Callable[..., Awaitable[Any]]
KeyFn = Callable[..., str]
OrgFn = Callable[[Backends, tuple[Any, ...], dict[str, Any]], Awaitable[str | None]]


def default_policy(settings: Settings) -> RetryPolicy:
    """The policy every task uses unless it declares its own."""
    return RetryPolicy(
        max_retries=settings.task_max_retries,
        base_s=settings.task_retry_base_s,
        # A countdown longer than the visibility timeout would be redelivered while it waits.
        cap_s=min(settings.task_retry_cap_s, settings.task_visibility_timeout_s / 2),
    )


async def _org_from_kwargs(_: Backends, __: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    value = kwargs.get("org_id")
    return str(value) if value else None


def vocalis_task(
    name: str,
    *,
    policy: Callable[[Settings], RetryPolicy] = default_policy,
    idempotency_key: KeyFn | None = None,
    org_of: OrgFn = _org_from_kwargs,
    idempotency_note: str = "",
    retry_note: str = "",
) -> Callable[[TaskBody], Task]:
    """Register an async `fn(ctx, *args, **kwargs)` as the Celery task `name`."""

    def decorate(fn: TaskBody) -> Task:
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        note = idempotency_note or (
            "idempotency key: " + (idempotency_key.__doc__ or "set").strip()
            if idempotency_key
            else "safe to repeat"
        )
        TASKS[name] = TaskSpec(name, summary, policy, note, retry_note)

        def run_task(self: Task, *args: Any, **kwargs: Any) -> Any:
            request = self.request

            async def body(backends: Backends) -> Any:
                ctx = TaskContext(
                    task_id=str(request.id),
                    task_name=name,
                    retries=int(request.retries or 0),
                    backends=backends,
                )
                # Organisation flag overrides change at runtime; a worker reloads them lazily.
                await flags.refresh_if_stale(backends.database)
                org_id = kwargs.get("org_id")
                if org_id:
                    structlog.contextvars.bind_contextvars(org_id=org_id)
                try:
                    return await _execute(fn, ctx, args, kwargs, idempotency_key)
                except Retry:
                    raise
                except Exception as exc:
                    await _on_failure(self, ctx, exc, args, kwargs, policy, org_of)
                    raise

            return runtime.run(body)

        # Not functools.wraps: Celery would read `fn`'s signature (with `ctx`) as the
        # task's and refuse calls that leave `ctx` out.
        run_task.__name__ = fn.__name__
        run_task.__doc__ = fn.__doc__
        run_task.__module__ = fn.__module__
        task: Task = shared_task(bind=True, name=name, max_retries=None, acks_late=True)(run_task)
        return task

    return decorate


async def _execute(
    fn: TaskBody,
    ctx: TaskContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key_fn: KeyFn | None,
) -> Any:
    done_key = TASK_DONE.format(task=ctx.task_name, key=key_fn(*args, **kwargs)) if key_fn else None
    if done_key and await ctx.backends.redis.exists(done_key):
        log.info("task_already_done", task=ctx.task_name, task_id=ctx.task_id)
        return None
    result = await fn(ctx, *args, **kwargs)
    if done_key:
        await ctx.backends.redis.set(done_key, b"1", ex=DONE_MEMORY_S)
    return result


async def _first_failure(ctx: TaskContext) -> datetime:
    """When this task (same id across its retries) first failed."""
    key = TASK_FIRST_FAILURE.format(task_id=ctx.task_id)
    now = utcnow()
    try:
        await ctx.backends.redis.set(key, now.isoformat().encode(), ex=FAILURE_MEMORY_S, nx=True)
        raw = await ctx.backends.redis.get(key)
        text = raw.decode() if isinstance(raw, bytes) else raw
        return datetime.fromisoformat(text) if text else now
    except Exception:  # the dead letter matters more than this timestamp
        return now


async def _on_failure(
    task: Task,
    ctx: TaskContext,
    exc: Exception,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy_of: Callable[[Settings], RetryPolicy],
    org_of: OrgFn,
) -> None:
    """Retry a transient failure while the policy allows; otherwise dead-letter it."""
    policy = policy_of(ctx.settings)
    first = await _first_failure(ctx)
    transient = is_transient(exc)
    if transient and policy.can_retry(ctx.retries):
        countdown = policy.delay(ctx.retries)
        log.warning(
            "task_retry_scheduled",
            task=ctx.task_name,
            retry=ctx.retries + 1,
            countdown_s=round(countdown, 3),
            error=f"{type(exc).__name__}: {exc}",
        )
        raise task.retry(exc=exc, countdown=countdown)
    try:
        org_id = await org_of(ctx.backends, args, kwargs)
    except Exception:
        org_id = None
    await deadletters.record(
        ctx.backends.database,
        task_name=ctx.task_name,
        task_id=ctx.task_id,
        queue=str((task.request.delivery_info or {}).get("routing_key") or "default"),
        args=args,
        kwargs=kwargs,
        org_id=org_id,
        error=exc,
        transient=transient,
        # An error may know better, e.g. a webhook delivery counts its HTTP attempts.
        attempts=int(getattr(exc, "attempts", 0) or ctx.retries + 1),
        first_failed_at=getattr(exc, "first_failed_at", None) or first,
        last_failed_at=utcnow(),
    )
