"""A phone call is observable: a `telephony.call` span parenting its turns, call and media
metrics by provider, and no caller number in the logs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tests.fixtures.spans import collect_spans
from tests.telephony.carrier import ULAW, inbound_call
from tests.telephony.conftest import CALLER, PhoneServer
from tests.voice.helpers import silence_in, speech
from vocalis.adapters.espeak_tts import EspeakTTS

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


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_call_has_a_span_metrics_by_provider_and_redacted_logs(
    phone_server: PhoneServer, espeak: EspeakTTS, spans: InMemorySpanExporter
) -> None:
    provider = "telnyx"
    calls_before = sample(
        "vocalis_telephony_calls_total",
        provider=provider,
        direction="inbound",
        outcome="user_ended",
    )
    first_audio_before = sample(
        "vocalis_telephony_time_to_first_audio_seconds_count", provider=provider
    )
    jitter_before = sample("vocalis_telephony_media_jitter_seconds_count", provider=provider)
    answered_before = sample(
        "vocalis_telephony_webhooks_total", provider=provider, outcome="answered"
    )
    with capture_logs() as logs:
        async with inbound_call(phone_server, provider) as (stream, microphone):
            question = await speech(espeak, "Can I pay with PayPal?", ULAW)
            microphone.say(question + silence_in(ULAW, 0.8))
            await stream.answered(1)
            await stream.hang_up()
            await asyncio.wait_for(stream.closed.wait(), 30)
        await asyncio.sleep(0.5)  # the call settles after the stream closes

    assert (
        sample(
            "vocalis_telephony_calls_total",
            provider=provider,
            direction="inbound",
            outcome="user_ended",
        )
        == calls_before + 1
    )
    assert sample("vocalis_telephony_time_to_first_audio_seconds_count", provider=provider) == (
        first_audio_before + 1
    )
    assert sample("vocalis_telephony_media_jitter_seconds_count", provider=provider) > (
        jitter_before + 50
    )
    assert sample("vocalis_telephony_webhooks_total", provider=provider, outcome="answered") == (
        answered_before + 1
    )
    assert (
        sample(
            "vocalis_telephony_provider_requests_total",
            provider=provider,
            operation="answer",
            outcome="ok",
        )
        >= 1
    )

    finished = spans.get_finished_spans()
    call = next(s for s in finished if s.name == "telephony.call")
    attributes = dict(call.attributes or {})
    assert attributes["vocalis.telephony.provider"] == provider
    assert attributes["vocalis.telephony.hangup_side"] == "caller"
    for name in ("vocalis.org_id", "vocalis.conversation_id", "vocalis.agent_id"):
        assert attributes[name]
    turns = [s for s in finished if s.name == "voice.turn"]
    assert turns and all(
        t.parent is not None and t.parent.span_id == call.context.span_id for t in turns
    )
    assert any(s.name == "telephony.answer" for s in finished)

    rendered = repr(logs)
    assert "phone_call_started" in rendered and "phone_call_ended" in rendered
    assert CALLER not in rendered, "the caller's number never reaches a log line"
