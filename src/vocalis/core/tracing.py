"""OpenTelemetry tracing: one tracer provider, a configurable exporter."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from vocalis.settings import Settings

_configured = False

# Span names used across the system; the documentation's span table is generated from it.
SPAN_NAMES: dict[str, str] = {
    "HTTP <method> <route>": "Every HTTP request (FastAPI instrumentation).",
    "agent.run": "One agent turn from input to final message.",
    "agent.node.<name>": "One node of the agent graph (input_guard, retrieve, generate…).",
    "llm.chat": "One chat-model call, with GenAI semantic-convention attributes.",
    "rag.retrieve": "Retrieval across an agent's knowledge bases.",
    "rag.embed": "One embedding batch.",
    "stt.transcribe": "One speech-to-text call.",
    "tts.synthesize": "One text-to-speech call.",
    "voice.turn": "A voice turn: end of user speech to the end of the agent's reply.",
    "webhook.deliver": "One webhook delivery attempt.",
    "agent.tool": "One tool call inside an agent turn.",
    "celery.task <task name>": "One Celery task run, child of the producer's trace "
    "(context in the message headers).",
}

# Attributes every Vocalis span carries when the value is known.
REQUIRED_ATTRIBUTES = ("vocalis.org_id", "vocalis.conversation_id", "vocalis.agent_id")


def configure_tracing(settings: Settings) -> None:
    """Install the global tracer provider once, with the configured exporter."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    exporter: SpanExporter | None = None
    if settings.otel_exporter == "console":
        exporter = ConsoleSpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint))
        )
    trace.set_tracer_provider(provider)
    _configured = True


def tracer(name: str = "vocalis") -> trace.Tracer:
    """A tracer from the global provider."""
    return trace.get_tracer(name)


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, or None."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
