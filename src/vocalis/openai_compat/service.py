"""Chat completions as conversation turns.

Without `user`, a request is a one-off (ephemeral) conversation: seeded with the request's
earlier messages (user and assistant text, and earlier client tool calls with their
results), answered, then ended (the transcript stays, with `ephemeral: true`); it runs on
in-memory checkpoints and is written once, when it is over (`one_off.OneOffTurn`). With
`user`, the agent keeps one active conversation per user and the server holds the history:
only the request's trailing user message(s), or trailing `tool` messages, are new. System
and developer messages are ignored: the agent's own instructions govern it.

Client `tools` are offered to the agent's model beside its own tools; a call of one ends the
turn awaiting its output (returned as `tool_calls`), and a request whose last messages are
`tool` messages goes on from those outputs. `response_format`, `max_tokens` and `stop`
apply to every generation of the turn. An agent that cannot honour a parameter — one
answered by the extractive responder alone (no model configured), or on a runtime that
does not take it — is refused with `unsupported_parameter`, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from vocalis.agents.chains import chat_endpoints, default_endpoint
from vocalis.agents.graph import GenerationOptions
from vocalis.agents.runtime import AgentRuntime
from vocalis.agents.schemas import AgentConfig
from vocalis.agents.tools.base import build_toolbox
from vocalis.agents.tools.client import (
    ClientTool,
    ToolOutput,
    check_client_tools,
    check_tool_choice,
)
from vocalis.conversations import service as conversations
from vocalis.conversations import store
from vocalis.core.backends import Backends
from vocalis.core.errors import RequestError, register
from vocalis.core.ids import new_id
from vocalis.core.problems import openai_error
from vocalis.openai_compat.one_off import OneOffTurn, begin_one_off
from vocalis.openai_compat.schemas import ChatCompletionRequest, ChatMessageIn

SOURCE = "chat.completions"
MAX_STOP = 4  # OpenAI's limit

UNSUPPORTED_PARAMETER = register(
    "unsupported_parameter",
    400,
    "Parameter not supported by this agent",
    "An OpenAI-compatible request sets a parameter the agent cannot honour (`tools` or "
    "`response_format` for an agent answered by the extractive responder alone, "
    "`response_format` or `stop` on a runtime that does not take them); it is refused, "
    "never ignored. `param` names it.",
)


def unsupported(param: str, message: str) -> RequestError:
    """`unsupported_parameter` naming the request field."""
    error = RequestError(message, code=UNSUPPORTED_PARAMETER)
    error.extra = {"error": openai_error(UNSUPPORTED_PARAMETER, message, 400, param)}
    return error


def _bad(param: str, message: str) -> RequestError:
    error = RequestError(message)
    error.extra = {"error": openai_error(error.code, message, 400, param)}
    return error


@dataclass
class ParsedMessages:
    """A request's messages: the history before the new input, and the new input."""

    history: list[dict[str, Any]]  # graph messages ({"id", "role", "content", …})
    new_input: str  # the new user text; "" when the request goes on from tool outputs
    question: str  # the text of the last user message (the turn's question)
    tool_outputs: list[ToolOutput] = field(default_factory=list)
    awaiting: list[dict[str, str]] = field(default_factory=list)  # the calls they answer

    def text_history(self) -> list[tuple[str, str]]:
        """The user and assistant text of the history (a new conversation's seed)."""
        return [
            (m["role"], m["content"])
            for m in self.history
            if m["role"] in ("user", "assistant") and m["content"].strip()
        ]


def _graph_message(message: ChatMessageIn, names: dict[str, str]) -> dict[str, Any] | None:
    role = str(message.role)
    if role in ("user", "assistant"):
        out: dict[str, Any] = {"id": new_id("msg"), "role": role, "content": message.text()}
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments or "{}"}
            for c in message.tool_calls or ()
        ]
        if role == "assistant" and calls:
            names.update({c["id"]: c["name"] for c in calls})
            out["tool_calls"] = calls
        return out if out["content"].strip() or calls else None
    if role == "tool" and message.tool_call_id in names:
        return {
            "id": new_id("msg"),
            "role": "tool",
            "content": message.text(),
            "tool_call_id": message.tool_call_id,
            "name": names[message.tool_call_id],
        }
    return None  # system, developer, legacy function messages, unmatched tool results


def split_messages(messages: Sequence[ChatMessageIn]) -> ParsedMessages:
    """The earlier history, and the new input: trailing user messages, or tool outputs."""
    last = messages[-1].role
    if last not in ("user", "tool"):
        raise _bad("messages", "The last message must have the role `user` or `tool`.")
    start = len(messages)
    while start > 0 and messages[start - 1].role == last:
        start -= 1
    names: dict[str, str] = {}
    if last == "tool":
        caller = messages[start - 1] if start > 0 else None
        if caller is None or caller.role != "assistant" or not caller.tool_calls:
            raise _bad(
                "messages",
                "`tool` messages must follow the assistant message whose `tool_calls` they answer.",
            )
        start -= 1  # the caller belongs to the history
    history = [m for m in (_graph_message(x, names) for x in messages[:start]) if m]
    question = next((m.text() for m in reversed(messages) if m.role == "user"), "")
    if last == "user":
        new_input = "\n\n".join(t for m in messages[start:] if (t := m.text()).strip()).strip()
        if not new_input:
            raise _bad("messages", "The last user message has no text.")
        return ParsedMessages(history, new_input, new_input)
    caller = messages[start]
    calls = [{"id": c.id, "name": c.function.name} for c in caller.tool_calls or ()]
    caller_message = _graph_message(caller, names)
    assert caller_message is not None
    history.append(caller_message)
    known = {c["id"] for c in calls}
    outputs = [
        ToolOutput(m.tool_call_id or "", m.text())
        for m in messages[start + 1 :]
        if m.tool_call_id in known
    ]
    if not outputs:
        raise _bad("messages", "No `tool` message answers a call of the last assistant message.")
    return ParsedMessages(history, "", question, outputs, calls)


