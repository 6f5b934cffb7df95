"""Metrics and tracing for Celery, wired through Celery's signals.

- Trace context travels from the producer to the task: `before_task_publish` injects the
  current context (W3C `traceparent`) into the message headers; `task_prerun` extracts it
  and opens a consumer span `celery.task <name>` that every span of the task nests under.
- Counters and the duration histogram come from the task signals; the queue-depth gauge
  reads the broker's list lengths when it is scraped.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

import redis
import structlog
from celery.signals import (
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    task_success,
)
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from vocalis.core.metrics import QUEUE_DEPTH, TASK_DURATION, TASK_RETRIES, TASK_TOTAL
from vocalis.core.tracing import tracer
from vocalis.settings import Settings
from vocalis.workers.celery_app import QUEUES, broker_url

log = structlog.get_logger(__name__)

TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
# kombu's Redis transport keeps one list per queue and priority step.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)

_running: dict[str, tuple[float, trace.Span, object]] = {}
_running_lock = threading.Lock()


def span_name(task_name: str) -> str:
    """Name of the consumer span of a task."""
    return f"celery.task {task_name}"


@before_task_publish.connect
def inject_trace_context(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Carry the producer's trace context in the message headers."""
    if headers is not None:
        propagate.inject(headers)


def _carrier(request: Any) -> dict[str, str]:
    """Trace headers of a task request (top level, or nested under `headers`)."""
    carrier: dict[str, str] = {}
    nested = getattr(request, "headers", None)
    for key in TRACE_HEADERS:
        value = getattr(request, key, None)
        if value is None and isinstance(nested, Mapping):
            value = nested.get(key)
        if isinstance(value, str):
            carrier[key] = value
    return carrier


@task_prerun.connect
def start_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Open the task's span under the producer's context and start its clock."""
    if task_id is None or task is None:
        return
    parent = propagate.extract(_carrier(task.request))
    org_id = (getattr(task.request, "kwargs", None) or {}).get("org_id")
    span = tracer("vocalis.workers").start_span(
        span_name(task.name),
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "celery",
            "messaging.operation": "process",
            "messaging.message.id": task_id,
            "celery.task_name": task.name,
            "celery.retries": int(task.request.retries or 0),
            **({"vocalis.org_id": str(org_id)} if org_id else {}),
        },
    )
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    with _running_lock:
        _running[task_id] = (time.perf_counter(), span, token)


@task_postrun.connect
def finish_task(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    """Close the task's span and record its duration."""
    with _running_lock:
        started = _running.pop(task_id or "", None)
    if started is None or task is None:
        return
    began, span, token = started
    TASK_DURATION.labels(task=task.name).observe(time.perf_counter() - began)
    span.set_attribute("celery.state", state or "")
    if state == "FAILURE":
        span.set_status(trace.StatusCode.ERROR)
    span.end()
    with contextlib.suppress(Exception):  # detaching in another context only warns
        otel_context.detach(token)  # type: ignore[arg-type]


@task_success.connect
def count_success(sender: Any = None, **_: Any) -> None:
    """Count a task that returned."""
    TASK_TOTAL.labels(task=getattr(sender, "name", "?"), outcome="success").inc()


@task_retry.connect
def count_retry(sender: Any = None, request: Any = None, **_: Any) -> None:
    """Count a retry scheduled after a transient failure."""
    name = getattr(sender, "name", None) or getattr(request, "task", "?")
    TASK_TOTAL.labels(task=name, outcome="retry").inc()
    TASK_RETRIES.labels(task=name).inc()


@task_failure.connect
def count_failure(sender: Any = None, **_: Any) -> None:
    """Count a task that failed for good (it is in the dead-letter store)."""
    TASK_TOTAL.labels(task=getattr(sender, "name", "?"), outcome="failure").inc()


# --- queue depth ----------------------------------------------------------------------------
def queue_length(client: redis.Redis, queue: str) -> int:
    """Messages waiting in one queue (every priority step)."""
    keys = [queue] + [f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS[1:]]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.llen(key)
    return int(sum(pipe.execute()))


def install_queue_depth(settings: Settings) -> None:
    """Make `vocalis_queue_depth` read the broker each time it is scraped."""
    client = redis.Redis.from_url(broker_url(settings), socket_timeout=0.5)

    def reader(queue: str) -> Any:
        def read() -> float:
            try:
                return float(queue_length(client, queue))
            except redis.RedisError:
                return float("nan")  # unknown, rather than a reassuring zero

        return read

    for queue in QUEUES:
        QUEUE_DEPTH.labels(queue=queue).set_function(reader(queue))
