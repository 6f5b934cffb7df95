"""Span helpers for the agent runtime: every span carries the conversation's identity."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

_tracer = trace.get_tracer("vocalis.agents")

# vocalis.org_id / conversation_id / agent_id of the run in progress; set by `agent.run`
# so that spans opened deeper down (llm.chat, tools) carry them without plumbing.
_identity: ContextVar[Mapping[str, str] | None] = ContextVar("vocalis_span_identity", default=None)


@contextmanager
def identity(org_id: str, conversation_id: str, agent_id: str) -> Iterator[None]:
    """Attach the conversation's identity to every span opened inside."""
    token = _identity.set(
        {
            "vocalis.org_id": org_id,
            "vocalis.conversation_id": conversation_id,
            "vocalis.agent_id": agent_id,
        }
    )
    try:
        yield
    finally:
        _identity.reset(token)


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A span with the identity attributes; exceptions mark it as an error."""
    attrs: Mapping[str, Any] | None = _identity.get()
    if attributes:  # the identity (set once per run) is passed as it is otherwise
        merged = dict(attrs or ())
        for key, value in attributes.items():
            if value is not None:
                merged[key] = value
        attrs = merged
    # `start_as_current_span` without its extra context-manager layer.
    current = _tracer.start_span(name, attributes=attrs)
    with trace.use_span(
        current, end_on_exit=True, record_exception=True, set_status_on_exception=False
    ):
        try:
            yield current
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            current.set_attribute("error.type", type(exc).__name__)
            raise
