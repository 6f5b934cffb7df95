"""A user's spoken turn: its `voice.turn` span and the voice-turn latency, computed once.

A turn begins when the end of the user's speech is found (by the VAD, or when the client
commits its audio). Its span starts where the user stopped speaking and is the parent of
that turn's `stt.transcribe`, `agent.run` and `tts.synthesize` spans; it ends with the
agent's reply. The turn latency — end of user speech to the first agent audio byte — is
measured here and nowhere else, and observed once in `VOICE_TURN_LATENCY`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from vocalis.core.metrics import VOICE_TURN_LATENCY
from vocalis.core.tracing import tracer

SpanAttributes = Mapping[str, str]


@dataclass(eq=False)
class VoiceTurn:
    """One user turn: its span and the latency parts measured so far (milliseconds)."""

    span: Span
    speech_ended_at: float  # monotonic clock: when the user stopped speaking
    latency_ms: dict[str, float] = field(default_factory=dict)
    ended: bool = False

    def context(self) -> Context:
        """The OpenTelemetry context whose current span is this turn's."""
        return trace.set_span_in_context(self.span)

    def measure(self, part: str, ms: float) -> None:
        """Record one part of the latency breakdown (the first value of a part wins)."""
        self.latency_ms.setdefault(part, round(ms, 1))

    def first_audio(self, at: float) -> None:
        """The agent's first audio byte left at `at`: the turn latency, observed once."""
        if "first_audio_byte" in self.latency_ms:
            return
        latency_s = max(0.0, at - self.speech_ended_at)
        self.measure("first_audio_byte", latency_s * 1000.0)
        VOICE_TURN_LATENCY.observe(latency_s)

    def end(self, status: str) -> None:
        """Close the span with the turn's outcome and latency breakdown (idempotent)."""
        if self.ended:
            return
        self.ended = True
        self.span.set_attribute("vocalis.voice.status", status)
        for name, value in self.latency_ms.items():
            self.span.set_attribute(f"vocalis.latency_ms.{name}", value)
        self.span.end()


def start_turn(attributes: SpanAttributes, *, found_at: float, silence_ms: float) -> VoiceTurn:
    """A turn whose end was found at `found_at` (monotonic), `silence_ms` after the speech."""
    speech_ended_at = found_at - silence_ms / 1000.0
    ago_ns = int((time.monotonic() - speech_ended_at) * 1e9)
    span = tracer().start_span(
        "voice.turn", attributes=dict(attributes), start_time=time.time_ns() - ago_ns
    )
    turn = VoiceTurn(span=span, speech_ended_at=speech_ended_at)
    turn.measure("endpointing", silence_ms)
    return turn


@contextmanager
def turn_span(
    name: str, turn: VoiceTurn | None, attributes: SpanAttributes, **extra: str
) -> Iterator[Span]:
    """A span inside `turn` (a root span when there is none) with the conversation's ids."""
    context = turn.context() if turn is not None else None
    with tracer().start_as_current_span(
        name, context=context, attributes={**attributes, **extra}
    ) as span:
        yield span
