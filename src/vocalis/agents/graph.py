"""The agent runtime: a LangGraph state machine, one thread per conversation.

    input_guard → retrieve → generate ⇄ tools → (handoff) → output_guard

- `input_guard` refuses oversize input and flags suspected prompt injection.
- `retrieve` fetches passages for the user's message through the `Retriever` port.
- `generate` streams the model's answer (tools bound) and emits text deltas.
- `tools` runs the requested tool calls; after `max_tool_iterations` rounds the model is
  asked once more with no tools, so a looping model still ends with an answer. Calls of
  client-side tools (`ClientTool`, run by the caller) end the turn awaiting their outputs;
  the next turn brings them (`ToolOutput`) and the model goes on from there.
- `handoff` emits `handoff.requested` through the injected event sink.
- `output_guard` fixes the final text and emits the `FinalMessage`.

The compiled graph is shared by every agent: per-run dependencies (model, tools, retriever,
event sink) travel in the LangGraph run *context* (`AgentContext`), while the checkpointed
*state* holds only JSON-like data (the conversation's messages and the current turn), so a
conversation resumes on any process from the configured database. Events reach the caller
through LangGraph's `custom` stream; `run_agent` turns them into an async iterator.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Annotated, Any, Literal, TypedDict

import structlog
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import StreamWriter

from vocalis.agents import guards
from vocalis.agents.events import (
    AgentEvent,
    FinalMessage,
    GuardFlag,
    HandoffEvent,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
    TurnUsage,
)
from vocalis.agents.mcp_servers import McpServerUse
from vocalis.agents.prompting import (
    NumberedPassage,
    number_passages,
    system_prompt,
    tool_result_text,
)
from vocalis.agents.providers import CostLedger
from vocalis.agents.telemetry import identity, span
from vocalis.agents.tools.base import EventSink, Toolbox, ToolContext, ToolResult
from vocalis.agents.tools.client import UNANSWERED_OUTPUT, ClientTool, ToolOutput
from vocalis.core.ids import new_id
from vocalis.core.ssrf import Allowlist, Resolver
from vocalis.ports.llm import (
    ChatMessage,
    ChatModel,
    ChatResultBuilder,
    ToolCall,
    ToolSpec,
    close_stream,
)
from vocalis.ports.retriever import NullRetriever, Passage, Retriever
from vocalis.ports.secrets import SecretProvider

log = structlog.get_logger(__name__)

NODES = ("input_guard", "retrieve", "generate", "tools", "handoff", "output_guard")
CAP_REPLY = "I'm sorry, I couldn't complete that request."


# --- configuration and run context --------------------------------------------------------
@dataclass(frozen=True)
class TurnLimits:
    """Guard limits of an agent."""

    max_input_chars: int = 8_000
    max_output_chars: int = 8_000
    max_tool_iterations: int = 4
    max_history_messages: int = 40
    top_k: int = 5


@dataclass(frozen=True)
class AgentSpec:
    """What the runtime needs of an agent's configuration (one version of it)."""

    agent_id: str
    instructions: str = ""
    name: str = ""
    runtime: str = "langgraph"  # langgraph | openai_agents | crewai
    handoffs: tuple[str, ...] = ()  # agents this one may hand the conversation to (SDK)
    crew: Mapping[str, Any] | None = None  # members and process (`crewai` runtime)
    knowledge_base_ids: tuple[str, ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_s: float | None = None
    # Forces the first generation of every turn to call this tool (e.g. a CRM lookup);
    # later generations in the turn choose freely.
    tool_choice: str | None = None
    # A caller's generation options (chat completions): every generation of the turn ends
    # before a `stop` string and answers in `response_format` (OpenAI's object).
    stop: tuple[str, ...] = ()
    response_format: Mapping[str, Any] | None = None
    limits: TurnLimits = field(default_factory=TurnLimits)


@dataclass(frozen=True)
class GenerationOptions:
    """A caller's limits and format for one turn (chat completions' parameters)."""

    max_tokens: int | None = None  # the lower of this and the agent's own applies
    stop: tuple[str, ...] = ()
    response_format: Mapping[str, Any] | None = None
    temperature: float | None = None  # replaces the agent's own

    def apply(self, agent: AgentSpec) -> AgentSpec:
        """The agent's spec with these options."""
        limit = agent.max_tokens
        if self.max_tokens is not None:
            limit = self.max_tokens if limit is None else min(limit, self.max_tokens)
        temperature = agent.temperature if self.temperature is None else self.temperature
        return replace(
            agent,
            max_tokens=limit,
            stop=self.stop,
            response_format=self.response_format,
            temperature=temperature,
        )


@dataclass(frozen=True)
class AgentContext:
    """Per-run dependencies: never checkpointed, supplied again on every turn."""

    org_id: str
    conversation_id: str
    agent: AgentSpec
    model: ChatModel
    toolbox: Toolbox = field(default_factory=Toolbox)
    retriever: Retriever = field(default_factory=NullRetriever)
    secrets: SecretProvider | None = None
    outbound_allowlist: Allowlist = field(default_factory=Allowlist)
    events: EventSink | None = None
    ledger: CostLedger | None = None  # prices the turn's usage (the chain records it)
    resolver: Resolver | None = None  # DNS for the SSRF guard; None = the system's
    client_tools: tuple[ClientTool, ...] = ()  # run by the caller; names never shadow toolbox's
    # MCP servers whose tools the runtime adds to the toolbox when the turn starts
    mcp_servers: tuple[McpServerUse, ...] = ()

    def tool_context(self) -> ToolContext:
        """What tools see of this run."""
        return ToolContext(
            org_id=self.org_id,
            agent_id=self.agent.agent_id,
            conversation_id=self.conversation_id,
            knowledge_base_ids=self.agent.knowledge_base_ids,
            retriever=self.retriever,
            secrets=self.secrets,
            outbound_allowlist=self.outbound_allowlist,
            resolver=self.resolver,
        )

    def tool_specs(self) -> list[ToolSpec]:
        """Every tool offered to the model: the agent's own, then the client's."""
        own = self.toolbox.specs()
        return [*own, *(t.spec for t in self.client_tools if t.name not in self.toolbox)]

    def is_client_call(self, call: ToolCall) -> bool:
        """Whether the caller, not the toolbox, runs this call."""
        return call.name not in self.toolbox and any(t.name == call.name for t in self.client_tools)


# --- state --------------------------------------------------------------------------------
Message = dict[str, Any]  # {"id", "role", "content", "tool_calls", "tool_call_id", "name"}


def merge_messages(left: list[Message] | None, right: list[Message] | None) -> list[Message]:
    """Append new messages; a message with a known id replaces the old one."""
    merged = list(left or [])
    index = {m["id"]: i for i, m in enumerate(merged)}
    for message in right or []:
        if message["id"] in index:
            merged[index[message["id"]]] = message
        else:
            index[message["id"]] = len(merged)
            merged.append(message)
    return merged


class AgentState(TypedDict, total=False):
    """Checkpointed state of one conversation."""

    messages: Annotated[list[Message], merge_messages]
    turn: dict[str, Any]  # scratch of the current turn, replaced at each user message


def new_turn(user_text: str) -> dict[str, Any]:
    """A fresh turn record."""
    return {
        "user_text": user_text,
        "started": time.perf_counter(),
        "flags": [],
        "passages": [],
        "iterations": 0,
        "usage": {"prompt": 0, "completion": 0, "estimated": False, "cost_usd": 0.0},
        "provider": "",
        "model": "",
        "latency_ms": {},
        "streamed": "",
        "reply": None,
        "blocked": None,
        "handoff": None,
        "end_conversation": False,
        "awaiting": [],  # client tool calls ({"id", "name"}) the turn ended waiting for
        "resumed": False,  # this turn goes on from client tool outputs, not a user message
        "final": None,
    }


def resumed_turn(previous: Mapping[str, Any]) -> dict[str, Any]:
    """The turn that goes on from client tool outputs: same question, passages and rounds."""
    turn = new_turn(previous.get("user_text", ""))
    for key in ("passages", "iterations", "flags"):
        turn[key] = previous.get(key, turn[key])
    turn["resumed"] = True
    return turn


def _message(role: str, content: str = "", **extra: Any) -> Message:
    return {"id": new_id("msg"), "role": role, "content": content, **extra}


def _to_chat(message: Message) -> ChatMessage:
    return ChatMessage(
        role=message["role"],
        content=message.get("content") or "",
        tool_calls=tuple(ToolCall(**c) for c in message.get("tool_calls") or ()),
        tool_call_id=message.get("tool_call_id"),
        name=message.get("name"),
    )


def _passages(turn: Mapping[str, Any]) -> list[NumberedPassage]:
    return [NumberedPassage(p["n"], Passage(**p["passage"])) for p in turn["passages"]]


def _numbered(
    turn: Mapping[str, Any], passages: Sequence[Passage]
) -> tuple[list[NumberedPassage], list[dict[str, Any]]]:
    """`passages` numbered for the turn (see `number_passages`), and the turn's passages
    with the new ones added."""
    shown, new = number_passages(_passages(turn), passages)
    added = [{"n": p.n, "passage": asdict(p.passage)} for p in new]
    return shown, [*turn["passages"], *added]


def history_window(messages: Sequence[Message], limit: int) -> list[Message]:
    """The most recent messages, starting at a user message so tool pairs stay whole."""
    window = list(messages[-limit:])
    while window and window[0]["role"] != "user":
        window.pop(0)
    return window or list(messages[-1:])


def answered(messages: Sequence[Message]) -> list[Message]:
    """The messages with a result for every tool call (calls nobody answered say so)."""
    out: list[Message] = []
    pending: list[dict[str, Any]] = []
    for message in messages:
        if pending and message["role"] != "tool":
            out.extend(_unanswered(pending))
            pending = []
        if message["role"] == "assistant":
            pending = list(message.get("tool_calls") or ())
        elif message["role"] == "tool":
            pending = [c for c in pending if c["id"] != message.get("tool_call_id")]
        out.append(message)
    out.extend(_unanswered(pending))
    return out


def _unanswered(calls: Sequence[Mapping[str, Any]]) -> list[Message]:
    return [
        _message("tool", UNANSWERED_OUTPUT, tool_call_id=c["id"], name=c["name"], is_error=True)
        for c in calls
    ]


def _elapsed_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


# --- nodes --------------------------------------------------------------------------------
NodeFn = Callable[[AgentState, AgentContext, StreamWriter], Awaitable[dict[str, Any]]]


def _node(name: str, fn: NodeFn) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Wrap a node in its `agent.node.<name>` span, with the conversation's identity."""

    async def run(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        ctx = runtime.context
        with (
            identity(ctx.org_id, ctx.conversation_id, ctx.agent.agent_id),
            span(f"agent.node.{name}"),
        ):
            return await fn(state, ctx, runtime.stream_writer)

    run.__name__ = name
    return run


async def input_guard(state: AgentState, ctx: AgentContext, write: StreamWriter) -> dict[str, Any]:
    """Refuse oversize input; flag suspected prompt injection."""
    turn = dict(state["turn"])
    if turn["resumed"]:
        return {"turn": _flag_injected_outputs(turn, state["messages"], write)}
    text = turn["user_text"]
    limit = ctx.agent.limits.max_input_chars
    if len(text) > limit:
        turn["blocked"] = "input_too_large"
        turn["reply"] = guards.TOO_LONG_REPLY
        turn["flags"] = [*turn["flags"], "input_too_large"]
        write(GuardFlag("input_too_large", f"{len(text)} characters, limit {limit}"))
        return {"turn": turn}
    for flag in guards.injection_flags(text):
        turn["flags"] = [*turn["flags"], "prompt_injection_suspected"]
        write(GuardFlag("prompt_injection_suspected", flag))
        break
    return {"turn": turn}


def _flag_injected_outputs(
    turn: dict[str, Any], messages: Sequence[Message], write: StreamWriter
) -> dict[str, Any]:
    """Flag client tool outputs (the messages after the last assistant) that inject."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    for message in messages[last + 1 :]:
        if message["role"] == "tool" and guards.injection_flags(message["content"]):
            turn["flags"] = [*turn["flags"], "prompt_injection_in_tool_result"]
            write(GuardFlag("prompt_injection_in_tool_result", message.get("name") or ""))
    return turn


async def retrieve(state: AgentState, ctx: AgentContext, write: StreamWriter) -> dict[str, Any]:
    """Passages for the user's message from the agent's knowledge bases."""
    turn = dict(state["turn"])
    started = time.perf_counter()
    passages = await ctx.retriever.retrieve(
        ctx.org_id, list(ctx.agent.knowledge_base_ids), turn["user_text"], ctx.agent.limits.top_k
    )
    _, turn["passages"] = _numbered(turn, passages)
    turn["latency_ms"] = {**turn["latency_ms"], "retrieve": _elapsed_ms(started)}
    return {"turn": turn}


async def generate(state: AgentState, ctx: AgentContext, write: StreamWriter) -> dict[str, Any]:
    """Stream the model's answer; tools are bound until the iteration cap is reached."""
    turn = dict(state["turn"])
    limits = ctx.agent.limits
    at_cap = turn["iterations"] >= limits.max_tool_iterations
    injection = "prompt_injection_suspected" in turn["flags"]
    prompt = [
        ChatMessage(
            "system",
            system_prompt(ctx.agent.instructions, _passages(turn), injection_suspected=injection),
        ),
        *(
            _to_chat(m)
            for m in answered(history_window(state["messages"], limits.max_history_messages))
        ),
    ]
    tools = [] if at_cap else ctx.tool_specs()
    started = time.perf_counter()
    builder = ChatResultBuilder()
    streamed: list[str] = []
    deltas = ctx.model.stream(
        prompt,
        tools=tools,
        tool_choice=_tool_choice(ctx.agent, turn, bool(tools)),
        temperature=ctx.agent.temperature,
        max_tokens=ctx.agent.max_tokens,
        timeout=ctx.agent.timeout_s,
        **_generation_options(ctx.agent),
    )
    try:
        async for delta in deltas:
            if "first_token" not in turn["latency_ms"] and (delta.text or delta.tool_call):
                turn["latency_ms"] = {**turn["latency_ms"], "first_token": _elapsed_ms(started)}
            if delta.text:
                streamed.append(delta.text)
                write(TextDelta(delta.text))
            builder.add(delta)
    finally:
        await close_stream(deltas)  # a cancelled turn releases the provider's stream now
    result = builder.result()
    latency = dict(turn["latency_ms"])
    latency["generate"] = round(latency.get("generate", 0.0) + _elapsed_ms(started), 1)
    turn["latency_ms"] = latency
    turn["streamed"] = "".join(streamed)
    turn["usage"] = _add_usage(turn["usage"], result.usage, ctx, result.provider, result.model)
    turn["provider"], turn["model"] = result.provider, result.model
    turn["finish_reason"] = result.finish_reason
    calls = list(result.tool_calls)
    if calls and at_cap:
        turn["flags"] = [*turn["flags"], "tool_iteration_cap"]
        write(GuardFlag("tool_iteration_cap", f"{limits.max_tool_iterations} tool rounds"))
        calls = []
        if not result.content.strip():
            turn["reply"] = CAP_REPLY
    for call in calls:
        write(ToolCallEvent(call.id, call.name, call.arguments, client=ctx.is_client_call(call)))
    message = _message(
        "assistant",
        result.content,
        tool_calls=[asdict(c) for c in calls],
        provider=result.provider,
        model=result.model,
    )
    return {"messages": [message], "turn": turn}


def _generation_options(agent: AgentSpec) -> dict[str, Any]:
    """`stop` and `response_format`, passed only when set (so any model port takes them)."""
    options: dict[str, Any] = {}
    if agent.stop:
        options["stop"] = agent.stop
    if agent.response_format is not None:
        options["response_format"] = agent.response_format
    return options


def _tool_choice(agent: AgentSpec, turn: Mapping[str, Any], has_tools: bool) -> str | None:
    if not has_tools:
        return None
    if agent.tool_choice == "none":
        return "none"  # never: holds for every generation of the turn
    if agent.tool_choice and turn["iterations"] == 0:
        return agent.tool_choice
    return "auto"


def _add_usage(
    usage: Mapping[str, Any], add: Any, ctx: AgentContext, provider: str, model: str
) -> dict[str, Any]:
    cost = ctx.ledger.price_for(provider, model).cost(add) if ctx.ledger else 0.0
    return {
        "prompt": usage["prompt"] + add.prompt_tokens,
        "completion": usage["completion"] + add.completion_tokens,
        "estimated": usage["estimated"] or add.estimated,
        "cost_usd": usage["cost_usd"] + cost,
    }


async def tools(state: AgentState, ctx: AgentContext, write: StreamWriter) -> dict[str, Any]:
    """Run the tool calls of the last assistant message (concurrently, results in order)."""
    turn = dict(state["turn"])
    assistant = state["messages"][-1]
    requested = [ToolCall(**c) for c in assistant["tool_calls"]]
    calls = [c for c in requested if not ctx.is_client_call(c)]
    turn["awaiting"] = [{"id": c.id, "name": c.name} for c in requested if ctx.is_client_call(c)]
    started = time.perf_counter()
    tool_ctx = ctx.tool_context()

    async def run_one(call: ToolCall) -> ToolResult:
        with span("agent.tool", {"vocalis.tool.name": call.name}):
            return await ctx.toolbox.execute(call, tool_ctx)

    results = await asyncio.gather(*(run_one(c) for c in calls))
    messages: list[Message] = []
    for call, result in zip(calls, results, strict=True):
        shown, turn["passages"] = _numbered(turn, result.passages)
        content = tool_result_text(result.content, shown, turn["user_text"])
        if guards.injection_flags(content):
            turn["flags"] = [*turn["flags"], "prompt_injection_in_tool_result"]
            write(GuardFlag("prompt_injection_in_tool_result", call.name))
        write(ToolResultEvent(call.id, call.name, result.content, result.is_error))
        messages.append(
            _message(
                "tool",
                content,
                tool_call_id=call.id,
                name=call.name,
                data=json.loads(json.dumps(dict(result.data), default=str)),
                is_error=result.is_error,
            )
        )
        if result.handoff:
            turn["handoff"] = {"tool": call.name, "reason": result.data.get("reason", "")}
        if result.end_conversation:
            turn["end_conversation"] = True
        if result.terminal and not turn.get("reply"):
            # The turn ends here: say what the model said alongside the call, else the tool's line.
            turn["reply"] = assistant["content"].strip() or result.content
    turn["iterations"] += 1
    latency = dict(turn["latency_ms"])
    latency["tools"] = round(latency.get("tools", 0.0) + _elapsed_ms(started), 1)
    turn["latency_ms"] = latency
    return {"messages": messages, "turn": turn}


async def handoff(state: AgentState, ctx: AgentContext, write: StreamWriter) -> dict[str, Any]:
    """Emit `handoff.requested` so a person can take the conversation over."""
    turn = dict(state["turn"])
    reason = str((turn["handoff"] or {}).get("reason") or "")
    payload = {
        "org_id": ctx.org_id,
        "conversation_id": ctx.conversation_id,
        "agent_id": ctx.agent.agent_id,
        "reason": reason,
        "last_user_message": turn["user_text"],
    }
    if ctx.events is not None:
        try:
            await ctx.events("handoff.requested", payload)
        except Exception:
            # The user must still get the reply; the failure is logged and flagged.
            log.exception("handoff_event_failed", conversation_id=ctx.conversation_id)
            turn["flags"] = [*turn["flags"], "handoff_event_failed"]
    write(HandoffEvent(reason))
    return {"turn": turn}


async def output_guard(state: AgentState, ctx: AgentContext, write: StreamWriter) -> dict[str, Any]:
    """Settle the final text, citations, usage and latency; emit the `FinalMessage`."""
    turn = dict(state["turn"])
    if turn["handoff"] is not None or turn["end_conversation"]:
        turn["awaiting"] = []  # the turn is over; calls nobody answers are told so later
    if turn["awaiting"]:
        return _await_client_outputs(state, ctx, turn, write)
    last = state["messages"][-1]
    draft = turn["reply"] if turn.get("reply") else last.get("content", "")
    settled = guards.settle_reply(
        draft or "",
        streamed=turn["streamed"],
        instructions=ctx.agent.instructions,
        passages={p["n"]: Passage(**p["passage"]) for p in turn["passages"]},
        max_chars=ctx.agent.limits.max_output_chars,
        question=turn["user_text"],
    )
    for event in settled.events:
        write(event)
    message = _final_message(state["messages"], turn, settled.content)
    final = FinalMessage(
        message_id=message["id"],
        content=settled.content,
        citations=settled.citations,
        tool_calls=_turn_tool_calls(state["messages"]),
        usage=_turn_usage(turn),
        latency_ms={**turn["latency_ms"], "total": _elapsed_ms(turn["started"])},
        flags=tuple(dict.fromkeys([*turn["flags"], *settled.flags])),
        handoff=turn["handoff"] is not None,
        end_conversation=bool(turn["end_conversation"]),
        replaced=settled.replaced,
        finish_reason=str(turn.get("finish_reason") or "stop"),
    )
    message["citations"] = [asdict(c) for c in final.citations]
    turn["final"] = _final_state(final)
    write(final)
    return {"messages": [message], "turn": turn}


def _await_client_outputs(
    state: AgentState, ctx: AgentContext, turn: dict[str, Any], write: StreamWriter
) -> dict[str, Any]:
    """End the turn waiting for client tool outputs: no reply, only what was said alongside."""
    caller = next(m for m in reversed(state["messages"]) if m["role"] == "assistant")
    said = caller["content"].strip()
    check = guards.OutputCheck("")
    if said:
        check = guards.check_output(
            said,
            instructions=ctx.agent.instructions,
            passage_numbers={p["n"] for p in turn["passages"]},
            max_chars=ctx.agent.limits.max_output_chars,
        )
    for flag in check.flags:
        write(GuardFlag(flag))
    final = FinalMessage(
        message_id=caller["id"],
        content=check.content,
        tool_calls=_turn_tool_calls(state["messages"]),
        usage=_turn_usage(turn),
        latency_ms={**turn["latency_ms"], "total": _elapsed_ms(turn["started"])},
        flags=tuple(dict.fromkeys([*turn["flags"], *check.flags])),
        replaced=said != check.content,
        awaiting_tool_calls=tuple(c["id"] for c in turn["awaiting"]),
    )
    turn["final"] = _final_state(final)
    write(final)
    changed = [{**caller, "content": check.content}] if final.replaced else []
    return {"messages": changed, "turn": turn}


_FINAL_FIELDS = tuple(f.name for f in fields(FinalMessage))
_USAGE_FIELDS = tuple(f.name for f in fields(TurnUsage))  # scalars only


def _final_state(final: FinalMessage) -> dict[str, Any]:
    """`asdict(final)`, as the turn keeps it, built field by field (the generic recursion
    was a measurable part of a turn): nested dataclasses as dicts, containers copied; the
    other fields are immutable values."""
    state = {name: getattr(final, name) for name in _FINAL_FIELDS}
    state["citations"] = tuple(asdict(c) for c in final.citations)
    state["tool_calls"] = tuple(copy.deepcopy(c) for c in final.tool_calls)
    state["usage"] = {name: getattr(final.usage, name) for name in _USAGE_FIELDS}
    state["latency_ms"] = dict(final.latency_ms)
    return state


def _turn_usage(turn: Mapping[str, Any]) -> TurnUsage:
    usage = turn["usage"]
    return TurnUsage(
        usage["prompt"],
        usage["completion"],
        round(usage["cost_usd"], 8),
        usage["estimated"],
        turn["provider"],
        turn["model"],
    )


def _turn_tool_calls(messages: Sequence[Message]) -> tuple[dict[str, Any], ...]:
    """The tool calls made since the last user message."""
    return tuple(
        c
        for m in messages
        if m["role"] == "assistant"
        for c in m.get("tool_calls") or ()
        if _in_turn(messages, m)
    )


def _final_message(messages: Sequence[Message], turn: Mapping[str, Any], content: str) -> Message:
    """The assistant message that carries the final text: the last one when it can, else new."""
    last = messages[-1]
    if last["role"] == "assistant" and not last.get("tool_calls"):
        return {**last, "content": content}
    if last["role"] == "tool":
        # A terminal tool ended the turn: the text said alongside the call is the reply.
        caller = next(m for m in reversed(messages) if m["role"] == "assistant")
        if caller["content"].strip():
            return {**caller, "content": content}
    return _message("assistant", content, provider=turn["provider"], model=turn["model"])


def _in_turn(messages: Sequence[Message], message: Message) -> bool:
    """Whether a message belongs to the current turn (after the last user message)."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    return any(m is message for m in messages[last_user + 1 :])


# --- routing ------------------------------------------------------------------------------
def after_input_guard(
    state: AgentState, ctx: AgentContext
) -> Literal["retrieve", "generate", "output_guard"]:
    """Blocked input skips the model; retrieval only when the agent has knowledge bases."""
    if state["turn"]["blocked"]:
        return "output_guard"
    if state["turn"]["resumed"]:
        return "generate"  # the question's passages are already in the turn
    return "retrieve" if ctx.agent.knowledge_base_ids else "generate"


def after_generate(state: AgentState, ctx: AgentContext) -> Literal["tools", "output_guard"]:
    """Tool calls go to the tools node; an answer goes to the output guard."""
    return "tools" if state["messages"][-1].get("tool_calls") else "output_guard"


def after_tools(
    state: AgentState, ctx: AgentContext
) -> Literal["handoff", "output_guard", "generate"]:
    """A handoff, an ended conversation or a client tool call ends the turn; else go on."""
    turn = state["turn"]
    if turn["handoff"] is not None:
        return "handoff"
    if turn["end_conversation"] or turn["awaiting"]:
        return "output_guard"
    return "generate"


# The graph's edges, in one place: the compiled graph (`build_agent_graph`) and the
# unsaved turn (`run_agent_unsaved`) both follow them.
EDGES: dict[str, str] = {"retrieve": "generate", "handoff": "output_guard", "output_guard": END}
ROUTES: dict[str, tuple[Callable[[AgentState, AgentContext], str], list[str]]] = {
    "input_guard": (after_input_guard, ["retrieve", "generate", "output_guard"]),
    "generate": (after_generate, ["tools", "output_guard"]),
    "tools": (after_tools, ["handoff", "output_guard", "generate"]),
}


def _langgraph_route(
    route: Callable[[AgentState, AgentContext], str],
) -> Callable[[AgentState, Runtime[AgentContext]], str]:
    """A route as LangGraph calls it (the context comes in its runtime)."""

    def decide(state: AgentState, runtime: Runtime[AgentContext]) -> str:
        return route(state, runtime.context)

    decide.__name__ = route.__name__
    return decide


NODE_FUNCTIONS: dict[str, NodeFn] = {
    "input_guard": input_guard,
    "retrieve": retrieve,
    "generate": generate,
    "tools": tools,
    "handoff": handoff,
    "output_guard": output_guard,
}


_NODE_SPANS = {name: f"agent.node.{name}" for name in NODE_FUNCTIONS}


def build_agent_graph(
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> CompiledStateGraph[AgentState, AgentContext, AgentState, AgentState]:
    """The compiled agent graph (one per process; agents differ only in their context)."""
    graph = StateGraph(AgentState, context_schema=AgentContext)
    for name, fn in NODE_FUNCTIONS.items():
        graph.add_node(name, _node(name, fn))
    graph.add_edge(START, "input_guard")
    for name, (route, targets) in ROUTES.items():
        graph.add_conditional_edges(name, _langgraph_route(route), targets)
    for name, target in EDGES.items():
        graph.add_edge(name, target)
    return graph.compile(checkpointer=checkpointer, name="vocalis-agent")


def agent_graph_mermaid() -> str:
    """The agent graph as a Mermaid flowchart (embedded in the docs)."""
    return build_agent_graph().get_graph().draw_mermaid()


# --- running a turn -----------------------------------------------------------------------
_DONE = object()


async def run_agent(
    graph: CompiledStateGraph[AgentState, AgentContext, AgentState, AgentState],
    ctx: AgentContext,
    user_text: str,
    tool_outputs: Sequence[ToolOutput] = (),
) -> AsyncIterator[AgentEvent]:
    """Run one turn of a conversation, yielding its events; the last is a `FinalMessage`.

    `tool_outputs` answer the client tool calls the previous turn ended awaiting; with no
    `user_text` the turn goes on from them, otherwise the user's message follows them.
    The graph runs in its own task (so its tracing context never leaks into the caller's);
    closing the iterator early cancels the turn.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()
    task = asyncio.create_task(_drive(graph, ctx, user_text, tool_outputs, queue))
    async with aclosing(_drained(queue, task)) as events:  # closed early: the turn ends
        async for event in events:
            yield event


async def _drained(queue: asyncio.Queue[Any], task: asyncio.Task[None]) -> AsyncGenerator[Any]:
    """The events a turn's task puts on `queue` until `_DONE`, its failure raised here;
    the task is cancelled if the caller stops early."""
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
        await task
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _drive(
    graph: CompiledStateGraph[AgentState, AgentContext, AgentState, AgentState],
    ctx: AgentContext,
    user_text: str,
    tool_outputs: Sequence[ToolOutput],
    queue: asyncio.Queue[Any],
) -> None:
    config: RunnableConfig = {
        "configurable": {"thread_id": ctx.conversation_id},
        # Each tool round is two steps; leave room for the guard and retrieve nodes.
        "recursion_limit": 2 * ctx.agent.limits.max_tool_iterations + 10,
    }
    attributes = {"vocalis.agent.iteration_cap": ctx.agent.limits.max_tool_iterations}
    try:
        turn_input = await _turn_input(graph, config, user_text, tool_outputs)
        with (
            identity(ctx.org_id, ctx.conversation_id, ctx.agent.agent_id),
            span("agent.run", attributes) as current,
        ):
            async for event in graph.astream(
                turn_input,
                config,
                context=ctx,
                stream_mode="custom",
                # One checkpoint write when the turn ends, not one per node.
                durability="exit",
            ):
                if isinstance(event, FinalMessage):
                    current.set_attribute("vocalis.agent.flags", list(event.flags))
                    current.set_attribute("vocalis.agent.handoff", event.handoff)
                await queue.put(event)
    except BaseException as exc:
        await queue.put(exc)
        if not isinstance(exc, Exception):
            raise
    finally:
        await queue.put(_DONE)


async def _turn_input(
    graph: CompiledStateGraph[AgentState, AgentContext, AgentState, AgentState],
    config: RunnableConfig,
    user_text: str,
    tool_outputs: Sequence[ToolOutput],
) -> AgentState:
    """The state update that starts a turn: a user message, tool outputs, or both."""
    if not tool_outputs:
        return {"messages": [_message("user", user_text)], "turn": new_turn(user_text)}
    snapshot = await graph.aget_state(config)
    return _input_after(snapshot.values or {}, user_text, tool_outputs)


def _input_after(
    values: Mapping[str, Any], user_text: str, tool_outputs: Sequence[ToolOutput]
) -> AgentState:
    """`_turn_input` on a conversation whose state is `values`."""
    if not tool_outputs:
        return {"messages": [_message("user", user_text)], "turn": new_turn(user_text)}
    previous = values.get("turn") or new_turn(user_text)
    awaited = {c["id"]: c["name"] for c in previous.get("awaiting") or ()}
    outputs = [
        _message("tool", o.output, tool_call_id=o.call_id, name=awaited[o.call_id], client=True)
        for o in tool_outputs
        if o.call_id in awaited  # the conversations service refuses the others
    ]
    if user_text.strip():
        return {
            "messages": [*outputs, _message("user", user_text)],
            "turn": new_turn(user_text),
        }
    return {"messages": outputs, "turn": resumed_turn(previous)}


def _apply(state: AgentState, update: Mapping[str, Any]) -> AgentState:
    """`update` applied as the graph's channels apply it (messages merged, the rest replaced)."""
    merged: dict[str, Any] = dict(state)
    for key, value in update.items():
        merged[key] = merge_messages(merged.get(key), value) if key == "messages" else value
    return merged  # type: ignore[return-value]


def _next_node(node: str, state: AgentState, ctx: AgentContext) -> str:
    """Where the graph goes after `node` (`EDGES`, `ROUTES`)."""
    if node in EDGES:
        return EDGES[node]
    return ROUTES[node][0](state, ctx)


async def run_agent_unsaved(
    ctx: AgentContext,
    user_text: str,
    tool_outputs: Sequence[ToolOutput] = (),
    *,
    state: AgentState | None = None,
) -> AsyncGenerator[AgentEvent]:
    """`run_agent` for a turn whose state is never kept (a one-off chat completion): the
    same nodes, edges, spans and events, run in order on `state` (the conversation so far)
    without LangGraph's Pregel loop and checkpointer, which cost about half of such a
    turn's CPU. The graph's recursion limit holds too."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    task = asyncio.create_task(_drive_unsaved(ctx, state or {}, user_text, tool_outputs, queue))
    async with aclosing(_drained(queue, task)) as events:  # closed early: the turn ends
        async for event in events:
            yield event


async def _drive_unsaved(
    ctx: AgentContext,
    state: AgentState,
    user_text: str,
    tool_outputs: Sequence[ToolOutput],
    queue: asyncio.Queue[Any],
) -> None:
    limit = 2 * ctx.agent.limits.max_tool_iterations + 10  # as `_drive` sets it
    attributes = {"vocalis.agent.iteration_cap": ctx.agent.limits.max_tool_iterations}
    try:
        state = _apply(_apply({}, state), _input_after(state, user_text, tool_outputs))
        with (
            identity(ctx.org_id, ctx.conversation_id, ctx.agent.agent_id),
            span("agent.run", attributes) as current,
        ):

            def write(event: Any) -> None:
                if isinstance(event, FinalMessage):
                    current.set_attribute("vocalis.agent.flags", list(event.flags))
                    current.set_attribute("vocalis.agent.handoff", event.handoff)
                queue.put_nowait(event)

            node, steps = "input_guard", 0
            while node != END:
                if steps >= limit:
                    raise GraphRecursionError(f"Recursion limit of {limit} reached")
                steps += 1
                with span(_NODE_SPANS[node]):
                    update = await NODE_FUNCTIONS[node](state, ctx, write)
                state = _apply(state, update)
                node = _next_node(node, state, ctx)
    except BaseException as exc:
        await queue.put(exc)
        if not isinstance(exc, Exception):
            raise
    finally:
        await queue.put(_DONE)


async def run_turn(
    graph: CompiledStateGraph[AgentState, AgentContext, AgentState, AgentState],
    ctx: AgentContext,
    user_text: str,
) -> FinalMessage:
    """Run one turn and return only its final message."""
    final: FinalMessage | None = None
    async for event in run_agent(graph, ctx, user_text):
        if isinstance(event, FinalMessage):
            final = event
    if final is None:  # pragma: no cover - the graph always ends in output_guard
        raise RuntimeError("the agent turn ended without a final message")
    return final


async def conversation_messages(
    graph: CompiledStateGraph[AgentState, AgentContext, AgentState, AgentState],
    conversation_id: str,
) -> list[Message]:
    """The checkpointed messages of a conversation (empty when it has none)."""
    snapshot = await graph.aget_state({"configurable": {"thread_id": conversation_id}})
    values = snapshot.values or {}
    return list(values.get("messages", []))


# --- checkpointing on the configured database ---------------------------------------------
def checkpointer_url(database_url: str) -> tuple[Literal["postgres", "sqlite"], str]:
    """The checkpointer kind and driver-level URL for an SQLAlchemy database URL."""
    scheme, _, rest = database_url.partition("://")
    dialect = scheme.split("+", 1)[0]
    if dialect in ("postgresql", "postgres"):
        return "postgres", f"postgresql://{rest}"
    if dialect == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest  # sqlite:///relative, ////absolute
        return "sqlite", path or ":memory:"
    raise ValueError(f"no checkpointer for database URL scheme {scheme!r}")


def open_checkpointer(database_url: str) -> AbstractAsyncContextManager[BaseCheckpointSaver[Any]]:
    """A checkpointer on the app's database: PostgreSQL (pooled) or SQLite; tables created."""
    kind, url = checkpointer_url(database_url)
    return _postgres_saver(url) if kind == "postgres" else _sqlite_saver(url)


@asynccontextmanager
async def _postgres_saver(url: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    async with AsyncConnectionPool(
        url,
        open=False,
        max_size=10,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    ) as pool:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        yield saver


@asynccontextmanager
async def _sqlite_saver(path: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    # LangGraph's SqliteSaver run in one thread hop per operation (not aiosqlite's hop per
    # cursor call); the same tables and format as AsyncSqliteSaver's.
    from vocalis.agents.sqlite_checkpoint import open_sqlite_saver

    async with open_sqlite_saver(path) as saver:
        yield saver


def event_payload(event: AgentEvent) -> dict[str, Any]:
    """An event as a JSON-ready dict (for SSE and logs)."""
    return asdict(event)
