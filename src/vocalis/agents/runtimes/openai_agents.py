"""The OpenAI Agents SDK runtime (`"runtime": "openai_agents"`).

One turn is one `Runner.run_streamed` of an SDK `Agent` built from the agent's version:

- **Model**: the SDK's `OpenAIChatCompletionsModel` over an in-process client served by the
  agent's own model chain (`chain_client`): the same endpoints, deployment default,
  registered providers, fallbacks, breakers, `llm.chat` spans, metrics and cost ledger as
  the LangGraph runtime, the extractive responder last.
- **Tools**: the agent's toolbox (built-in tools and its MCP servers' tools) as SDK
  `FunctionTool`s run by the same `Toolbox.execute` (schema validation, errors as results);
  passages a tool returns are numbered for citation, as in the graph.
- **Retrieval and guards**: the graph's — passages for the user's message numbered into the
  system prompt, oversize input blocked, injection flagged, the output checked
  (`guards.check_output`: no empty reply, no instruction leak, only real citations).
- **Handoffs**: each agent id in `handoffs` (of the same organisation; others are refused
  when the agent is saved and skipped if they moved since) becomes an SDK handoff to an
  Agent built the same way from that agent's current version, with its own model chain.
- **Tracing**: the SDK's spans are bridged into OpenTelemetry (`openai_agents.<type>`), and
  the SDK's own exporter (to OpenAI's servers) is replaced, so nothing leaves the process.
- **Memory**: the conversation's history is the LangGraph checkpoint's `messages` (read at
  the start, the user's message and the reply appended at the end), so every runtime shares
  one transcript memory and a conversation can change runtime between versions.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from agents import (
    Agent,
    FunctionTool,
    ModelSettings,
    OpenAIChatCompletionsModel,
    RunConfig,
    Runner,
    set_trace_processors,
)
from agents.tool_context import ToolContext as SdkToolContext
from agents.tracing import Span, Trace, TracingProcessor
from opentelemetry import trace as otel

from vocalis.agents import guards
from vocalis.agents.events import (
    AgentEvent,
    FinalMessage,
    GuardFlag,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
    TurnUsage,
)
from vocalis.agents.graph import AgentContext
from vocalis.agents.prompting import (
    NumberedPassage,
    number_passages,
    system_prompt,
    tool_result_text,
)
from vocalis.agents.runtimes.chain_client import ChainReport, chain_client
from vocalis.agents.schemas import AgentConfig
from vocalis.agents.telemetry import identity, span
from vocalis.agents.tools.base import Toolbox, build_toolbox
from vocalis.core.ids import new_id
from vocalis.ports.llm import ChatModel, ToolCall
from vocalis.ports.retriever import Passage

_tracer = otel.get_tracer("vocalis.agents.openai_agents")

LoadAgent = Callable[[str, str], Awaitable[AgentConfig | None]]
ChainFor = Callable[[str, AgentConfig], ChatModel]
Remember = Callable[[list[dict[str, Any]]], Awaitable[None]]


# --- the SDK's tracing, into OpenTelemetry --------------------------------------------------
def _ns(stamp: str | None) -> int | None:
    if not stamp:
        return None
    return int(datetime.fromisoformat(stamp).timestamp() * 1_000_000_000)


class OtelBridge(TracingProcessor):
    """Turns each finished SDK span into an OpenTelemetry span (`openai_agents.<type>`)."""

    def on_trace_start(self, trace: Trace) -> None:
        """Nothing: the turn's `agent.run` span is the trace's parent."""

    def on_trace_end(self, trace: Trace) -> None:
        """Nothing to flush."""

    def on_span_start(self, span: Span[Any]) -> None:
        """Spans are written when they end, with their own start time."""

    def on_span_end(self, span: Span[Any]) -> None:
        """Write the span (no inputs or outputs: they may hold personal data)."""
        data = span.span_data
        attributes: dict[str, Any] = {"openai_agents.span_type": str(data.type)}
        for key in ("name", "model", "from_agent", "to_agent"):
            value = getattr(data, key, None)
            if isinstance(value, str):
                attributes[f"openai_agents.{key}"] = value
        started = _tracer.start_span(
            f"openai_agents.{data.type}", attributes=attributes, start_time=_ns(span.started_at)
        )
        if span.error:
            started.set_attribute("error.type", str(span.error.get("message", "error"))[:200])
        started.end(end_time=_ns(span.ended_at))

    def shutdown(self) -> None:
        """Nothing held."""

    def force_flush(self) -> None:
        """Nothing buffered."""


_BRIDGED = False


def bridge_tracing() -> None:
    """Route the SDK's tracing into OpenTelemetry only (once per process)."""
    global _BRIDGED
    if not _BRIDGED:
        set_trace_processors([OtelBridge()])
        _BRIDGED = True


