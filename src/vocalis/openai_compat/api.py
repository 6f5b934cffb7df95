"""Route: `POST /v1/chat/completions`, OpenAI's chat-completions API over our agents.

`model` names an agent. Streaming follows OpenAI's chunk format (`data: {chunk}` lines
ending with `data: [DONE]`, and a last chunk carrying `usage` when
`stream_options.include_usage` is set). Errors are problem+json that also carry OpenAI's
`error` object, so OpenAI SDKs report them with a useful message.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from vocalis.agents.events import TextDelta, ToolCallEvent
from vocalis.agents.runtime import AgentRuntime, RuntimeDep
from vocalis.conversations.service import TurnResult
from vocalis.core.backends import Backends
from vocalis.core.deps import BackendsDep
from vocalis.core.errors import INTERNAL_ERROR, VocalisError
from vocalis.core.ids import new_id
from vocalis.core.openapi import error_responses
from vocalis.core.problems import openai_error
from vocalis.core.ratelimit import rate_limit_class
from vocalis.core.security import Principal, Scoped
from vocalis.openai_compat import service
from vocalis.openai_compat.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CompletionUsage,
    FinishReason,
    FunctionCall,
    ToolCallOut,
    VocalisExtras,
)

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["openai-compatible"])


def _with_openai_error(exc: VocalisError) -> VocalisError:
    if "error" not in exc.extra:  # one that names its `param` is kept
        exc.extra = {**exc.extra, "error": openai_error(exc.code, exc.detail, exc.status)}
    return exc


def completion_responses(
    chunk: str, *codes: str, **descriptions: str
) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a completions route: its answer, streamed as `chunk` events with
    `stream=true`, an unknown agent, and its error codes (400s: a parameter it refuses)."""
    return {
        200: {
            "description": f"The completion; with `stream=true`, `{chunk}` server-sent events "
            "ending with `data: [DONE]`.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        404: {"description": "No agent with the id given as `model`."},
        **error_responses(
            *codes, **{"status_400": "A parameter the agent cannot honour.", **descriptions}
        ),
    }


@router.post(
    "/chat/completions",
    openapi_extra=rate_limit_class("chat_turns"),
    response_model=ChatCompletion,
    responses=completion_responses(
        "chat.completion.chunk",
        "unsupported_parameter",
        "client_tools_unsupported",
        "client_tool_name_taken",
        "agent_runtime_unavailable",
        status_422="Client tools the agent's runtime cannot take or whose names clash, "
        "or a runtime not installed.",
    ),
    summary="Chat with an agent through OpenAI's chat-completions API",
)
async def create_chat_completion(
    body: ChatCompletionRequest,
    principal: Annotated[Principal, Scoped("conversations:write")],
    backends: BackendsDep,
    runtime: RuntimeDep,
    request: Request,
) -> Any:
    try:
        started = await service.begin_completion(
            backends=backends, runtime=runtime, org_id=principal.org_id, request=body
        )
    except VocalisError as exc:
        raise _with_openai_error(exc) from None
    structlog.contextvars.bind_contextvars(conversation_id=started.conversation_id)
    completion_id = f"chatcmpl-{new_id('cmp').split('_', 1)[1]}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _chunks(
                started,
                backends,
                runtime,
                principal.org_id,
                completion_id,
                created,
                body.model,
                include_usage,
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        result: TurnResult | None = None
        async for event in started.turn.events():
            if isinstance(event, TurnResult):
                result = event
    except VocalisError as exc:
        raise _with_openai_error(exc) from None
    finally:
        await service.finish_completion(started)
    assert result is not None
    calls = client_calls(result)
    message = AssistantMessage(
        content=result.final.content if result.final.content or not calls else None,
        tool_calls=[
            ToolCallOut(id=c["id"], function=FunctionCall(name=c["name"], arguments=c["arguments"]))
            for c in calls
        ]
        or None,
    )
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=body.model,
        choices=[Choice(message=message, finish_reason=finish_reason(result))],
        usage=turn_usage(result),
        vocalis=_extras(started.conversation_id, result),
    )


def client_calls(result: TurnResult) -> list[dict[str, Any]]:
    """The client tool calls the turn ended awaiting ({"id", "name", "arguments"})."""
    awaiting = set(result.final.awaiting_tool_calls)
    return [dict(c) for c in result.final.tool_calls if c.get("id") in awaiting]


def finish_reason(result: TurnResult) -> FinishReason:
    final = result.final
    if final.awaiting_tool_calls:
        return "tool_calls"
    if final.finish_reason == "length" or "output_truncated" in final.flags:
        return "length"
    return "stop"


def turn_usage(result: TurnResult) -> CompletionUsage:
    usage = result.final.usage
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
    )


def _extras(conversation_id: str, result: TurnResult) -> VocalisExtras:
    return VocalisExtras(
        conversation_id=conversation_id,
        message_id=result.message["_id"],
        citations=[asdict(c) for c in result.final.citations],
        latency_ms=dict(result.final.latency_ms),
        handoff=result.final.handoff,
        conversation_ended=result.conversation_ended,
    )


_PLACEHOLDER = "\x00text\x00"
_PLACEHOLDER_JSON = json.dumps(_PLACEHOLDER)


def _data(payload: Any) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'), default=str)}\n\n"


async def _chunks(
    started: service.CompletionTurn,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    """The turn as `chat.completion.chunk` events."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            body["usage"] = None
        return body | extra

    # A text chunk differs from the others only in its text: serialized once around a
    # placeholder, each one is the text's JSON string between the two halves.
    before, _, after = _data(chunk({"content": _PLACEHOLDER})).rpartition(_PLACEHOLDER_JSON)
    try:
        yield _data(chunk({"role": "assistant", "content": ""}))
        calls = 0
        async for event in started.turn.events():
            if isinstance(event, TextDelta):
                yield f"{before}{json.dumps(event.text)}{after}"
            elif isinstance(event, ToolCallEvent) and event.client:
                call = {
                    "index": calls,
                    "id": event.id,
                    "type": "function",
                    "function": {"name": event.name, "arguments": event.arguments},
                }
                calls += 1
                yield _data(chunk({"tool_calls": [call]}))
            elif isinstance(event, TurnResult):
                extras = _extras(started.conversation_id, event).model_dump(mode="json")
                yield _data(chunk({}, finish_reason(event), vocalis=extras))
                if include_usage:
                    final = chunk({}) | {"choices": [], "usage": turn_usage(event).model_dump()}
                    yield _data(final)
        yield "data: [DONE]\n\n"
    except VocalisError as exc:
        log.warning("completion_failed", code=exc.code, detail=exc.detail)
        yield _data({"error": openai_error(exc.code, exc.detail, exc.status)})
    except Exception:
        log.exception("completion_failed")
        yield _data({"error": openai_error(INTERNAL_ERROR, "Internal server error", 500)})
    finally:
        await service.finish_completion(started)
