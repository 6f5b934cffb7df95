"""Fakes at the edge of the agent runtime: a scripted chat model and a manual clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.fixtures.spans import collect_spans
from vocalis.agents.graph import AgentContext, AgentSpec, TurnLimits, build_agent_graph
from vocalis.agents.tools.base import build_toolbox
from vocalis.ports.llm import (
    ChatDelta,
    ChatMessage,
    ChatResult,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
    collect,
)


def call(name: str, **arguments: Any) -> ToolCall:
    """A tool call as a model would make it."""
    return ToolCall(id=f"call_{name}_{len(arguments)}", name=name, arguments=json.dumps(arguments))


Step = ChatResult | Exception | Callable[[Sequence[ChatMessage]], ChatResult]


@dataclass
class Request:
    """What the scripted model was asked."""

    messages: list[ChatMessage]
    tools: list[ToolSpec]
    tool_choice: str | None


@dataclass
class ScriptedChatModel:
    """Answers with the next scripted step (the last one repeats); records every request."""

    steps: list[Step]
    provider: str = "scripted"
    model: str = "scripted-1"
    requests: list[Request] = field(default_factory=list)
    fail_after_first_delta: Exception | None = None

    def _next(self, messages: Sequence[ChatMessage]) -> ChatResult:
        step = self.steps[min(len(self.requests) - 1, len(self.steps) - 1)]
        if isinstance(step, Exception):
            raise step
        return step(messages) if callable(step) else step

    async def complete(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResult:
        return await collect(self.stream(messages, **kwargs))

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: str | None = None,
        **_: Any,
    ) -> AsyncIterator[ChatDelta]:
        self.requests.append(Request(list(messages), list(tools), tool_choice))
        result = self._next(messages)
        for i, word in enumerate(result.content.split(" ")):
            yield ChatDelta(text=word if i == 0 else " " + word)
            if self.fail_after_first_delta is not None:
                raise self.fail_after_first_delta
        for i, c in enumerate(result.tool_calls):
            yield ChatDelta(tool_call=ToolCallDelta(i, c.id, c.name, c.arguments))
        yield ChatDelta(
            usage=result.usage or Usage(10, 5),
            finish_reason="tool_calls" if result.tool_calls else "stop",
            model=self.model,
            provider=self.provider,
        )


def say(text: str, *calls: ToolCall, usage: Usage | None = None) -> ChatResult:
    """A scripted answer."""
    return ChatResult(content=text, tool_calls=calls, usage=usage or Usage(10, 5))


@dataclass
class ManualClock:
    """A clock that moves only when told."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def graph() -> Any:
    """The agent graph over an in-memory checkpointer."""
    return build_agent_graph(InMemorySaver())


def make_context(
    model: Any,
    *,
    tools: Sequence[dict[str, Any]] = (),
    conversation_id: str = "cnv_test",
    instructions: str = "You are the Acme support assistant.",
    limits: TurnLimits | None = None,
    **extra: Any,
) -> AgentContext:
    """A run context for one test conversation."""
    kb_ids = tuple(extra.pop("knowledge_base_ids", ()))
    return AgentContext(
        org_id="org_test",
        conversation_id=conversation_id,
        agent=AgentSpec(
            agent_id="agt_test",
            instructions=instructions,
            knowledge_base_ids=kb_ids,
            limits=limits or TurnLimits(),
        ),
        model=model,
        toolbox=build_toolbox(list(tools)),
        **extra,
    )


_exporter = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _span_exporter() -> Iterator[InMemorySpanExporter]:
    with collect_spans(_exporter):
        yield _exporter


@pytest.fixture
def spans(_span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """Spans finished during the test."""
    _span_exporter.clear()
    yield _span_exporter
    _span_exporter.clear()
