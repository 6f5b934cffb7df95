"""Tracing a spoken turn: one `voice.turn` span is the parent of everything the turn did."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.fixtures.spans import collect_spans
from tests.voice.helpers import VoiceServer, ask_spoken_questions, raw_pcm_call
from vocalis.adapters.espeak_tts import EspeakTTS

IDS = ("vocalis.org_id", "vocalis.agent_id", "vocalis.conversation_id")
_exporter = InMemorySpanExporter()


@pytest.fixture(scope="module")
def _span_exporter() -> Iterator[InMemorySpanExporter]:
    with collect_spans(_exporter):
        yield _exporter


@pytest.fixture
def spans(_span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """Spans finished during the test."""
    _span_exporter.clear()
    yield _span_exporter
    _span_exporter.clear()


def children(parent: ReadableSpan, spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    """The spans whose parent is `parent`."""
    parent_id = parent.context.span_id  # type: ignore[union-attr]
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent_id]


async def test_a_spoken_turn_is_one_voice_turn_span_over_stt_agent_and_tts(
    voice_server: VoiceServer, espeak: EspeakTTS, spans: InMemorySpanExporter
) -> None:
    async with raw_pcm_call(voice_server) as call:
        conversation_id = call.received.of("ready")[0]["conversation_id"]
        [turn] = await ask_spoken_questions(call, espeak, ["What is your refund policy?"])
    finished = spans.get_finished_spans()
    [voice_turn] = [
        s
        for s in finished
        if s.name == "voice.turn"
        and s.attributes
        and s.attributes["vocalis.conversation_id"] == conversation_id
    ]
    names = {s.name for s in children(voice_turn, finished)}
    assert {"stt.transcribe", "agent.run", "tts.synthesize"} <= names
    for span in [voice_turn, *children(voice_turn, finished)]:
        attributes = span.attributes or {}
        assert all(attributes.get(key) for key in IDS), (span.name, attributes)
        assert attributes["vocalis.conversation_id"] == conversation_id
    attributes = voice_turn.attributes or {}
    assert attributes["vocalis.latency_ms.first_audio_byte"] == turn.latency_ms["first_audio_byte"]
    assert attributes["vocalis.voice.status"] == "completed"
