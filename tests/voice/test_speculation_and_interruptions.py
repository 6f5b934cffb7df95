"""Speculative replies and interruptions that behave, through the official SDK's realtime
client with the real engines (Silero VAD, faster-whisper tiny.en, espeak-ng).

- A reply prepared at a pause (before the turn is confirmed) is thrown away without a trace
  when the caller goes on: no message, no agent memory, no event in the outbox (the
  webhooks' source), no realtime event.
- A backchannel ("okay") over the agent's answer does not cancel it.
- A real interruption stops the answer's audio within 150 ms of the caller's first sound.
- A false interruption (a short sound, no words) holds the answer, which then resumes
  where it stopped: nothing of it is lost or repeated.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from tests.voice.helpers import (
    WARRANTY,
    Microphone,
    Received,
    VoiceServer,
    audio_update,
    pcm_of,
    read_sdk,
    silence_in,
    speech,
    stream,
    wire_format,
)
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.agents.extractive import GOODBYE_REPLY
from vocalis.agents.graph import conversation_messages
from vocalis.agents.runtime import get_runtime
from vocalis.core import audio
from vocalis.events.models import OutboxEvent
from vocalis.events.outbox import outbox_sink
from vocalis.ports.tts import synthesize
from vocalis.voice.pipeline import speakable
from vocalis.workers import publish

FMT = wire_format("pcm24")
STOP_WITHIN_S = 0.150  # a real interruption silences the answer this soon after its onset


def metric(name: str, **labels: str) -> float:
    """A Prometheus sample's current value (0 when it was never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def resumed_answers() -> float:
    """Answers held for speech over them and then resumed."""
    return metric("vocalis_voice_interruptions_total", outcome="false") + metric(
        "vocalis_voice_interruptions_total", outcome="backchannel"
    )


def llm_requests() -> float:
    """Chat-model calls so far (all providers and outcomes)."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "vocalis_llm_requests"
        for sample in family.samples
        if sample.name == "vocalis_llm_requests_total"
    )


async def until(condition: Any, what: str, timeout: float = 120.0) -> None:
    """Wait until `condition()` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.05)


def leading_silence_s(pcm: bytes, rate: int) -> float:
    """How long `pcm` (PCM16) is quiet before its first sound."""
    samples = np.abs(np.frombuffer(pcm, "<i2").astype(np.int32))
    loud = np.flatnonzero(samples > 1000)
    return float(loud[0]) / rate if len(loud) else 0.0


class Call:
    """An SDK realtime connection with its received events and a live microphone."""

    def __init__(
        self,
        connection: Any,
        received: Received,
        microphone: Microphone,
        send: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self.connection, self.received, self.microphone = connection, received, microphone
        self.send = send

    def audio_of(self, response_id: str) -> list[dict[str, Any]]:
        """The audio deltas of one response, in order."""
        return [
            e
            for e in self.received.of("response.output_audio.delta")
            if e["response_id"] == response_id
        ]


@contextlib.asynccontextmanager
async def call(
    server: VoiceServer, *, live_microphone: bool = True, **turn_detection: Any
) -> AsyncIterator[Call]:
    """A spoken session (24 kHz PCM both ways) with server VAD; a live microphone sends
    silence between utterances, otherwise the test sends all audio itself (`Call.send`)."""
    received = Received()
    client = server.openai()
    async with client.realtime.connect(model=server.agent_id) as connection:
        reader = asyncio.create_task(read_sdk(connection, received))
        await received.wait_for("session.created")
        update = audio_update("pcm24", **turn_detection)
        await connection.session.update(session=update)  # type: ignore[arg-type]
        await received.wait_for("session.updated")

        async def send(chunk: bytes) -> None:
            await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())

        try:
            microphone = Microphone(send, FMT)
            if not live_microphone:
                yield Call(connection, received, microphone, send)
                return
            async with microphone:
                yield Call(connection, received, microphone, send)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def on_server(server: VoiceServer, coroutine: Any) -> Any:
    """Run a coroutine in the server's event loop (where its graph and database live)."""
    async with server.live.client() as http:
        assert (await http.get("/_test/loop")).status_code == 200
    loop = server.live.app.state.test_loop
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))


async def spoken_seconds(server: VoiceServer, sentences: list[str]) -> float:
    """How long the server's own TTS engine speaks `sentences`, one synthesis each."""
    tts = (await server.live.server_backends.voice.get()).tts
    seconds = 0.0
    for sentence in sentences:
        seconds += audio.duration_seconds(await synthesize(tts, sentence), tts.sample_rate)
    return seconds


@pytest.fixture
async def ending_agent(voice_server: VoiceServer) -> VoiceServer:
    """An agent that can end the conversation (a goodbye becomes `end_conversation`)."""
    async with voice_server.live.client() as http:
        response = await http.post(
            "/v1/agents",
            json={
                "name": "Store assistant",
                "instructions": "Answer from the store's policies.",
                "knowledge_base_ids": ["kb_store"],
                "tools": [{"type": "end_conversation"}],
            },
        )
        assert response.status_code == 201, response.text
    return VoiceServer(voice_server.live, str(response.json()["id"]))


