"""A worker's probes: `/readyz` answers 200 only while the broker answers, `/healthz` while
the process lives, `/metrics` serves the registry (real Redis, real sockets)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from vocalis.workers import health_server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serving(broker_url: str) -> Iterator[str]:
    port = _free_port()
    server = health_server.start(port, broker_url, host="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def test_ready_while_the_broker_answers(redis_url: str) -> None:
    with _serving(redis_url) as base:
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ok", "broker": "ok"}
        assert httpx.get(f"{base}/healthz").status_code == 200
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.status_code == 200 and "vocalis_task_total" in metrics.text
        assert httpx.get(f"{base}/nope").status_code == 404


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_unready_but_alive_when_the_broker_is_down(scheme: str) -> None:
    dead = f"{scheme}://127.0.0.1:{_free_port()}/0"  # nothing listens there
    with _serving(dead) as base:
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503
        body = ready.json()
        assert body["broker"] == "fail" and body["detail"]
        assert httpx.get(f"{base}/healthz").status_code == 200


def test_the_broker_check_never_hangs_on_a_silent_broker() -> None:
    """A broker that accepts the connection but never answers: the check gives up."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        result = health_server.check_broker(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    assert result != "ok" and "Timeout" in result
