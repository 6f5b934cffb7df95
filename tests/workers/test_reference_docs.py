"""The generated reference lists every queue, route, task, beat job and webhook event."""

from __future__ import annotations

import pytest

from vocalis.events.registry import EVENTS
from vocalis.webhooks.docs import webhook_events
from vocalis.workers.base import TASKS
from vocalis.workers.celery_app import BEAT_JOBS, QUEUES, ROUTES
from vocalis.workers.docs import celery_reference


def test_the_celery_reference_names_every_queue_route_task_and_job() -> None:
    text = celery_reference()
    for queue in QUEUES:
        assert f"| `{queue}` |" in text
    for pattern, queue in ROUTES.items():
        assert f"| `{pattern}` | `{queue}` |" in text
    for name in [n for n in TASKS if not n.startswith("vocalis.tests.")]:
        assert f"`{name}`" in text
    assert "| `vocalis.webhooks.deliver` | `webhooks` |" in text
    assert "| `vocalis.conversations.analysis.analyze` | `analysis` |" in text
    for job in BEAT_JOBS.values():
        assert f"`{job.task}`" in text
    assert "full jitter" in text and "dead_letters" in text


def test_the_webhook_reference_has_every_event_with_its_fields() -> None:
    text = webhook_events()
    for name, spec in EVENTS.items():
        assert f"### `{name}`" in text
        for field in spec.schema()["properties"]:
            assert f"| `{field}` |" in text
    assert "webhook-signature" in text and "whsec_" in text


def test_the_references_do_not_depend_on_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = (celery_reference(), webhook_events())
    monkeypatch.setenv("VOCALIS_WEBHOOK_RETRY_SCHEDULE", "1s")
    monkeypatch.setenv("VOCALIS_TASK_MAX_RETRIES", "1")
    assert (celery_reference(), webhook_events()) == before
