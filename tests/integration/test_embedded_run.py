"""`vocalis run` on the embedded defaults: no external service, data kept across restarts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One `vocalis run` process."""

    def __init__(self, data_dir: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOCALIS_")}
        env.update(
            VOCALIS_DATA_DIR=str(data_dir), VOCALIS_PORT=str(port), VOCALIS_LOG_LEVEL="WARNING"
        )
        self.log = data_dir.parent / f"run-{port}-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vocalis", "run"],
            env=env,
            cwd=data_dir.parent,
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            text=True,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{port}"

    def key_line(self, timeout: float = 60) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("VOCALIS_API_KEY="):
                return line.strip().split("=", 1)[1]
            if not line and self.proc.poll() is not None:
                break
        pytest.fail(f"no key line printed; log:\n{self.log.read_text()[-3000:]}")

    def wait_ready(self, timeout: float = 60) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"{self.base}/readyz", timeout=2)
                if response.status_code == 200:
                    return response
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.25)
        pytest.fail(f"server not ready; log:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    from vocalis.adapters import embedded_redis

    embedded_redis.stop(path)


def test_run_serves_with_no_external_service_and_keeps_data(data_dir: Path) -> None:
    port = _free_port()
    first = Server(data_dir, port)
    try:
        key = first.key_line()
        first.wait_ready()
        ready = httpx.get(f"{first.base}/readyz", headers={"Authorization": f"Bearer {key}"}).json()
        assert set(ready["backends"]) >= {"database", "redis", "documents", "objects", "secrets"}
        assert ready["backends"]["database"]["adapter"] == "sqlite"
        assert ready["backends"]["redis"]["adapter"] == "embedded"
        auth = {"Authorization": f"Bearer {key}"}
        org = httpx.get(f"{first.base}/v1/org", headers=auth)
        assert org.status_code == 200
        wrong = httpx.get(f"{first.base}/v1/org", headers={"Authorization": "Bearer vk_nope"})
        assert wrong.status_code == 401
        assert wrong.headers["content-type"] == "application/problem+json"
        assert wrong.json()["code"] == "auth_invalid"
        created = httpx.post(f"{first.base}/v1/api-keys", json={"name": "kept"}, headers=auth)
        assert created.status_code == 201
    finally:
        first.stop()
    key_file = data_dir / "api-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_text().strip() == key

    second = Server(data_dir, port)
    try:
        assert second.key_line() == key  # reused, not recreated
        second.wait_ready()
        names = [
            k["name"] for k in httpx.get(f"{second.base}/v1/api-keys", headers=auth).json()["data"]
        ]
        assert "kept" in names
        assert httpx.get(f"{second.base}/v1/org", headers=auth).json()["id"] == org.json()["id"]
    finally:
        second.stop()