async def test_a_reply_prepared_at_a_pause_is_dropped_without_a_trace_when_the_caller_goes_on(
    ending_agent: VoiceServer, espeak: EspeakTTS
) -> None:
    server = ending_agent
    backends = server.live.server_backends
    publish.configure(backends.settings)
    backends.events = outbox_sink(backends.database)  # the webhooks' source, for real
    dropped_before = metric("vocalis_voice_speculations_total", outcome="dropped")
    hits_before = metric("vocalis_voice_speculations_total", outcome="hit")
    llm_before = llm_requests()

    # "Goodbye." alone would end the conversation. The caller pauses; the reply to it is
    # prepared (the agent ran: the model was asked); then the caller goes on with a
    # question: one turn, one answer. The client sends no audio while the reply is being
    # prepared, so however slow the machine, the pause never ends the turn.
    async with call(server, live_microphone=False, silence_duration_ms=1_500) as session:
        created = session.received.of("session.created")[0]
        await stream(session.send, await speech(espeak, "Goodbye.", FMT), FMT)
        await stream(session.send, silence_in(FMT, 0.5), FMT)  # a pause, not the turn's end
        await until(lambda: llm_requests() > llm_before, "the goodbye's reply is prepared")
        question = await speech(espeak, "Actually, how long does shipping to Canada take?", FMT)
        await stream(session.send, question, FMT)
        await stream(session.send, silence_in(FMT, 2.0), FMT)  # the turn ends
        done = await session.received.wait_for("response.done", timeout=120)
        await asyncio.sleep(1.0)  # anything late would arrive now

    conversation_id = created["vocalis"]["conversation_id"]
    response = done["response"]
    assert response["status"] == "completed"
    dropped = metric("vocalis_voice_speculations_total", outcome="dropped") - dropped_before
    assert dropped >= 1  # the goodbye's (and any at a pause inside the question)
    assert done["vocalis"]["speculation"] == {"hit": True, "dropped": dropped}
    assert metric("vocalis_voice_speculations_total", outcome="hit") == hits_before + 1
    assert llm_requests() - llm_before >= 2, "the dropped reply ran the agent, the kept one too"

    # The realtime client saw one turn and one reply: nothing of the goodbye's reply.
    assert len(session.received.of("response.created")) == 1
    assert len(session.received.of("response.done")) == 1
    transcripts = session.received.of("conversation.item.input_audio_transcription.completed")
    assert len(transcripts) == 1
    assert "goodbye" in transcripts[0]["transcript"].lower()
    assert "canada" in transcripts[0]["transcript"].lower()
    assert not session.received.of("vocalis.conversation.ended")
    raw = repr(session.received.events)
    assert GOODBYE_REPLY not in raw

    # The stored conversation: one question and its answer; still active.
    async with server.live.client() as http:
        stored = (await http.get(f"/v1/conversations/{conversation_id}")).json()
    assert stored["status"] == "active"
    roles = [(m["role"], m["content"]) for m in stored["messages"]]
    assert [role for role, _ in roles] == ["user", "assistant"], roles
    assert roles[0][1] == transcripts[0]["transcript"]
    assert "five to seven business days" in roles[1][1]
    assert stored["message_count"] == 2

    # The agent's memory holds the same two messages (no checkpoint of the dropped turn).
    graph = get_runtime(server.live.app).graph
    history = await on_server(server, conversation_messages(graph, conversation_id))
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert all(GOODBYE_REPLY not in str(m["content"]) for m in history)

    # The outbox — what webhooks deliver — has the start of the conversation and nothing else.
    async def outbox() -> list[str]:
        async with backends.database.session() as db:
            rows = (
                await db.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.org_id == server.live.tenant.org_id)
                    .order_by(OutboxEvent.created_at)
                )
            ).all()
        return [row.type for row in rows if row.data.get("conversation_id") == conversation_id]

    assert await on_server(server, outbox()) == ["conversation.started"]


