"""The retry policy: which errors are retried, and after how long."""

from __future__ import annotations

import httpx
import pytest
import redis.exceptions
import sqlalchemy.exc

from vocalis.core.errors import BackendUnavailable, NotFound
from vocalis.workers.retry import (
    RetryPolicy,
    TransientError,
    format_duration,
    is_transient,
    parse_duration,
    parse_schedule,
)


def upper(low: float, high: float) -> float:
    return high


def lower(low: float, high: float) -> float:
    return low


def test_backoff_is_exponential_up_to_the_cap() -> None:
    policy = RetryPolicy(max_retries=10, base_s=2.0, cap_s=30.0)
    assert [policy.delay(n, upper) for n in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_full_jitter_draws_between_zero_and_the_bound() -> None:
    policy = RetryPolicy(max_retries=10, base_s=2.0, cap_s=30.0)
    assert policy.delay(3, lower) == 0.0
    draws = [policy.delay(3) for _ in range(200)]
    assert all(0.0 <= d <= 16.0 for d in draws)
    assert len({round(d, 6) for d in draws}) > 150  # spread, not one value


def test_retries_stop_at_the_per_task_maximum() -> None:
    policy = RetryPolicy(max_retries=2)
    assert [policy.can_retry(n) for n in range(4)] == [True, True, False, False]


def test_a_schedule_gives_its_delays_in_order_with_bounded_jitter() -> None:
    policy = RetryPolicy.from_schedule([5, 30, 120])
    assert policy.max_retries == 3
    assert [policy.delay(n, lower) for n in range(3)] == [5, 30, 120]
    assert policy.delay(1, upper) == pytest.approx(33.0)


@pytest.mark.parametrize(
    "exc",
    [
        TransientError("try later"),
        ConnectionRefusedError(),
        TimeoutError(),
        BackendUnavailable("redis down"),
        redis.exceptions.ConnectionError("gone"),
        sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed")),
        httpx.ConnectError("refused"),
    ],
)
def test_errors_marked_transient_are_retried(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [ValueError("bad"), KeyError("x"), NotFound("gone"), TypeError()])
def test_other_errors_are_not_retried(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_an_error_caused_by_a_transient_one_is_transient() -> None:
    try:
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_schedules_are_parsed_from_human_durations() -> None:
    assert parse_schedule("5s,30s,2m,10m,1h,6h") == (5, 30, 120, 600, 3600, 21600)
    assert parse_duration("250ms") == 0.25
    assert parse_duration("1.5") == 1.5
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    assert format_duration(21600) == "6h"
    assert format_duration(0.3) == "0.3s"
