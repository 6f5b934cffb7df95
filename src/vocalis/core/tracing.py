"""OpenTelemetry tracing: one tracer provider, a configurable exporter, client spans for
the database, Redis and outgoing HTTP."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

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
    sampler = RecordWhenReceived()
    provider = _Provider(
        resource=Resource.create({"service.name": settings.service_name}), sampler=sampler
    )
    sampler.provider = provider
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


class _Provider(TracerProvider):
    """The SDK's provider, knowing whether any span processor (an exporter, a test's
    in-memory collector) has been added: until one is, no span has anywhere to go."""

    has_processors = False

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.has_processors = True


class RecordWhenReceived(Sampler):
    """Record spans when something receives them (issue 11).

    With a span processor registered (`otel_exporter` console or otlp, or one added at run
    time) this is the SDK's default, `ParentBased(ALWAYS_ON)`: every span recorded. With
    none (`otel_exporter=none`, the default) a span would be built, timed and given its
    attributes only to be dropped, a fifth of a small request's CPU: then spans are not
    recorded — each still gets its trace and span ids, so log lines carry `trace_id` and
    `span_id` and outgoing requests carry `traceparent` — unless the trace was sampled
    upstream (a `traceparent` with the sampled flag), whose spans are recorded so that the
    flag travels on unchanged."""

    def __init__(self) -> None:
        self.provider: _Provider | None = None
        self._default = ParentBased(ALWAYS_ON)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if self.provider is not None and self.provider.has_processors:
            return self._default.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        parent = trace.get_current_span(parent_context).get_span_context()
        if parent.is_valid and parent.trace_flags.sampled:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state)
        return SamplingResult(Decision.DROP, None, parent.trace_state if parent.is_valid else None)

    def get_description(self) -> str:
        return "RecordWhenReceived{ParentBased{ALWAYS_ON}}"


def spans_recorded() -> bool:
    """Whether new root spans are recorded (False: `otel_exporter=none` and no processor)."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, _Provider) or provider.has_processors


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
        if not parent.is_recording():
            # Inside a trace that is not recorded (`RecordWhenReceived`): a client span
            # would not be either; the parent's ids are what propagation needs.
            return False
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

    class _EngineTracer(EngineTracer):
        def _before_cur_exec(self, conn: Any, cursor: Any, statement: Any, *args: Any) -> Any:
            # A statement gets a span only under a recording parent (`_ClientTracer`,
            # child_only): otherwise skip the ~12 µs of attributes and naming the
            # instrumentation builds before the tracer declines (issue 11).
            if not trace.get_current_span().is_recording():
                return statement, args[0]
            return super()._before_cur_exec(conn, cursor, statement, *args)

    connections = get_meter("vocalis.db").create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    _EngineTracer(
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
