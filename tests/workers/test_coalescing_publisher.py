"""Outbox dispatch messages under load: one publish in flight per process; ids committed
meanwhile leave together in the next message, and a lone publish is never delayed."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from vocalis.workers import publish


def test_ids_committed_during_a_publish_share_the_next_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[str, list[Any]]] = []
    first_started = threading.Event()
    release_first = threading.Event()

    def fake_publish(settings: Any, name: str, args: Any = (), *a: Any, **k: Any) -> str:
        if not sent:
            first_started.set()
            release_first.wait(5)
        sent.append((name, list(args)))
        return "id"

    monkeypatch.setattr(publish, "publish", fake_publish)
    monkeypatch.setattr(publish, "configured_settings", lambda: None)
    batcher = publish.CoalescingPublisher("one", "many")
    batcher.add(["evt_1"])  # published at once
    assert first_started.wait(5)
    batcher.add(["evt_2", "evt_3"])  # while the first is on its way
    batcher.add(["evt_4"])
    release_first.set()
    deadline = time.monotonic() + 5
    while len(sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert sent == [("one", ["evt_1"]), ("many", [["evt_2", "evt_3", "evt_4"]])]

    batcher.add(["evt_5"])  # idle again: alone, at once
    deadline = time.monotonic() + 5
    while len(sent) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent[2] == ("one", ["evt_5"])
