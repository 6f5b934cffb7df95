"""OpenTelemetry tracing: one tracer provider, a configurable exporter, client spans for
the database, Redis and outgoing HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
    "<method> <route>": "Every HTTP request (`core/http_span.py`, with the name and "
    "attributes of OpenTelemetry's FastAPI instrumentation), e.g. `GET /v1/agents`; a "
    "WebSocket session is `HTTP <route>` (`HTTP /v1/realtime`), with `http.method` only when "
    "the server puts one in the ASGI scope (`http.scheme` is `ws`).",
    "agent.run": "One agent turn from input to final message.",
    "agent.node.<name>": "One node of the agent graph (input_guard, retrieve, generate…).",
    "llm.chat": "One chat-model call, with GenAI semantic-convention attributes.",
    "rag.retrieve": "Retrieval across an agent's knowledge bases.",
    "rag.embed": "One embedding batch.",
    "stt.transcribe": "One speech-to-text call.",
    "tts.synthesize": "One text-to-speech call.",
    "voice.turn": "A voice turn: end of user speech to the end of the agent's reply.",
    "voice.turn.speculation": "A pause that did not end the turn (the user went on): the "
    "speculative transcription, agent run and synthesis prepared there, thrown away.",
    "webhook.deliver": "One webhook delivery attempt.",
    "agent.tool": "One tool call inside an agent turn.",
    "mcp.list_tools": "Listing an MCP server's tools (one session).",
    "openai_agents.<type>": "A span of the OpenAI Agents SDK (agent, generation, function, "
    "handoff…), bridged from its tracing.",
    "crewai.llm_call": "One model call of a CrewAI crew member or manager (`crewai.role`, "
    "`crewai.streams`: whether it writes the reply), around its `llm.chat` spans.",
    "mcp.call_tool": "One MCP tool call (one session), `vocalis.mcp.server_id` and tool name.",
    "celery.task <task name>": "One Celery task run, child of the producer's trace "
    "(context in the message headers).",
    "<SQL verb> <database>": "One database statement (SQLAlchemy instrumentation; "
    "`db.statement` has placeholders, never values), inside a request, task or turn.",
    "<Redis command>": "One Redis command or pipeline (`GET`, `EVALSHA`…; arguments "
    "replaced by `?`), inside a request, task or turn.",
    "<HTTP method>": "One outgoing HTTP request (httpx and httpx2: webhooks, model and speech "
    "endpoints, MCP servers, tools).",
}

# Attributes every Vocalis span carries when the value is known.
REQUIRED_ATTRIBUTES = ("vocalis.org_id", "vocalis.conversation_id", "vocalis.agent_id")
_TURN = REQUIRED_ATTRIBUTES

# The attributes a span always has (for these spans, checked against what a run emits:
# tests/deploy/test_observability_truth.py). HTTP request spans have `vocalis.org_id` once
# the request is authenticated (all but the public routes: health, metrics, webhooks in).
SPAN_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "<method> <route>": ("http.method", "http.route", "vocalis.org_id"),
    "agent.run": _TURN,
    "agent.node.<name>": _TURN,
    "llm.chat": (
        *_TURN,
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
    ),
    "<SQL verb> <database>": ("db.system", "db.statement"),
    "<Redis command>": ("db.system", "db.statement"),
    "<HTTP method>": ("http.method", "http.url", "http.status_code"),
    "webhook.deliver": (
        "vocalis.org_id",
        "webhook.endpoint_id",
        "webhook.delivery_id",
        "webhook.event_type",
        "webhook.attempt",
        "http.request.method",
        "http.response.status_code",
    ),
}


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
    instrument_clients()
    _configured = True


# --- client spans ------------------------------------------------------------------------------
class _ClientTracer(trace.Tracer):
    """The tracer of the client instrumentations: a client span inherits the conversation's
    identity (`REQUIRED_ATTRIBUTES`) from its parent, so every span inside a turn carries
    it; with `child_only`, a command or statement with no request, task or turn around it
    (the broker's polling, the scheduler) makes no span at all."""

    def __init__(
        self, name: str, version: str | None, schema_url: str | None, *, child_only: bool
    ) -> None:
        self._inner = trace.get_tracer(name, version, schema_url=schema_url)
        self._child_only = child_only

    def _prepare(self, context: Any, kwargs: dict[str, Any]) -> bool:
        """Whether to make the span; adds the parent's identity to its attributes."""
        parent = trace.get_current_span(context)
        if not parent.get_span_context().is_valid:
            return not self._child_only
        inherited = getattr(parent, "attributes", None) or {}
        identity = {k: inherited[k] for k in REQUIRED_ATTRIBUTES if k in inherited}
        if identity:
            kwargs["attributes"] = {**identity, **(kwargs.get("attributes") or {})}
        return True

    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> trace.Span:
        if not self._prepare(context, kwargs):
            return trace.INVALID_SPAN
        return self._inner.start_span(name, context, *args, **kwargs)

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Any = None, *args: Any, **kwargs: Any
    ) -> Iterator[trace.Span]:
        if not self._prepare(context, kwargs):
            yield trace.INVALID_SPAN
            return
        with self._inner.start_as_current_span(name, context, *args, **kwargs) as span:
            yield span


class _ClientTracerProvider(trace.TracerProvider):
    def __init__(self, *, child_only: bool) -> None:
        self._child_only = child_only

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        return _ClientTracer(
            instrumenting_module_name,
            instrumenting_library_version,
            schema_url,
            child_only=self._child_only,
        )


CHILD_ONLY = _ClientTracerProvider(child_only=True)
INHERITING = _ClientTracerProvider(child_only=False)
_clients_instrumented = False


def instrument_clients() -> None:
    """Client spans for Redis commands (inside a trace) and outgoing HTTP requests (httpx,
    and httpx2 under the openai and mcp SDKs). Class-level patches: once per process."""
    global _clients_instrumented
    if _clients_instrumented:
        return
    from opentelemetry.instrumentation.httpx import (
        HTTPX2ClientInstrumentor,
        HTTPXClientInstrumentor,
    )
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument(tracer_provider=CHILD_ONLY)
    HTTPXClientInstrumentor().instrument(tracer_provider=INHERITING)
    HTTPX2ClientInstrumentor().instrument(tracer_provider=INHERITING)
    _clients_instrumented = True


def instrument_engine(engine: Any) -> None:
    """Client spans for every statement of a SQLAlchemy engine (sync or async), inside a
    trace; the statement text has placeholders, never values."""
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    connections = get_meter("vocalis.db").create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    EngineTracer(
        CHILD_ONLY.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
        getattr(engine, "sync_engine", engine),
        connections,
    )


def tracer(name: str = "vocalis") -> trace.Tracer:
    """A tracer from the global provider."""
    return trace.get_tracer(name)


def tag_request_span(**identity: str) -> None:
    """Put the request's identity, once known (after authentication, or a route naming a
    conversation), on the current span: `<method> <route>` gets `vocalis.org_id` and
    `vocalis.conversation_id` like the spans of a turn."""
    span = trace.get_current_span()
    if span.is_recording():
        for key, value in identity.items():
            span.set_attribute(f"vocalis.{key}", value)


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, or None."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
