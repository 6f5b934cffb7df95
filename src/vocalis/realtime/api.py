"""Route: `WS /v1/realtime`, the OpenAI Realtime protocol (text part) over our agents.

Connect with `?model=<agent id>` (or `agent_id=`) to start a conversation, or with
`conversation_id=` to resume an active one, and `Authorization: Bearer <api key>` (scope
`conversations:write`). Refused connections get an HTTP problem+json answer to the
handshake (401, 403, 404, 409) where the server supports it, else close code 1008.
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Query, WebSocket
from fastapi.responses import JSONResponse

from vocalis.agents.runtime import AgentRuntime, get_runtime, runtime_lifespan
from vocalis.conversations import service as conversations
from vocalis.conversations.errors import ConversationEnded
from vocalis.core import errors
from vocalis.core.backends import Backends
from vocalis.core.problems import PROBLEM_MEDIA_TYPE, problem_body
from vocalis.core.scopes import Role
from vocalis.core.security import Principal
from vocalis.orgs import service as orgs
from vocalis.ports.document_store import Document
from vocalis.realtime.protocol import Session, SessionAudio, SessionAudioOutput
from vocalis.realtime.session import EventSender, RealtimeSession

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["realtime"], lifespan=runtime_lifespan)
SCOPE = "conversations:write"


async def authenticate_websocket(websocket: WebSocket, backends: Backends) -> Principal:
    """The caller of a WebSocket handshake, from its bearer API key (with the scope)."""
    header = websocket.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.AuthError("Send `Authorization: Bearer <api key>`.", code=errors.AUTH_MISSING)
    async with backends.database.session() as session:
        key = await orgs.find_active_key(session=session, plaintext=token.strip())
    if key is None:
        raise errors.AuthError("The API key is invalid, revoked or expired.")
    principal = Principal(
        org_id=key.org_id,
        key_id=key.id,
        role=Role(key.role),
        scopes=frozenset(key.scopes),
        user_id=key.created_by,
    )
    if not principal.has(SCOPE):
        raise errors.PermissionDenied(f"This key lacks the scope: {SCOPE}.")
    return principal


async def _deny(websocket: WebSocket, exc: errors.VocalisError) -> None:
    """Refuse the handshake with a problem+json answer (or close 1008)."""
    log.info("realtime_refused", code=exc.code)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        body = problem_body(
            exc.code,
            detail=exc.detail,
            request_id=websocket.scope.get("state", {}).get("request_id"),
            instance=websocket.url.path,
        )
        await websocket.send_denial_response(
            JSONResponse(body, status_code=exc.status, media_type=PROBLEM_MEDIA_TYPE)
        )
    else:
        await websocket.close(code=1008, reason=exc.detail[:120])


async def _open_conversation(
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    agent_id: str | None,
    conversation_id: str | None,
) -> tuple[Document, bool, Document | None]:
    """The conversation to talk in, whether it was resumed, and the greeting to show."""
    if conversation_id:
        doc = await conversations.get_conversation(
            backends, org_id=org_id, conversation_id=conversation_id
        )
        if doc["status"] != "active":
            raise ConversationEnded(f"Conversation {conversation_id!r} has ended.")
        return doc, True, None
    if not agent_id:
        raise errors.RequestError("Name the agent with `?model=<agent id>`.")
    doc = await conversations.start_conversation(
        backends=backends,
        runtime=runtime,
        org_id=org_id,
        agent_id=agent_id,
        channel="voice",
        metadata={"source": "realtime"},
    )
    greeting = None
    if doc["message_count"]:
        messages = await conversations.transcript(
            backends, org_id=org_id, conversation_id=doc["_id"]
        )
        greeting = messages[0] if messages else None
    return doc, False, greeting


@router.websocket("/realtime")
async def realtime(
    websocket: WebSocket,
    model: Annotated[str | None, Query(max_length=64)] = None,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    conversation_id: Annotated[str | None, Query(max_length=64)] = None,
) -> None:
    """A realtime session with an agent."""
    backends: Backends = websocket.app.state.backends
    runtime = get_runtime(websocket.app)
    try:
        principal = await authenticate_websocket(websocket, backends)
        structlog.contextvars.bind_contextvars(org_id=principal.org_id)
        conversation, resumed, greeting = await _open_conversation(
            backends, runtime, principal.org_id, agent_id or model, conversation_id
        )
    except errors.VocalisError as exc:
        await _deny(websocket, exc)
        return
    structlog.contextvars.bind_contextvars(conversation_id=conversation["_id"])
    config = await conversations.agent_config(
        backends.database,
        org_id=principal.org_id,
        agent_id=conversation["agent_id"],
        version=int(conversation["agent_version"]),
    )
    await websocket.accept()
    session = RealtimeSession(
        websocket=websocket,
        backends=backends,
        runtime=runtime,
        org_id=principal.org_id,
        conversation=conversation,
        session=Session(
            id=f"sess_{conversation['_id'].split('_', 1)[1]}",
            model=conversation["agent_id"],
            audio=SessionAudio(output=SessionAudioOutput(voice=config.voice.voice)),
        ),
        sender=EventSender(websocket),
    )
    log.info("realtime_session_started", resumed=resumed)
    await session.start(resumed=resumed, greeting=greeting)
    await session.run()
    log.info("realtime_session_ended")
