"""What the console's browser tests and `scripts/screenshots.py` share: `vocalis run` on its
embedded defaults in a fresh data directory, Debian's Chromium with a fake microphone, the
spoken question (espeak-ng) and a document that answers it."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import httpx

from tests.fixtures.vocalis_run import RunningVocalis
from tests.fixtures.vocalis_run import ServerFailed as ServerFailed  # the console tests' import
from tests.fixtures.vocalis_run import vocalis_run as vocalis_run
from vocalis.adapters.espeak_tts import EspeakTTS

CHROMIUM = "/usr/bin/chromium"
QUESTION = "What is your refund policy?"
ANSWER = "thirty days"
POLICIES = (
    "# Refunds\n\nOur refund policy: a refund is given within thirty days of purchase with "
    "the receipt.\n\n# Opening hours\n\nThe support line is open Monday to Friday from nine "
    "in the morning until five.\n"
)


ConsoleServer = RunningVocalis  # the console tests' name for it


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
