"""The one registry of Redis key patterns; the docs' Redis table is generated from it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKey:
    """A key pattern, what its value holds and how long it lives."""

    pattern: str
    value: str
    ttl: str

    def format(self, **parts: str) -> str:
        """The concrete key for the given parts."""
        return self.pattern.format(**parts)


KEYS: dict[str, RedisKey] = {}


def declare(name: str, pattern: str, value: str, ttl: str) -> RedisKey:
    """Declare a key pattern once."""
    if name in KEYS:
        raise ValueError(f"redis key {name!r} declared twice")
    KEYS[name] = RedisKey(pattern, value, ttl)
    return KEYS[name]


RATE_LIMIT_BUCKET = declare(
    "rate_limit_bucket",
    "vocalis:rl:{key_id}",
    "Hash `tokens` (float) and `ts` (ms) of the token bucket for one API key.",
    "Twice the time to refill the bucket from empty.",
)
API_KEY_LAST_USED = declare(
    "api_key_last_used",
    "vocalis:keyused:{key_id}",
    "Marker that limits `last_used_at` writes to one per minute per key.",
    "60 s.",
)

# --- workers and webhooks ----------------------------------------------------------------
TASK_FIRST_FAILURE = declare(
    "task_first_failure",
    "vocalis:task:first-failure:{task_id}",
    "ISO time of a task's first failure, kept across its retries for the dead-letter row.",
    "7 days.",
)
TASK_DONE = declare(
    "task_done",
    "vocalis:task:done:{task}:{key}",
    "Marker that an idempotent task finished for this idempotency key; a redelivered "
    "message finding it does nothing.",
    "7 days.",
)
WEBHOOK_DELIVERY_LEASE = declare(
    "webhook_delivery_lease",
    "vocalis:webhook:lease:{delivery_id}",
    "The task id of the worker currently sending this delivery, so a duplicate message "
    "waits instead of sending twice.",
    "The delivery timeout plus 2 s.",
)
