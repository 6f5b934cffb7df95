"""LLM metrics: re-exported from the one registry, `vocalis.core.metrics`."""

from __future__ import annotations

from vocalis.core.metrics import (
    LLM_COST,
    LLM_LATENCY,
    LLM_LATENCY_BUCKETS,
    LLM_REQUESTS,
    LLM_TIME_TO_FIRST_TOKEN,
    LLM_TOKENS,
)

__all__ = [
    "LLM_COST",
    "LLM_LATENCY",
    "LLM_LATENCY_BUCKETS",
    "LLM_REQUESTS",
    "LLM_TIME_TO_FIRST_TOKEN",
    "LLM_TOKENS",
]
