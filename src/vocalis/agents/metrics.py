"""LLM metrics (prefix `vocalis_llm_`), on prometheus_client's default registry.

Declared here until they move into the one registry, `vocalis.core.metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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

__all__ = ["LLM_COST", "LLM_LATENCY", "LLM_REQUESTS", "LLM_TIME_TO_FIRST_TOKEN", "LLM_TOKENS"]
