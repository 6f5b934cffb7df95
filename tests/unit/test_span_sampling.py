"""Spans are recorded when something receives them (`RecordWhenReceived`, issue 11): with no
exporter and no processor they keep their ids (logs, propagation) but are not built; with
one, everything is recorded as before; a trace sampled upstream stays sampled."""

from __future__ import annotations

from opentelemetry import context, trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from vocalis.core.tracing import INHERITING, RecordWhenReceived, _Provider


def _provider() -> tuple[_Provider, trace.Tracer]:
    sampler = RecordWhenReceived()
    provider = _Provider(sampler=sampler)
    sampler.provider = provider
    return provider, provider.get_tracer("test")


def _remote_parent(sampled: bool) -> context.Context:
    parent = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def test_without_a_processor_spans_keep_their_ids_but_are_not_recorded() -> None:
    _, tracer = _provider()
    with tracer.start_as_current_span("GET /v1/org") as root:
        assert not root.is_recording()
        ids = root.get_span_context()
        assert ids.is_valid and not ids.trace_flags.sampled
        with tracer.start_as_current_span("agent.run") as child:
            assert not child.is_recording()
            assert child.get_span_context().trace_id == ids.trace_id  # one trace
            assert child.get_span_context().span_id != ids.span_id


def test_a_trace_sampled_upstream_is_recorded_and_stays_sampled() -> None:
    _, tracer = _provider()
    with tracer.start_as_current_span("GET /v1/org", context=_remote_parent(True)) as root:
        assert root.is_recording()
        with tracer.start_as_current_span("agent.run") as child:
            assert child.is_recording() and child.get_span_context().trace_flags.sampled
    with tracer.start_as_current_span("GET /v1/org", context=_remote_parent(False)) as root:
        assert not root.is_recording()
        assert root.get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C


def test_once_a_processor_is_added_every_span_is_recorded_and_exported() -> None:
    provider, tracer = _provider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracer.start_as_current_span("GET /v1/org") as root:
        assert root.is_recording() and root.get_span_context().trace_flags.sampled
        with tracer.start_as_current_span("agent.run"):
            pass
    with tracer.start_as_current_span("x", context=_remote_parent(False)) as unsampled:
        assert not unsampled.is_recording()  # the parent's decision, as ParentBased
    assert [s.name for s in exporter.get_finished_spans()] == ["agent.run", "GET /v1/org"]


def test_a_client_span_inside_an_unrecorded_trace_is_not_made() -> None:
    _, tracer = _provider()
    client = INHERITING.get_tracer("opentelemetry.instrumentation.httpx")
    with (
        tracer.start_as_current_span("GET /v1/org") as root,
        client.start_as_current_span("POST") as span,
    ):
        assert span is trace.INVALID_SPAN
        # what an instrumentation injects is still the request's own context
        assert trace.get_current_span() is root