async def test_a_backchannel_over_the_answer_does_not_cancel_it(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    cut_before = metric("vocalis_voice_interruptions_total", outcome="interruption")
    resumed_before = metric("vocalis_voice_interruptions_total", outcome="backchannel") + metric(
        "vocalis_voice_interruptions_total", outcome="false"
    )
    async with call(voice_server) as session:
        session.microphone.say(await speech(espeak, "Tell me about the warranty.", FMT))
        first = await session.received.wait_for("response.output_audio.delta", timeout=120)
        await asyncio.sleep(1.5)  # the agent is mid-answer
        session.microphone.say(await speech(espeak, "Okay.", FMT))
        done = await session.received.wait_for("response.done", timeout=120)
        transcribed = "conversation.item.input_audio_transcription.completed"
        await session.received.wait_for(transcribed, count=2, timeout=120)
        await asyncio.sleep(2.0)  # a reply to the backchannel would start now

    response = done["response"]
    assert response["id"] == first["response_id"]
    assert response["status"] == "completed", "the backchannel did not cancel the answer"
    heard = next(
        e["transcript"]
        for e in session.received.of("response.output_audio_transcript.done")
        if e["response_id"] == response["id"]
    )
    assert "two full years" in heard
    assert len(session.received.of("response.created")) == 1, "a backchannel is not answered"
    resumed = metric("vocalis_voice_interruptions_total", outcome="backchannel") + metric(
        "vocalis_voice_interruptions_total", outcome="false"
    )
    # Held and resumed ("false" when the words came after the deadline; a flickering onset
    # may hold it twice), and never cut off.
    assert resumed >= resumed_before + 1
    assert metric("vocalis_voice_interruptions_total", outcome="interruption") == cut_before
    transcripts = session.received.of("conversation.item.input_audio_transcription.completed")
    assert transcripts[-1]["transcript"].strip(" .!").lower() == "okay"


async def test_a_real_interruption_stops_the_answer_within_150_ms(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    interruption_pcm = await synthesize(espeak, "Sorry, stop there, please.")
    onset_s = leading_silence_s(interruption_pcm, espeak.sample_rate)
    async with call(voice_server) as session:
        session.microphone.say(await speech(espeak, "Tell me about the warranty.", FMT))
        first = await session.received.wait_for("response.output_audio.delta", timeout=120)
        await asyncio.sleep(2.0)  # the agent is mid-answer
        interruption = await speech(espeak, "Sorry, stop there, please.", FMT)
        started = await session.microphone.say(interruption).started
        done = await session.received.wait_for("response.done", timeout=120)
        await session.received.wait_for("response.done", count=2, timeout=120)

    response = done["response"]
    assert response["id"] == first["response_id"]
    assert response["status"] == "cancelled"
    assert response["status_details"]["reason"] == "turn_detected"
    cut = session.audio_of(response["id"])
    stopped_after = session.received.at(cut[-1]) - (started + onset_s)
    assert stopped_after <= STOP_WITHIN_S, f"audio went on {stopped_after * 1000:.0f} ms"
    # What was heard is stored, and it is the start of the answer.
    heard = next(
        e["transcript"]
        for e in session.received.of("response.output_audio_transcript.done")
        if e["response_id"] == response["id"]
    )
    full = speakable(WARRANTY).split()
    assert heard and heard.split() == full[: len(heard.split())] and len(heard.split()) < len(full)
    async with voice_server.live.client() as http:
        created = session.received.of("session.created")[0]
        stored = (
            await http.get(f"/v1/conversations/{created['vocalis']['conversation_id']}")
        ).json()
    kept = next(m for m in stored["messages"] if m["id"] == done["vocalis"]["message_id"])
    assert kept["content"] == heard


async def test_after_a_false_interruption_the_answer_resumes_where_it_stopped(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    resumed_before = resumed_answers()
    cut_before = metric("vocalis_voice_interruptions_total", outcome="interruption")
    # A short sound: a fraction of a syllable, too little to be a turn and holding no words.
    blip_pcm = await synthesize(espeak, "Ah.")
    start = int(leading_silence_s(blip_pcm, espeak.sample_rate) * espeak.sample_rate) * 2
    blip_pcm = blip_pcm[start : start + int(0.22 * espeak.sample_rate) * 2]
    blip = audio.encode(audio.resample(blip_pcm, espeak.sample_rate, FMT.sample_rate), FMT)
    async with call(voice_server) as session:
        session.microphone.say(await speech(espeak, "Tell me about the warranty.", FMT))
        first = await session.received.wait_for("response.output_audio.delta", timeout=120)
        await asyncio.sleep(2.0)  # the agent is mid-answer
        await session.microphone.say(blip).finished
        done = await session.received.wait_for("response.done", timeout=120)

    response = done["response"]
    assert response["id"] == first["response_id"]
    assert response["status"] == "completed", "a false interruption does not cancel the answer"
    # Held and resumed: as noise ("false"), or as a backchannel when the sound was long
    # enough to be transcribed ("Ah.").
    assert resumed_answers() >= resumed_before + 1, session.received.types()[-40:]
    assert metric("vocalis_voice_interruptions_total", outcome="interruption") == cut_before
    deltas = session.audio_of(response["id"])
    # It resumed where it stopped: each sentence's audio was sent once, none lost or repeated.
    sentences = [
        e["delta"].strip()
        for e in session.received.of("response.output_audio_transcript.delta")
        if e["response_id"] == response["id"]
    ]
    expected_s = await on_server(voice_server, spoken_seconds(voice_server, sentences))
    played_s = audio.duration_seconds(pcm_of([d["delta"] for d in deltas], FMT), FMT.sample_rate)
    assert abs(played_s - expected_s) < 0.05, (played_s, expected_s)
    assert "two full years" in " ".join(sentences)
