"""The one retry policy: which errors are retried, and how long to wait before each retry.

Only errors marked transient are retried: subclasses of `TransientError`, and the library
errors registered with `mark_transient` (connection resets, timeouts, a database that went
away). Everything else is a bug or a permanent refusal and goes straight to the
dead-letter store, because retrying it would only repeat the failure.

Delays grow exponentially with *full jitter* (a uniform draw between 0 and the exponential
bound, capped per task), which spreads a burst of failures out instead of retrying them in
lock-step against a backend that is just recovering.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
import redis.exceptions
import sqlalchemy.exc

from vocalis.core.errors import BackendUnavailable
from vocalis.ports.llm import ProviderTimeout, ProviderUnavailable


class TransientError(Exception):
    """Raise (or subclass) this to say "try again later": the failure may go away."""


_TRANSIENT: list[type[BaseException]] = [TransientError]


def mark_transient(*types: type[BaseException]) -> None:
    """Register exception types that are worth retrying."""
    for kind in types:
        if kind not in _TRANSIENT:
            _TRANSIENT.append(kind)


def transient_types() -> tuple[type[BaseException], ...]:
    """Every exception type that is retried (for the documentation)."""
    return tuple(_TRANSIENT)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or the error it wraps) is marked transient."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, tuple(_TRANSIENT)):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False


mark_transient(
    ConnectionError,  # builtins: refused, reset, aborted
    TimeoutError,
    BackendUnavailable,
    ProviderTimeout,
    ProviderUnavailable,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.OperationalError,  # the database went away or is locked
    sqlalchemy.exc.DisconnectionError,
    httpx.TransportError,
)

Random = Callable[[float, float], float]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and after how long a task is retried.

    With `schedule` the delays are taken from it in order (webhook deliveries); without,
    they are exponential with full jitter: uniform in [0, min(cap, base * 2**retry)].
    """

    max_retries: int = 5
    base_s: float = 2.0
    cap_s: float = 600.0
    schedule: tuple[float, ...] = ()
    schedule_jitter: float = 0.1  # schedules get up to +10 %, so endpoints are not hit in step

    @classmethod
    def from_schedule(cls, delays: Sequence[float], jitter: float = 0.1) -> RetryPolicy:
        """A policy retrying once per entry of `delays`."""
        return cls(max_retries=len(delays), schedule=tuple(delays), schedule_jitter=jitter)

    def can_retry(self, retries_done: int) -> bool:
        """Whether another retry is allowed after `retries_done` retries."""
        return retries_done < self.max_retries

    def delay(self, retries_done: int, rand: Random = random.uniform) -> float:
        """Seconds to wait before retry number `retries_done + 1`."""
        if self.schedule:
            base = self.schedule[min(retries_done, len(self.schedule) - 1)]
            return base + rand(0.0, base * self.schedule_jitter)
        bound = min(self.cap_s, self.base_s * (2**retries_done))
        return rand(0.0, bound)

    def describe(self) -> str:
        """The policy in words (for the documentation)."""
        if self.schedule:
            steps = ", ".join(format_duration(d) for d in self.schedule)
            return f"{self.max_retries} retries after {steps} (+ up to {self.schedule_jitter:.0%})"
        return (
            f"up to {self.max_retries} retries, exponential from {self.base_s:g} s with full "
            f"jitter, capped at {format_duration(self.cap_s)}"
        )


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `5s`, `2m`, `1.5h` or a bare number of seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 2m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_schedule(text: str) -> tuple[float, ...]:
    """Delays in a comma-separated schedule such as `5s,30s,2m,10m,1h,6h`."""
    return tuple(parse_duration(part) for part in text.split(",") if part.strip())


def format_duration(seconds: float) -> str:
    """A short human form of a duration (`30s`, `2m`, `6h`)."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
