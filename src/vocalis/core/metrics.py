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

__all__ = [
    "AUTH_FAILURES",
    "BACKEND_UP",
    "HTTP_IN_FLIGHT",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "LATENCY_BUCKETS",
    "RATE_LIMITED",
    "REGISTRY",
]
