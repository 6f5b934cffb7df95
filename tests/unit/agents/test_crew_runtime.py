"""The CrewAI runtime (`vocalis.agents.runtimes.crew`) on a scripted model: real CrewAI crews
(sequential and hierarchical), the platform's toolbox, retrieval, guards and events."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.unit.agents.conftest import ScriptedChatModel, call, make_context, say
from vocalis.agents.events import (
    AgentEvent,
    FinalMessage,
    GuardFlag,
    HandoffEvent,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
)
from vocalis.agents.graph import AgentContext, TurnLimits
from vocalis.agents.runtimes.crew import CrewEngine, plan_of
from vocalis.ports.llm import ProviderUnavailable
from vocalis.ports.retriever import InMemoryRetriever, Passage

POLICY = Passage(
    document_id="doc_policy",
    document_name="refund-policy.md",
    chunk_id="chk_1",
    text="Refunds are accepted within 30 days of purchase.",
    score=1.0,
)
CREW = {
    "process": "sequential",
    "members": [
        {"role": "Researcher", "goal": "Find the policy.", "tools": ["search_knowledge"]},
        {"role": "Writer", "goal": "Write the reply.", "tools": []},
    ],
}


def _context(model: ScriptedChatModel, crew: dict[str, Any] | None = None, **extra: Any) -> Any:
    retriever = InMemoryRetriever()
    retriever.add("org_test", "kb_policies", [POLICY])
    ctx = make_context(
        model,
        tools=extra.pop("tools", [{"type": "search_knowledge"}]),
        knowledge_base_ids=["kb_policies"],
        retriever=retriever,
        **extra,
    )
    return replace(ctx, agent=replace(ctx.agent, runtime="crewai", crew=crew, name="Desk"))


async def _turn(
    ctx: AgentContext, text: str, history: list[dict[str, Any]] | None = None
) -> tuple[list[AgentEvent], list[list[dict[str, Any]]]]:
    remembered: list[list[dict[str, Any]]] = []

    async def remember(messages: list[dict[str, Any]]) -> None:
        remembered.append(messages)

    plan = plan_of(ctx.agent.crew, ctx.agent.name, ctx.agent.instructions)
    events = [
        e async for e in CrewEngine().run(ctx, text, plan, history=history or [], remember=remember)
    ]
    return events, remembered


def _system(request: Any) -> str:
    return "\n".join(m.content for m in request.messages if m.role == "system")


async def test_a_sequential_crew_streams_only_the_reply_and_cites_the_tools_passages(
    spans: InMemorySpanExporter,
) -> None:
    model = ScriptedChatModel(
        [
            say("", call("search_knowledge", query="refund days")),
            say("Notes: refunds within 30 days [1]."),
            say("You have 30 days to ask for a refund [1]."),
        ]
    )
    ctx = _context(model, CREW)
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    events, remembered = await _turn(ctx, "How many days do I have for refunds?", history)

    researcher, _, writer = model.requests
    assert "You are Researcher" in _system(researcher)
    assert [t.name for t in researcher.tools] == ["search_knowledge"]
    assert "You are Writer" in _system(writer) and writer.tools == []
    # The platform's system prompt (instructions, passages) leads every call; the user's own
    # words are the user's message; the conversation so far is in the crew's task.
    assert _system(writer).startswith("You are the Acme support assistant.")
    assert '<passage n="1" source="refund-policy.md">' in _system(writer)
    assert [m.content for m in writer.messages if m.role == "user"] == [
        "How many days do I have for refunds?"
    ]
    assert "assistant: Hello!" in _system(writer)
    assert "Notes: refunds within 30 days" in _system(writer)  # the researcher's work

    deltas = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert deltas == "You have 30 days to ask for a refund [1]."  # the researcher is silent
    [tool_call] = [e for e in events if isinstance(e, ToolCallEvent)]
    [tool_result] = [e for e in events if isinstance(e, ToolResultEvent)]
    assert tool_call.name == tool_result.name == "search_knowledge"
    assert tool_call.id == tool_result.id and not tool_result.is_error
    final = events[-1]
    assert isinstance(final, FinalMessage)
    assert final.content == deltas and not final.replaced
    # Retrieval found the passage as [1]; the tool found it again and it kept its number.
    assert [(c.n, c.attributed) for c in final.citations] == [(1, False)]
    assert final.citations[0].document_name == "refund-policy.md"
    assert final.tool_calls[0]["name"] == "search_knowledge"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (30, 15)
    assert final.usage.provider == "scripted"
    assert [m["role"] for m in remembered[0]] == ["user", "assistant"]
    assert remembered[0][1]["content"] == final.content

    names = [s.name for s in spans.get_finished_spans()]
    assert names.count("crewai.llm_call") == 3 and "agent.tool" in names
    [run] = [s for s in spans.get_finished_spans() if s.name == "agent.run"]
    assert run.attributes is not None
    assert run.attributes["vocalis.agent.runtime"] == "crewai"
    assert run.attributes["crewai.process"] == "sequential"


async def test_a_hierarchical_crews_manager_delegates_to_a_member_and_writes_the_reply() -> None:
    model = ScriptedChatModel(
        [
            say(
                "",
                call(
                    "delegate_work_to_coworker",
                    task="Find the refund window.",
                    context="A customer asks about refunds.",
                    coworker="Researcher",
                ),
            ),
            say("Refunds are accepted within 30 days [1]."),
            say("You can get a refund within 30 days [1]."),
        ]
    )
    crew = {**CREW, "process": "hierarchical"}
    events, _ = await _turn(_context(model, crew), "How many days do I have for refunds?")

    manager, researcher, final_call = model.requests
    assert {t.name for t in manager.tools} >= {"delegate_work_to_coworker"}
    assert "You are Researcher" in _system(researcher)
    assert "Find the refund window." in _system(researcher)
    assert any(m.role == "tool" and "30 days" in m.content for m in final_call.messages)
    deltas = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert deltas == "You can get a refund within 30 days [1]."  # only the manager streams
    assert not [e for e in events if isinstance(e, ToolCallEvent)]  # delegation is internal
    final = events[-1]
    assert isinstance(final, FinalMessage) and [c.n for c in final.citations] == [1]


async def test_a_forced_tool_and_a_handoff_end_the_crew_with_the_event() -> None:
    model = ScriptedChatModel([say("", call("transfer_to_human", reason="asked for a person"))])
    sent: list[tuple[str, Any]] = []

    async def sink(name: str, payload: Any) -> None:
        sent.append((name, payload))

    ctx = _context(
        model,
        None,
        tools=[{"type": "transfer_to_human"}],
        events=sink,
    )
    ctx = replace(ctx, agent=replace(ctx.agent, tool_choice="transfer_to_human"))
    events, _ = await _turn(ctx, "Let me talk to a person.")

    assert model.requests[0].tool_choice == "transfer_to_human"
    assert len(model.requests) == 1  # the tool's result is the crew's answer
    assert any(isinstance(e, HandoffEvent) for e in events)
    final = events[-1]
    assert isinstance(final, FinalMessage) and final.handoff
    assert [name for name, _ in sent] == ["handoff.requested"]
    assert sent[0][1]["reason"] == "asked for a person"


async def test_guards_refuse_oversize_input_and_drop_unknown_citations() -> None:
    model = ScriptedChatModel([say("Refunds take 30 days [7].")])
    ctx = _context(model, None, limits=TurnLimits(max_input_chars=20))
    events, _ = await _turn(ctx, "x" * 21)
    assert model.requests == []  # the crew never started
    assert isinstance(events[0], GuardFlag) and events[0].flag == "input_too_large"

    events, _ = await _turn(_context(model, None), "How long do refunds take?")
    final = events[-1]
    assert isinstance(final, FinalMessage)
    assert "unknown_citation" in final.flags and "[7]" not in final.content
    assert final.replaced  # what streamed was corrected


async def test_a_provider_failure_ends_the_turn_with_the_providers_error() -> None:
    model = ScriptedChatModel([ProviderUnavailable("every provider is down")])
    with pytest.raises(ProviderUnavailable):
        await _turn(_context(model, None), "Hello?")


async def test_a_malformed_tool_call_gets_the_toolboxs_error_result_as_on_every_runtime() -> None:
    broken = call("search_knowledge")
    broken = replace(broken, arguments='{ "query": "refund days }')  # cut by max_tokens
    model = ScriptedChatModel([say("", broken), say("Sorry, I could not search.")])
    events, _ = await _turn(_context(model, None), "How many days do I have for refunds?")

    [result] = [e for e in events if isinstance(e, ToolResultEvent)]
    assert result.id == broken.id and result.is_error
    # CrewAI was handed a JSON object; the model sees the toolbox's error in the tool message.
    [tool_message] = [m for m in model.requests[1].messages if m.role == "tool"]
    assert tool_message.content == result.content
    final = events[-1]
    assert isinstance(final, FinalMessage) and final.content == "Sorry, I could not search."


def test_crewais_telemetry_and_tracing_are_off_once_the_runtime_is_loaded() -> None:
    from crewai.telemetry.telemetry import Telemetry

    assert Telemetry._is_telemetry_disabled()  # nothing is sent to CrewAI's collector
    assert os.environ["CREWAI_TRACING_ENABLED"] == "false"
