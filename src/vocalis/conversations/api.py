"""Routes: start, list, read and end conversations; send messages (JSON or SSE)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from vocalis.agents.events import (
    AgentEvent,
    HandoffEvent,
    TextDelta,
    ToolCallEvent,
    ToolResultEvent,
)
from vocalis.agents.runtime import RuntimeDep
from vocalis.conversations import service
from vocalis.conversations.schemas import (
    SSE_EVENTS,
    Channel,
    Conversation,
    ConversationCreate,
    ConversationEnd,
    Message,
    MessageCreate,
    Status,
)
from vocalis.conversations.store import iso
from vocalis.core.deps import BackendsDep
from vocalis.core.errors import INTERNAL_ERROR, VocalisError
from vocalis.core.openapi import error_responses
from vocalis.core.pagination import ListResource, Page, paginate
from vocalis.core.problems import problem_body
from vocalis.core.ratelimit import rate_limit_class
from vocalis.core.security import Principal, Scoped
from vocalis.core.tracing import tag_request_span

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["conversations"])
_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such conversation (or another organisation's)."}
}
_SSE_DOC = "\n".join(f"- `{name}`: {text}" for name, text in SSE_EVENTS.items())


def _bind(conversation_id: str) -> None:
    structlog.contextvars.bind_contextvars(conversation_id=conversation_id)
    tag_request_span(conversation_id=conversation_id)


@router.post(
    "/agents/{agent_id}/conversations",
    response_model=Conversation,
    status_code=201,
    responses={404: {"description": "No such agent."}},
    summary="Start a conversation with an agent",
)
async def start_conversation(
    agent_id: str,
    principal: Annotated[Principal, Scoped("conversations:write")],
    backends: BackendsDep,
    runtime: RuntimeDep,
    body: ConversationCreate | None = None,
) -> Conversation:
    body = body or ConversationCreate()
    doc = await service.start_conversation(
        backends=backends,
        runtime=runtime,
        org_id=principal.org_id,
        agent_id=agent_id,
        channel=body.channel,
        metadata=body.metadata,
    )
    _bind(doc["_id"])
    messages = await service.transcript(
        backends, org_id=principal.org_id, conversation_id=doc["_id"]
    )
    return Conversation.of(doc, messages)


@router.get(
    "/conversations", response_model=ListResource[Conversation], summary="List conversations"
)
async def list_conversations(
    page: Page,
    principal: Annotated[Principal, Scoped("conversations:read")],
    backends: BackendsDep,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Status | None = None,
    channel: Channel | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> ListResource[Conversation]:
    before = str(page.position["id"]) if page.position and "id" in page.position else None
    docs = await service.list_conversations(
        backends,
        org_id=principal.org_id,
        limit=page.limit + 1,
        before_id=before,
        agent_id=agent_id,
        status=status,
        channel=channel,
        created_after=iso(created_after) if created_after else None,
        created_before=iso(created_before) if created_before else None,
    )
    return paginate([Conversation.of(d) for d in docs], page.limit, lambda c: {"id": c.id})


@router.get(
    "/conversations/{conversation_id}",
    response_model=Conversation,
    responses=_404,
    summary="Get a conversation with its transcript",
)
async def get_conversation(
    conversation_id: str,
    principal: Annotated[Principal, Scoped("conversations:read")],
    backends: BackendsDep,
) -> Conversation:
    _bind(conversation_id)
    doc = await service.get_conversation(
        backends, org_id=principal.org_id, conversation_id=conversation_id
    )
    messages = await service.transcript(
        backends, org_id=principal.org_id, conversation_id=conversation_id
    )
    return Conversation.of(doc, messages)


@router.post(
    "/conversations/{conversation_id}/messages",
    openapi_extra=rate_limit_class("chat_turns"),
    response_model=Message,
    responses={
        **_404,
        200: {
            "description": "The assistant's message; with `stream=true`, server-sent events:\n"
            + _SSE_DOC,
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(
            "conversation_ended",
            "conversation_busy",
            status_409="The conversation has ended, or is answering another message.",
        ),
    },
    summary="Send a message and get the agent's reply",
)
async def send_message(
    conversation_id: str,
    body: MessageCreate,
    principal: Annotated[Principal, Scoped("conversations:write")],
    backends: BackendsDep,
    runtime: RuntimeDep,
    request: Request,
) -> Any:
    _bind(conversation_id)
    turn = await service.begin_turn(
        backends=backends,
        runtime=runtime,
        org_id=principal.org_id,
        conversation_id=conversation_id,
        content=body.content,
    )
    if not body.stream:
        result: service.TurnResult | None = None
        async for event in turn.events():
            if isinstance(event, service.TurnResult):
                result = event
        assert result is not None
        return Message.of(result.message)
    request_id = getattr(request.state, "request_id", None)
    return StreamingResponse(
        _sse_stream(turn, request_id, request.url.path),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def sse_frame(event: str, data: Any) -> str:
    """One server-sent event: its name and one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


def _agent_frame(event: AgentEvent) -> str | None:
    if isinstance(event, TextDelta):
        return sse_frame("message.delta", {"delta": event.text})
    if isinstance(event, ToolCallEvent):
        return sse_frame(
            "tool_call", {"id": event.id, "name": event.name, "arguments": event.arguments}
        )
    if isinstance(event, ToolResultEvent):
        return sse_frame(
            "tool_result",
            {
                "id": event.id,
                "name": event.name,
                "content": event.content,
                "is_error": event.is_error,
            },
        )
    if isinstance(event, HandoffEvent):
        return sse_frame("handoff", {"reason": event.reason})
    return None  # guard flags stay server-side (they are on the stored message)


async def _sse_stream(turn: service.Turn, request_id: str | None, path: str) -> AsyncIterator[str]:
    """The turn as server-sent events; failures become an `error` event."""
    try:
        async for event in turn.events():
            if isinstance(event, service.TurnResult):
                for citation in event.final.citations:
                    yield sse_frame("citation", asdict(citation))
                yield sse_frame(
                    "message.completed", Message.of(event.message).model_dump(mode="json")
                )
            else:
                frame = _agent_frame(event)
                if frame is not None:
                    yield frame
    except VocalisError as exc:
        log.warning("turn_failed", code=exc.code, detail=exc.detail)
        yield sse_frame(
            "error",
            problem_body(
                exc.code, detail=exc.detail, request_id=request_id, instance=path, extra=exc.extra
            ),
        )
    except Exception:
        log.exception("turn_failed")
        yield sse_frame(
            "error", problem_body(INTERNAL_ERROR, detail=None, request_id=request_id, instance=path)
        )


@router.post(
    "/conversations/{conversation_id}/end",
    response_model=Conversation,
    responses=_404,
    summary="End a conversation (emits conversation.ended)",
)
async def end_conversation(
    conversation_id: str,
    principal: Annotated[Principal, Scoped("conversations:write")],
    backends: BackendsDep,
    runtime: RuntimeDep,
    body: ConversationEnd | None = None,
) -> Conversation:
    _bind(conversation_id)
    doc = await service.end_conversation(
        backends=backends,
        runtime=runtime,
        org_id=principal.org_id,
        conversation_id=conversation_id,
        reason=(body or ConversationEnd()).reason,
    )
    return Conversation.of(doc)