# --- building SDK agents ---------------------------------------------------------------------
def _sdk_name(name: str, fallback: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower()
    return cleaned or fallback


class _Turn:
    """What one turn accumulates: passages to cite, tool calls, flags."""

    def __init__(self, ctx: AgentContext, user_text: str) -> None:
        self.ctx = ctx
        self.user_text = user_text
        self.passages: list[NumberedPassage] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.results: dict[str, str] = {}  # call id -> the tool's own content (for events)
        self.flags: list[str] = []

    def number(self, passages: Sequence[Passage]) -> list[NumberedPassage]:
        """The passages numbered for this turn; new ones join the turn's."""
        shown, new = number_passages(self.passages, passages)
        self.passages += new
        return shown

    def function_tools(self, toolbox: Toolbox) -> list[Any]:
        tool_ctx = self.ctx.tool_context()
        tools: list[Any] = []
        for name, tool in toolbox.tools.items():

            async def invoke(context: SdkToolContext[Any], arguments: str, name: str = name) -> str:
                call = ToolCall(id=context.tool_call_id, name=name, arguments=arguments or "{}")
                self.tool_calls.append(asdict(call))
                with span("agent.tool", {"vocalis.tool.name": name}):
                    result = await toolbox.execute(call, tool_ctx)
                self.results[call.id] = result.content
                content = tool_result_text(
                    result.content, self.number(result.passages), self.user_text
                )
                if guards.injection_flags(content):
                    self.flags.append("prompt_injection_in_tool_result")
                return content

            tools.append(
                FunctionTool(
                    name=name,
                    description=tool.spec.description,
                    params_json_schema=dict(tool.spec.parameters),
                    on_invoke_tool=invoke,
                    strict_json_schema=False,
                )
            )
        return tools


class OpenAIAgentsEngine:
    """Runs turns of agents whose `runtime` is `openai_agents`."""

    def __init__(self, *, load_agent: LoadAgent, chain_for: ChainFor) -> None:
        self._load_agent = load_agent
        self._chain_for = chain_for
        bridge_tracing()

    def _model(
        self, model: ChatModel, report: ChainReport, ctx: AgentContext
    ) -> OpenAIChatCompletionsModel:
        client = chain_client(
            model,
            report,
            temperature=ctx.agent.temperature,
            max_tokens=ctx.agent.max_tokens,
            timeout=ctx.agent.timeout_s,
        )
        return OpenAIChatCompletionsModel(model=model.model, openai_client=client)

    async def _handoffs(
        self, ctx: AgentContext, turn: _Turn, report: ChainReport
    ) -> list[Agent[Any]]:
        agents: list[Agent[Any]] = []
        for agent_id in ctx.agent.handoffs:
            config = await self._load_agent(ctx.org_id, agent_id)
            if config is None:  # deleted, or not this organisation's
                turn.flags.append("handoff_unavailable")
                continue
            chain = self._chain_for(ctx.org_id, config)
            toolbox = build_toolbox(config.tools)
            agents.append(
                Agent(
                    name=_sdk_name(config.name, agent_id),
                    handoff_description=f"Hand the conversation to {config.name} ({agent_id}).",
                    instructions=system_prompt(
                        config.instructions, turn.passages, injection_suspected=False
                    ),
                    tools=turn.function_tools(toolbox),
                    model=self._model(chain, report, ctx),
                    model_settings=ModelSettings(
                        temperature=config.model.temperature, max_tokens=config.model.max_tokens
                    ),
                )
            )
        return agents

    async def run(
        self,
        ctx: AgentContext,
        user_text: str,
        *,
        history: Sequence[dict[str, Any]],
        remember: Remember,
    ) -> AsyncIterator[AgentEvent]:
        """One turn: yields text deltas, tool calls and results, a `FinalMessage` last.

        `history` is the conversation's checkpointed messages; `remember` appends this
        turn's user message and reply to them.
        """
        started = time.perf_counter()
        turn = _Turn(ctx, user_text)
        limits = ctx.agent.limits
        if len(user_text) > limits.max_input_chars:
            turn.flags.append("input_too_large")
            yield GuardFlag("input_too_large", f"{len(user_text)} characters")
            async for event in self._finish(
                ctx, turn, user_text, guards.TOO_LONG_REPLY, "", started, ChainReport(), remember
            ):
                yield event
            return
        injection = bool(guards.injection_flags(user_text))
        if injection:
            turn.flags.append("prompt_injection_suspected")
            yield GuardFlag("prompt_injection_suspected", guards.injection_flags(user_text)[0])
        latency: dict[str, float] = {}
        if ctx.agent.knowledge_base_ids:
            begin = time.perf_counter()
            found = await ctx.retriever.retrieve(
                ctx.org_id, list(ctx.agent.knowledge_base_ids), user_text, limits.top_k
            )
            turn.number(found)
            latency["retrieve"] = round((time.perf_counter() - begin) * 1000, 1)
        instructions = system_prompt(
            ctx.agent.instructions, turn.passages, injection_suspected=injection
        )
        report = ChainReport()
        handoffs = await self._handoffs(ctx, turn, report)
        main = Agent(
            name=_sdk_name(ctx.agent.name or "agent", ctx.agent.agent_id),
            instructions=instructions,
            tools=turn.function_tools(ctx.toolbox),
            handoffs=list(handoffs),
            model=self._model(ctx.model, report, ctx),
            model_settings=ModelSettings(
                temperature=ctx.agent.temperature,
                max_tokens=ctx.agent.max_tokens,
                tool_choice=ctx.agent.tool_choice if ctx.agent.tool_choice else None,
            ),
        )
        items: list[Any] = [
            {"role": m["role"], "content": m["content"]}
            for m in history[-limits.max_history_messages :]
            if m.get("role") in ("user", "assistant") and m.get("content")
        ]
        items.append({"role": "user", "content": user_text})
        streamed: list[str] = []
        with (
            identity(ctx.org_id, ctx.conversation_id, ctx.agent.agent_id),
            span("agent.run", {"vocalis.agent.runtime": "openai_agents"}),
        ):
            result = Runner.run_streamed(
                main,
                input=items,
                max_turns=2 * limits.max_tool_iterations + 2,
                run_config=RunConfig(
                    workflow_name="vocalis.agent_turn",
                    group_id=ctx.conversation_id,
                    trace_include_sensitive_data=False,
                ),
            )
            try:
                async for sdk_event in result.stream_events():
                    for item in self._translate(sdk_event, turn, streamed, latency, started):
                        yield item
            except Exception:
                if report.error is not None:
                    raise report.error from None
                raise
        draft = str(result.final_output or "".join(streamed))
        async for item in self._finish(
            ctx, turn, user_text, draft, "".join(streamed), started, report, remember, latency
        ):
            yield item

    def _translate(
        self,
        event: Any,
        turn: _Turn,
        streamed: list[str],
        latency: dict[str, float],
        started: float,
    ) -> list[AgentEvent]:
        if event.type == "raw_response_event":
            data = event.data
            if getattr(data, "type", "") == "response.output_text.delta" and data.delta:
                if "first_token" not in latency:
                    latency["first_token"] = round((time.perf_counter() - started) * 1000, 1)
                streamed.append(data.delta)
                return [TextDelta(data.delta)]
            return []
        if event.type != "run_item_stream_event":
            return []
        raw = getattr(event.item, "raw_item", None)
        if event.name == "tool_called":
            call_id = str(getattr(raw, "call_id", "") or "")
            return [
                ToolCallEvent(
                    call_id, str(getattr(raw, "name", "")), str(getattr(raw, "arguments", ""))
                )
            ]
        if event.name == "tool_output":
            output = getattr(event.item, "output", "")
            call_id = str(
                (raw or {}).get("call_id", "")
                if isinstance(raw, dict)
                else getattr(raw, "call_id", "")
            )
            name = next((c["name"] for c in turn.tool_calls if c["id"] == call_id), "")
            text = output if isinstance(output, str) else json.dumps(output, default=str)
            text = turn.results.get(call_id, text)  # what the tool said, as the graph reports it
            is_error = text.startswith('{"error"')
            return [ToolResultEvent(call_id, name, text, is_error)]
        if event.name == "handoff_requested":
            call_id = str(getattr(raw, "call_id", "") or "")
            name = str(getattr(raw, "name", ""))
            arguments = str(getattr(raw, "arguments", "") or "{}")
            turn.tool_calls.append({"id": call_id, "name": name, "arguments": arguments})
            return [ToolCallEvent(call_id, name, arguments)]
        if event.name == "handoff_occured":
            target = getattr(getattr(event.item, "target_agent", None), "name", "")
            call_id = str(
                (raw or {}).get("call_id", "")
                if isinstance(raw, dict)
                else getattr(raw, "call_id", "")
            )
            name = next((c["name"] for c in turn.tool_calls if c["id"] == call_id), "")
            return [ToolResultEvent(call_id, name, json.dumps({"assistant": target}))]
        return []

    async def _finish(
        self,
        ctx: AgentContext,
        turn: _Turn,
        user_text: str,
        draft: str,
        streamed: str,
        started: float,
        report: ChainReport,
        remember: Remember,
        latency: dict[str, float] | None = None,
    ) -> AsyncIterator[AgentEvent]:
        settled = guards.settle_reply(
            draft,
            streamed=streamed,
            instructions=ctx.agent.instructions,
            passages={p.n: p.passage for p in turn.passages},
            max_chars=ctx.agent.limits.max_output_chars,
            question=user_text,
        )
        for event in settled.events:
            yield event
        usage = report.usage
        cost = (
            ctx.ledger.price_for(report.provider, report.model).cost(usage) if ctx.ledger else 0.0
        )
        message_id = new_id("msg")
        final = FinalMessage(
            message_id=message_id,
            content=settled.content,
            citations=settled.citations,
            tool_calls=tuple(turn.tool_calls),
            usage=TurnUsage(
                usage.prompt_tokens,
                usage.completion_tokens,
                round(cost, 8),
                usage.estimated,
                report.provider,
                report.model,
            ),
            latency_ms={
                **(latency or {}),
                "total": round((time.perf_counter() - started) * 1000, 1),
            },
            flags=tuple(dict.fromkeys([*turn.flags, *settled.flags])),
            replaced=settled.replaced,
        )
        await remember(
            [
                {"id": new_id("msg"), "role": "user", "content": user_text},
                {
                    "id": message_id,
                    "role": "assistant",
                    "content": settled.content,
                    "provider": report.provider,
                    "model": report.model,
                    "citations": [asdict(c) for c in final.citations],
                },
            ],
        )
        yield final


# --- the workflow, drawn from the SDK objects a turn builds (for the generated docs) -------
def openai_agents_mermaid() -> str:
    """The turn's workflow: an SDK Agent with the built-in tools and one handoff, as Mermaid."""
    from vocalis.agents.tools.base import load_builtin_kinds

    def tool_names(agent: Agent[Any]) -> list[str]:
        return [str(getattr(t, "name", "")) for t in agent.tools]

    kinds = load_builtin_kinds()
    toolbox = build_toolbox(
        [{"type": k} for k in sorted(kinds) if k != "http_request"]
        + [
            {
                "type": "http_request",
                "name": "http_request",
                "url": "https://api.example.com/orders",
            }
        ]
    )

    def sdk_tools() -> list[Any]:
        return [
            FunctionTool(
                name=name,
                description=tool.spec.description,
                params_json_schema=dict(tool.spec.parameters),
                on_invoke_tool=_never,
                strict_json_schema=False,
            )
            for name, tool in toolbox.tools.items()
        ]

    billing: Agent[Any] = Agent(name="handoff_agent", tools=sdk_tools())
    main: Agent[Any] = Agent(name="agent", tools=sdk_tools(), handoffs=[billing])
    lines = [
        "flowchart TD",
        "  start([user message]) --> input_guard[input guard]",
        "  input_guard -->|blocked| output_guard",
        "  input_guard --> retrieve[retrieve: passages numbered into instructions]",
        f"  retrieve --> {main.name}[{main.name}: Runner.run_streamed]",
    ]
    for agent in (main, billing):
        lines.append(
            f"  {agent.name} <-->|FunctionTool| {agent.name}_tools[["
            + ", ".join(tool_names(agent))
            + "]]"
        )
    for target in main.handoffs:
        name = getattr(target, "name", "handoff")
        lines.append(
            f"  {main.name} -->|transfer_to_{name}| {name}[{name}: its own instructions, tools, model chain]"
        )
        lines.append(f"  {name} --> output_guard")
    lines += [
        f"  {main.name} --> output_guard[output guard: citations, leaks, length]",
        "  output_guard --> remember[(checkpoint messages)]",
        "  remember --> final([FinalMessage])",
    ]
    return "\n".join(lines)


async def _never(context: Any, arguments: str) -> str:  # pragma: no cover - docs only
    raise RuntimeError("drawn for the documentation, never run")


__all__ = ["OpenAIAgentsEngine", "OtelBridge", "bridge_tracing", "openai_agents_mermaid"]
