"""`vocalis_task`: retries transient failures, dead-letters the rest, honours idempotency keys.

Tasks run eagerly (`Task.apply`) in a thread, with the same wrapper, retry policy and
dead-letter store a worker uses; the real-worker tests cover the broker side.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Task
from sqlalchemy import select

from tests.webhooks.harness import fast_settings
from vocalis.core.backends import Backends
from vocalis.core.metrics import DEAD_LETTERS
from vocalis.core.migrate import upgrade
from vocalis.wiring import build_backends
from vocalis.workers import runtime
from vocalis.workers.base import TASKS, TaskContext, vocalis_task
from vocalis.workers.models import DeadLetter
from vocalis.workers.retry import TransientError

calls: dict[str, int] = {}


def _count(name: str) -> int:
    calls[name] = calls.get(name, 0) + 1
    return calls[name]


@vocalis_task("vocalis.tests.flaky")
async def flaky(ctx: TaskContext, failures: int, org_id: str | None = None) -> str:
    """Fails transiently `failures` times, then succeeds."""
    if _count(f"flaky:{failures}:{org_id}") <= failures:
        raise TransientError("backend busy")
    return "done"


@vocalis_task("vocalis.tests.broken")
async def broken(ctx: TaskContext, **kwargs: Any) -> None:
    """Always fails with a bug."""
    _count("broken")
    raise ValueError("no such thing")


def _key(order_id: str) -> str:
    """the order id"""
    return order_id


@vocalis_task("vocalis.tests.charge", idempotency_key=_key)
async def charge(ctx: TaskContext, order_id: str) -> str:
    """Charges an order once."""
    _count(f"charge:{order_id}")
    return "charged"


@pytest.fixture(autouse=True)
def _forget_test_tasks() -> Iterator[None]:
    yield
    for name in [n for n in TASKS if n.startswith("vocalis.tests.")]:
        TASKS.pop(name)


@pytest.fixture
async def backends(tmp_path: Path, redis_url: str) -> AsyncIterator[Backends]:
    url = f"sqlite+aiosqlite:///{tmp_path}/w.db"
    settings = fast_settings(tmp_path / "data", url, redis_url, task_max_retries=2)
    await asyncio.to_thread(upgrade, url)
    runtime.install(build_backends)
    runtime.configure(settings)
    built = await build_backends(settings)
    yield built
    await asyncio.to_thread(runtime.close_all)
    runtime.configure(None)
    await built.close()


async def _apply(task: Task, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(lambda: task.apply(args=args, kwargs=kwargs))


async def _letters(backends: Backends) -> list[DeadLetter]:
    async with backends.database.session() as session:
        return list((await session.scalars(select(DeadLetter))).all())


async def test_a_transient_failure_is_retried_until_it_succeeds(backends: Backends) -> None:
    result = await _apply(flaky, 2, org_id="org_a")
    assert result.state == "SUCCESS"
    assert result.result == "done"
    assert calls["flaky:2:org_a"] == 3
    assert await _letters(backends) == []


async def test_a_task_exhausting_its_retries_lands_in_the_dead_letter_store(
    backends: Backends,
) -> None:
    before = DEAD_LETTERS.labels(task="vocalis.tests.flaky")._value.get()
    result = await _apply(flaky, 99, org_id="org_b")
    assert result.state == "FAILURE"
    assert calls["flaky:99:org_b"] == 3  # the first run and max_retries=2 retries
    [letter] = await _letters(backends)
    assert letter.task_name == "vocalis.tests.flaky"
    assert letter.args == [99]
    assert letter.kwargs == {"org_id": "org_b"}
    assert letter.org_id == "org_b"
    assert letter.transient is True
    assert letter.attempts == 3
    assert letter.error_type == "TransientError"
    assert letter.first_failed_at <= letter.last_failed_at
    assert letter.replayable is True
    assert DEAD_LETTERS.labels(task="vocalis.tests.flaky")._value.get() == before + 1


async def test_a_permanent_error_is_dead_lettered_without_retrying(backends: Backends) -> None:
    result = await _apply(broken, order="o-1")
    assert result.state == "FAILURE"
    assert calls["broken"] >= 1
    [letter] = await _letters(backends)
    assert letter.transient is False
    assert letter.attempts == 1
    assert letter.error == "no such thing"


async def test_secrets_in_task_arguments_are_redacted_and_block_replay(
    backends: Backends,
) -> None:
    await _apply(broken, api_key="sk-live-abcdefghijklmnop", note="call +44 20 7946 0958")
    [letter] = await _letters(backends)
    assert letter.kwargs["api_key"] == "[SECRET]"
    assert "7946" not in letter.kwargs["note"]
    assert letter.replayable is False


async def test_an_idempotency_key_makes_a_second_run_do_nothing(backends: Backends) -> None:
    first = await _apply(charge, "order-7")
    second = await _apply(charge, "order-7")
    assert first.result == "charged"
    assert second.result is None
    assert calls["charge:order-7"] == 1
