"""Route: `POST /v1/completions`, OpenAI's legacy text-completions API over our agents.

Some clients default to it (LlamaIndex's `OpenAILike` treats a model as a completion model
unless told otherwise). `model` names an agent, `prompt` is the user's message and the
agent answers it as one chat-completions turn (a one-off conversation, or the user's
conversation with `user`): the same guards, tools, retrieval, usage, `max_tokens` and
`stop`. The answer comes in the `text_completion` shape, streamed as `text_completion`
chunks ending with `data: [DONE]` with `stream=true`. `echo`, `suffix`, `best_of` above 1
and `logprobs` have no meaning for an agent and are refused, never ignored.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from vocalis.agents.events import TextDelta
from vocalis.agents.runtime import RuntimeDep
from vocalis.conversations.service import TurnResult
from vocalis.core.deps import BackendsDep
from vocalis.core.errors import INTERNAL_ERROR, VocalisError
from vocalis.core.ids import new_id
from vocalis.core.problems import openai_error
from vocalis.core.ratelimit import rate_limit_class
from vocalis.core.security import Principal, Scoped
from vocalis.openai_compat import service
from vocalis.openai_compat.api import completion_responses, finish_reason, turn_usage
from vocalis.openai_compat.schemas import (
    ChatCompletionRequest,
    ChatMessageIn,
    CompletionUsage,
    FinishReason,
    StreamOptions,
)

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

Prompt = Annotated[str, Field(max_length=100_000)]


class CompletionRequest(BaseModel):
    """`POST /v1/completions`: `model` is an agent id, `prompt` the user's message."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=64, description="The agent's id.")
    prompt: Prompt | Annotated[list[Prompt], Field(min_length=1, max_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stop: str | list[str] | None = None
    user: str | None = Field(default=None, min_length=1, max_length=256)
    n: int | None = Field(default=None, ge=1, le=1)
    best_of: int | None = Field(default=None, ge=1, le=1)
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = None

    def text(self) -> str:
        """The prompt's text."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class CompletionChoice(BaseModel):
    """The one choice of a text completion."""

    text: str
    index: int = 0
    logprobs: None = None
    finish_reason: FinishReason = "stop"


class TextCompletion(BaseModel):
    """OpenAI's `text_completion`, with the namespaced `vocalis` extras."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage
    system_fingerprint: str | None = None
    vocalis: dict[str, Any] = Field(default_factory=dict)


def _refuse_meaningless(body: CompletionRequest) -> None:
    for param, present in (
        ("echo", body.echo),
        ("suffix", bool(body.suffix)),
        ("logprobs", body.logprobs is not None),
    ):
        if present:
            raise service.unsupported(
                param, f"`{param}` has no meaning for an agent's answer and is not supported."
            )


def as_chat(body: CompletionRequest) -> ChatCompletionRequest:
    """The completion request as the chat-completions request it is answered as."""
    return ChatCompletionRequest(
        model=body.model,
        messages=[ChatMessageIn(role="user", content=body.text())],
        stream=body.stream,
        user=body.user,
        max_tokens=body.max_tokens,
        stop=body.stop,
        temperature=body.temperature,
    )


@router.post(
    "/completions",
    openapi_extra=rate_limit_class("chat_turns"),
    response_model=TextCompletion,
    responses=completion_responses("text_completion", "unsupported_parameter"),
    summary="Complete a prompt with an agent (OpenAI's legacy completions API)",
)
async def create_completion(
    body: CompletionRequest,
    principal: Annotated[Principal, Scoped("conversations:write")],
    backends: BackendsDep,
    runtime: RuntimeDep,
) -> Any:
    _refuse_meaningless(body)
    if not body.text().strip():
        raise service.unsupported("prompt", "The prompt has no text.")
    chat = as_chat(body)
    try:
        started = await service.begin_completion(
            backends=backends, runtime=runtime, org_id=principal.org_id, request=chat
        )
    except VocalisError as exc:
        if "error" not in exc.extra:
            exc.extra = {**exc.extra, "error": openai_error(exc.code, exc.detail, exc.status)}
        raise
    structlog.contextvars.bind_contextvars(conversation_id=started.conversation_id)
    completion_id = f"cmpl-{new_id('cmp').split('_', 1)[1]}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _chunks(started, completion_id, created, body.model, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result: TurnResult | None = None
    try:
        async for event in started.turn.events():
            if isinstance(event, TurnResult):
                result = event
    except VocalisError as exc:
        if "error" not in exc.extra:
            exc.extra = {**exc.extra, "error": openai_error(exc.code, exc.detail, exc.status)}
        raise
    finally:
        await service.finish_completion(started)
    assert result is not None
    return TextCompletion(
        id=completion_id,
        created=created,
        model=body.model,
        choices=[CompletionChoice(text=result.final.content, finish_reason=finish_reason(result))],
        usage=turn_usage(result),
        vocalis={"conversation_id": started.conversation_id, "message_id": result.message["_id"]},
    )


def _data(payload: Any) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'), default=str)}\n\n"


async def _chunks(
    started: service.CompletionTurn,
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    """The turn as `text_completion` chunks."""

    def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            body["usage"] = None
        return body

    try:
        async for event in started.turn.events():
            if isinstance(event, TextDelta):
                yield _data(chunk(event.text))
            elif isinstance(event, TurnResult):
                yield _data(chunk("", finish_reason(event)))
                if include_usage:
                    usage = turn_usage(event).model_dump()
                    yield _data(chunk("") | {"choices": [], "usage": usage})
        yield "data: [DONE]\n\n"
    except VocalisError as exc:
        log.warning("completion_failed", code=exc.code, detail=exc.detail)
        yield _data({"error": openai_error(exc.code, exc.detail, exc.status)})
    except Exception:
        log.exception("completion_failed")
        yield _data({"error": openai_error(INTERNAL_ERROR, "Internal server error", 500)})
    finally:
        await service.finish_completion(started)