def client_tools(request: ChatCompletionRequest) -> list[ClientTool]:
    """The request's `tools` as client tools."""
    return [
        ClientTool(t.function.name, t.function.description, dict(t.function.parameters))
        for t in request.tools or ()
    ]


def generation_options(request: ChatCompletionRequest) -> GenerationOptions | None:
    """`max_tokens`/`max_completion_tokens`, `stop`, `response_format` and `temperature`
    (None when none is set)."""
    stop = [s for s in request.stop_list() if s]
    if len(stop) > MAX_STOP:
        raise _bad("stop", f"`stop` takes at most {MAX_STOP} strings.")
    response_format: dict[str, Any] | None = None
    wanted = request.response_format
    if wanted is not None and wanted.type == "json_object":
        response_format = {"type": "json_object"}
    elif wanted is not None and wanted.type == "json_schema":
        spec = wanted.json_schema
        if spec is None or spec.schema_ is None:
            raise _bad("response_format", "A `json_schema` response format needs its `schema`.")
        try:
            Draft202012Validator.check_schema(spec.schema_)
        except SchemaError as exc:
            raise _bad("response_format", f"Invalid JSON schema: {exc.message}") from None
        schema_spec: dict[str, Any] = {"name": spec.name, "schema": spec.schema_}
        if spec.strict is not None:
            schema_spec["strict"] = spec.strict
        response_format = {"type": "json_schema", "json_schema": schema_spec}
    limit = request.token_limit()
    if limit is None and not stop and response_format is None and request.temperature is None:
        return None
    return GenerationOptions(limit, tuple(stop), response_format, request.temperature)


def check_supported(
    runtime: AgentRuntime, config: AgentConfig, request: ChatCompletionRequest
) -> None:
    """Refuse what this agent cannot honour, naming the parameter."""
    json_format = request.response_format is not None and request.response_format.type != "text"
    extractive_only = not chat_endpoints(config.model, default_endpoint(runtime.settings))
    if extractive_only:
        why = (
            "This agent has no model: it is answered by the extractive responder, which "
            "quotes its knowledge base and cannot {}. Give the agent a model (or configure the "
            "deployment's default model) to use it."
        )
        if request.tools:
            raise unsupported("tools", why.format("call client tools"))
        if json_format:
            raise unsupported("response_format", why.format("answer in a response format"))
    if config.runtime != "langgraph":
        if json_format:
            raise unsupported(
                "response_format",
                f"The agent's runtime ({config.runtime}) does not take `response_format`; "
                "use the langgraph runtime for it.",
            )
        if request.stop_list():
            raise unsupported(
                "stop",
                f"The agent's runtime ({config.runtime}) does not take `stop`; "
                "use the langgraph runtime for it.",
            )


@dataclass
class CompletionTurn:
    """A started turn, and whether its conversation lives only for this request."""

    turn: conversations.Turn | OneOffTurn
    ephemeral: bool

    @property
    def conversation_id(self) -> str:
        """The conversation the completion ran in."""
        return self.turn.conversation_id


async def begin_completion(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    request: ChatCompletionRequest,
) -> CompletionTurn:
    """Find or start the conversation and begin its turn."""
    parsed = split_messages(request.messages)
    tools = client_tools(request)
    tool_choice = request.tool_choice_name()
    generation = generation_options(request)
    metadata = {"source": SOURCE, **(request.metadata or {})}
    if request.user is None:
        one_off = await begin_one_off(
            backends=backends,
            runtime=runtime,
            org_id=org_id,
            agent_id=request.model,
            history=parsed.history,
            content=parsed.question,
            metadata=metadata,
        )
        check_supported(runtime, one_off.config, request)
        own = build_toolbox(one_off.config.tools).tools
        check_client_tools(tools, own)
        check_tool_choice(tool_choice, [*own, *(t.name for t in tools)])
        one_off.client_tools = tuple(tools)
        one_off.tool_choice = tool_choice
        one_off.generation = generation
        one_off.tool_outputs = tuple(parsed.tool_outputs)
        one_off.awaiting = list(parsed.awaiting)
        return CompletionTurn(one_off, ephemeral=True)
    if request.tools or request.response_format or request.stop_list():
        config = await runtime.load_agent(org_id, request.model)
        if config is not None:  # an unknown agent is refused below (404)
            check_supported(runtime, config, request)
    conversation = await store.find_active_for_user(
        backends.documents, org_id, request.model, request.user
    )
    if conversation is None:
        conversation = await conversations.start_conversation(
            backends=backends,
            runtime=runtime,
            org_id=org_id,
            agent_id=request.model,
            channel="api",
            metadata=metadata,
            external_user=request.user,
            greet=False,
        )
        await runtime.seed_history(conversation["_id"], parsed.text_history())
    turn = await conversations.begin_turn(
        backends=backends,
        runtime=runtime,
        org_id=org_id,
        conversation_id=conversation["_id"],
        content=parsed.new_input,
        client_tools=tools,
        tool_outputs=parsed.tool_outputs,
        tool_choice=tool_choice,
    )
    turn.generation = generation
    return CompletionTurn(turn, ephemeral=False)


async def finish_completion(started: CompletionTurn) -> None:
    """Store a one-off conversation whose turn did not run to its end (no-op otherwise)."""
    if isinstance(started.turn, OneOffTurn):
        await started.turn.close()
