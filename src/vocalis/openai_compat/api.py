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

from vocalis.agents.events import TextDelta
from vocalis.agents.runtime import AgentRuntime, RuntimeDep, runtime_lifespan
from vocalis.conversations.service import TurnResult
from vocalis.core.backends import Backends
from vocalis.core.deps import BackendsDep
from vocalis.core.errors import INTERNAL_ERROR, VocalisError
from vocalis.core.ids import new_id
from vocalis.core.security import Principal, Scoped
from vocalis.openai_compat import service
from vocalis.openai_compat.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CompletionUsage,
    VocalisExtras,
)

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["openai-compatible"], lifespan=runtime_lifespan)

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(code: str, message: str, status: int) -> dict[str, Any]:
    """OpenAI's error object for one of our errors."""
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"message": message, "type": kind, "param": None, "code": code}


def _with_openai_error(exc: VocalisError) -> VocalisError:
    exc.extra = {**exc.extra, "error": openai_error(exc.code, exc.detail, exc.status)}
    return exc


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {
            "description": "The completion; with `stream=true`, `chat.completion.chunk` "
            "server-sent events ending with `data: [DONE]`.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        404: {"description": "No agent with the id given as `model`."},
    },
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
        await service.finish_completion(
            backends, runtime, principal.org_id, started.conversation_id, started.ephemeral
        )
    assert result is not None
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=body.model,
        choices=[
            Choice(
                message=AssistantMessage(content=result.final.content),
                finish_reason=_finish_reason(result),
            )
        ],
        usage=_usage(result),
        vocalis=_extras(started.conversation_id, result),
    )


def _finish_reason(result: TurnResult) -> Any:
    return "length" if "output_truncated" in result.final.flags else "stop"


def _usage(result: TurnResult) -> CompletionUsage:
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

    try:
        yield _data(chunk({"role": "assistant", "content": ""}))
        async for event in started.turn.events():
            if isinstance(event, TextDelta):
                yield _data(chunk({"content": event.text}))
            elif isinstance(event, TurnResult):
                extras = _extras(started.conversation_id, event).model_dump(mode="json")
                yield _data(chunk({}, _finish_reason(event), vocalis=extras))
                if include_usage:
                    final = chunk({}) | {"choices": [], "usage": _usage(event).model_dump()}
                    yield _data(final)
        yield "data: [DONE]\n\n"
    except VocalisError as exc:
        log.warning("completion_failed", code=exc.code, detail=exc.detail)
        yield _data({"error": openai_error(exc.code, exc.detail, exc.status)})
    except Exception:
        log.exception("completion_failed")
        yield _data({"error": openai_error(INTERNAL_ERROR, "Internal server error", 500)})
    finally:
        await service.finish_completion(
            backends, runtime, org_id, started.conversation_id, started.ephemeral
        )
