"""What the console's browser tests and `scripts/screenshots.py` share: `vocalis run` on its
embedded defaults in a fresh data directory, Debian's Chromium with a fake microphone, the
spoken question (espeak-ng) and a document that answers it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from vocalis.adapters.espeak_tts import EspeakTTS

CHROMIUM = "/usr/bin/chromium"
QUESTION = "What is your refund policy?"
ANSWER = "thirty days"
POLICIES = (
    "# Refunds\n\nOur refund policy: a refund is given within thirty days of purchase with "
    "the receipt.\n\n# Opening hours\n\nThe support line is open Monday to Friday from nine "
    "in the morning until five.\n"
)


class ServerFailed(RuntimeError):
    """`vocalis run` did not come up."""


@dataclass
class ConsoleServer:
    """`vocalis run` on a free port: its base URL and the first-run owner key."""

    base_url: str
    key: str
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def vocalis_run(root: Path, timeout_s: float = 240) -> Iterator[ConsoleServer]:
    """`vocalis run` (what `make run` starts) with its data under `root`, until exit."""
    data_dir = root / "data"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOCALIS_")}
    env.update(VOCALIS_DATA_DIR=str(data_dir), VOCALIS_PORT=str(port), VOCALIS_LOG_LEVEL="WARNING")
    log = root / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vocalis", "run"],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        key = ""
        deadline = time.monotonic() + timeout_s
        while not key and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            if line.startswith("VOCALIS_API_KEY="):
                key = line.strip().split("=", 1)[1]
        if not key:
            raise ServerFailed(f"`vocalis run` printed no key; log:\n{log.read_text()[-3000:]}")
        server = ConsoleServer(f"http://127.0.0.1:{port}", key, log)
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{server.base_url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise ServerFailed(f"`vocalis run` never became ready; log:\n{log.read_text()[-3000:]}")
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        from vocalis.adapters import embedded_redis

        embedded_redis.stop(data_dir)


async def synthesise_question(path: Path, text: str = QUESTION) -> Path:
    """A WAV of `text` spoken by espeak-ng (the library the server's TTS uses), with a second
    of silence before and twelve after (16-bit mono at espeak's 22.05 kHz)."""
    tts = EspeakTTS()
    speech = b"".join([chunk async for chunk in tts.synthesize_stream(text)])
    silence = b"\0\0" * tts.sample_rate
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(tts.sample_rate)
        out.writeframes(silence + speech + silence * 12)
    return path


def chromium_args(microphone_wav: Path) -> list[str]:
    """Headless Chromium flags: a fake microphone saying the WAV once (`%noloop`), no prompt."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone_wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
        "--no-sandbox",
    ]


def agent_with_knowledge(server: ConsoleServer, name: str = "Voice assistant") -> str:
    """A knowledge base holding the policies (ingested by the worker) and an agent on it."""
    with server.client() as http:
        kb = http.post("/v1/knowledge-bases", json={"name": f"{name} policies"})
        kb.raise_for_status()
        kb_id = kb.json()["id"]
        files = {
            "file": (f"{name.lower().replace(' ', '-')}.md", POLICIES.encode(), "text/markdown")
        }
        doc = http.post(f"/v1/knowledge-bases/{kb_id}/documents", files=files)
        doc.raise_for_status()
        deadline = time.monotonic() + 180
        url = f"/v1/knowledge-bases/{kb_id}/documents/{doc.json()['id']}"
        status = "queued"
        while status != "ready":
            if status == "failed" or time.monotonic() > deadline:
                raise ServerFailed(f"the document did not become ready: {status}")
            time.sleep(0.5)
            try:
                status = http.get(url).json()["status"]
            except httpx.TransportError:  # a kept-alive connection the server just closed
                continue
        agent = http.post(
            "/v1/agents",
            json={
                "name": name,
                "instructions": "Answer from the store's policies.",
                "knowledge_base_ids": [kb_id],
            },
        )
        agent.raise_for_status()
        return str(agent.json()["id"])
