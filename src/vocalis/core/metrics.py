"""The one registry of Prometheus metrics (prefix `vocalis_`).

Every metric the system exports is declared here, with its help text and labels; the
documentation's metrics table is generated from `REGISTRY`.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# --- HTTP ------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "vocalis_http_requests_total",
    "HTTP requests handled, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "vocalis_http_request_duration_seconds",
    "HTTP request latency in seconds, by method, route template and status code.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("vocalis_http_requests_in_flight", "HTTP requests currently being handled.")
RATE_LIMITED = Counter(
    "vocalis_rate_limited_total", "Requests refused with 429 by the per-key rate limiter."
)
AUTH_FAILURES = Counter(
    "vocalis_auth_failures_total",
    "Requests refused for missing or invalid credentials.",
    ["reason"],
)

# --- backends --------------------------------------------------------------------------
BACKEND_UP = Gauge(
    "vocalis_backend_up",
    "1 when the last readiness check of a backend passed, else 0.",
    ["backend"],
)

# --- workers and webhooks ----------------------------------------------------------------
TASK_TOTAL = Counter(
    "vocalis_task_total",
    "Celery tasks finished, by task name and outcome "
    "(success, retry, failure, dead_letter, skipped).",
    ["task", "outcome"],
)
TASK_DURATION = Histogram(
    "vocalis_task_duration_seconds",
    "Celery task run time in seconds, by task name.",
    ["task"],
    buckets=LATENCY_BUCKETS,
)
TASK_RETRIES = Counter(
    "vocalis_task_retries_total",
    "Task retries scheduled after a transient failure, by task name.",
    ["task"],
)
QUEUE_DEPTH = Gauge(
    "vocalis_queue_depth",
    "Messages waiting in a Celery queue on the broker (read at scrape).",
    ["queue"],
)
DEAD_LETTERS = Counter(
    "vocalis_dead_letters",
    "Tasks moved to the dead-letter store after exhausting retries or failing "
    "permanently, by task name.",
    ["task"],
)
WEBHOOK_ATTEMPTS = Counter(
    "vocalis_webhook_delivery_attempts_total",
    "Webhook delivery attempts, by outcome (success, http_error, network_error, "
    "timeout, forbidden).",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "vocalis_webhook_delivery_duration_seconds",
    "Time from sending a webhook to reading the receiver's answer, in seconds.",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "vocalis_webhook_endpoints_disabled_total",
    "Webhook endpoints disabled automatically after a run of failures.",
)
OUTBOX_EVENTS = Counter(
    "vocalis_outbox_events_total",
    "Events written to the transactional outbox, by event type.",
    ["type"],
)

__all__ = [
    "AUTH_FAILURES",
    "BACKEND_UP",
    "DEAD_LETTERS",
    "HTTP_IN_FLIGHT",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "LATENCY_BUCKETS",
    "OUTBOX_EVENTS",
    "QUEUE_DEPTH",
    "RATE_LIMITED",
    "REGISTRY",
    "TASK_DURATION",
    "TASK_RETRIES",
    "TASK_TOTAL",
    "WEBHOOK_ATTEMPTS",
    "WEBHOOK_ENDPOINTS_DISABLED",
    "WEBHOOK_LATENCY",
]

# --- LLM ----------------------------------------------------------------------------------
LLM_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)

LLM_REQUESTS = Counter(
    "vocalis_llm_requests_total",
    "Chat-model calls, by provider, model and outcome "
    "(ok, timeout, unavailable, bad_request, circuit_open).",
    ["provider", "model", "outcome"],
)
LLM_LATENCY = Histogram(
    "vocalis_llm_latency_seconds",
    "Duration of a chat-model call until its last token, by provider and model.",
    ["provider", "model"],
    buckets=LLM_LATENCY_BUCKETS,
)
LLM_TIME_TO_FIRST_TOKEN = Histogram(
    "vocalis_llm_time_to_first_token_seconds",
    "Time from a streamed chat-model call to its first text or tool-call delta.",
    ["provider", "model"],
    buckets=LLM_LATENCY_BUCKETS,
)
LLM_TOKENS = Counter(
    "vocalis_llm_tokens_total",
    "Tokens used, by provider, model and kind (prompt, completion).",
    ["provider", "model", "kind"],
)
LLM_COST = Counter(
    "vocalis_llm_cost_usd_total",
    "Estimated spend in US dollars from the configured per-model prices.",
    ["provider", "model"],
)
