"""Stopping `vocalis run` stops everything it started (issue 15, clean start and stop).

`docker stop`, systemd and `kill` send SIGTERM to the main process; a terminal or an init
that kills the whole group sends it to every process of the group. Either way no process
started by `vocalis run` (API server processes, worker, beat, the embedded `redis-server`)
may be left running, and a realtime conversation open at the time ends (`shutdown`).
Killing the supervisor outright (SIGKILL) still takes its children with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from vocalis.core.processes import descendants_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ids(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, session) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[2]), int(fields[3])


def _alive(pid: int) -> bool:
    ids = _ids(pid)
    return ids is not None and ids[0] != "Z"


def _in_group_or_session(leader: int) -> list[int]:
    """Live processes whose process group or session is the one `leader` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            ids = _ids(int(entry.name))
            if ids is not None and ids[0] != "Z" and leader in (ids[1], ids[2]):
                found.append(int(entry.name))
    return found


class Run:
    """One `vocalis run` in its own session, on a free port with a fresh data dir."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOCALIS_")}
        env.update(
            VOCALIS_DATA_DIR=str(self.data_dir),
            VOCALIS_PORT=str(port),
            VOCALIS_LOG_LEVEL="WARNING",
            VOCALIS_SERVE_WORKERS="2",  # uvicorn's supervisor and its worker processes
            VOCALIS_VOICE_WARM_ENGINES="false",
            VOCALIS_SHUTDOWN_TIMEOUT_S="10",
            VOCALIS_WORKER_METRICS_PORT="0",
        )
        self.log = tmp_path / "run.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vocalis", "run"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            text=True,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{port}"
        self.key = ""

    def start(self, timeout: float = 120) -> list[int]:
        """Wait for the key, /healthz and every child; return the processes it started."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while not self.key and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("VOCALIS_API_KEY="):
                self.key = line.strip().split("=", 1)[1]
            elif not line and self.proc.poll() is not None:
                pytest.fail(f"vocalis run exited; log:\n{self.log.read_text()[-3000:]}")
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        else:
            pytest.fail(f"no /healthz; log:\n{self.log.read_text()[-3000:]}")
        # redis-server, the API (uvicorn's supervisor and 2 server processes), worker, beat.
        while time.monotonic() < deadline:
            started = descendants_of(self.proc.pid)
            if len(started) >= 6:
                return started
            time.sleep(0.25)
        pytest.fail(f"children: {started}; log:\n{self.log.read_text()[-3000:]}")

    def wait_exit(self, timeout: float = 90) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"vocalis run did not stop; log:\n{self.log.read_text()[-3000:]}")

    def assert_nothing_left(self, started: list[int]) -> None:
        deadline = time.monotonic() + 10  # children of a killed parent get SIGTERM now
        while time.monotonic() < deadline:
            left = [pid for pid in started if _alive(pid)]
            left += _in_group_or_session(self.proc.pid)
            if not left:
                return
            time.sleep(0.2)
        described = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left}
        pytest.fail(f"left running: {described}; log:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """Clean-up after a failed test: nothing may survive the test either."""
        for pid in [self.proc.pid, *descendants_of(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    server = Run(tmp_path)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.kill()


def test_sigterm_stops_every_process_and_ends_open_realtime_conversations(run: Run) -> None:
    started = run.start()
    auth = {"Authorization": f"Bearer {run.key}"}
    agent = httpx.post(
        f"{run.base}/v1/agents",
        json={"name": "Support", "instructions": "Help.", "knowledge_base_ids": []},
        headers=auth,
        timeout=30,
    )
    assert agent.status_code == 201, agent.text
    url = run.base.replace("http://", "ws://") + f"/v1/realtime?agent_id={agent.json()['id']}"
    with connect(url, additional_headers=auth, open_timeout=30) as ws:
        created = json.loads(ws.recv(timeout=30))
        assert created["type"] == "session.created"
        conversation_id = created["vocalis"]["conversation_id"]
        os.kill(run.proc.pid, signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=60)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # a clean close
        assert run.wait_exit() == 0
    run.assert_nothing_left(started)

    database = sqlite3.connect(run.data_dir / "vocalis.db")
    try:
        (body,) = database.execute(
            "SELECT body FROM json_documents WHERE collection = 'conversations' AND id = ?",
            (conversation_id,),
        ).fetchone()
        events = [
            json.loads(data)
            for (data,) in database.execute(
                "SELECT data FROM outbox_events WHERE type = 'conversation.ended'"
            )
        ]
    finally:
        database.close()
    conversation = json.loads(body)
    assert (conversation["status"], conversation["ended_reason"]) == ("ended", "shutdown")
    assert [e["reason"] for e in events if e["conversation_id"] == conversation_id] == ["shutdown"]


def test_sigterm_to_the_process_group_leaves_nothing_running(run: Run) -> None:
    started = run.start()
    os.killpg(run.proc.pid, signal.SIGTERM)
    run.wait_exit()
    run.assert_nothing_left(started)


def test_children_die_with_a_killed_supervisor(run: Run) -> None:
    started = run.start()
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait()
    run.assert_nothing_left(started)
