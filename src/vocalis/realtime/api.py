"""Routes: `WS /v1/realtime` (the OpenAI Realtime protocol over our agents, text and voice)
and `POST /v1/realtime/client_secrets` (short-lived secrets for browsers).

Connect with `?model=<agent id>` (or `agent_id=`) to start a conversation, or with
`conversation_id=` to resume an active one. Authenticate with `Authorization: Bearer
<api key>` (scope `conversations:write`) or with a client secret, as the Bearer value or as
`?token=` where a browser cannot set headers. Refused connections get an HTTP
problem+json answer to the handshake (401, 403, 404, 409, 429) where the server supports
it, else close code 1008 (1013 for a limit). The handshake takes a token from the key's
rate-limit bucket, failed credentials count against the client address (`auth_throttle`),
and a key (with the client secrets it minted) and its organisation may hold only so many
open sessions (`realtime.limits`); a client secret dies with its key.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, NoReturn

import structlog
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from vocalis.agents import service as agents
from vocalis.agents.runtime import AgentRuntime, get_runtime
from vocalis.conversations import service as conversations
from vocalis.conversations.errors import ConversationEnded
from vocalis.core import errors
from vocalis.core.auth_throttle import AuthThrottle
from vocalis.core.backends import Backends
from vocalis.core.deps import BackendsDep
from vocalis.core.ids import new_id
from vocalis.core.metrics import AUTH_FAILURES, RATE_LIMITED, REALTIME_SESSIONS_REFUSED
from vocalis.core.openapi import error_responses
from vocalis.core.problems import PROBLEM_MEDIA_TYPE, problem_body
from vocalis.core.ratelimit import RateLimiter
from vocalis.core.scopes import Role
from vocalis.core.security import Principal, Scoped, client_address
from vocalis.core.tracing import tag_request_span
from vocalis.orgs import service as orgs
from vocalis.ports.document_store import Document
from vocalis.realtime import client_secrets, lifecycle
from vocalis.realtime.client_secrets import (
    ClientSecretCreateRequest,
    ClientSecretCreateResponse,
    ClientSecretGrant,
)
from vocalis.realtime.limits import SessionSlots
from vocalis.realtime.protocol import (
    ServerVad,
    Session,
    SessionAudio,
    SessionAudioInput,
    SessionAudioOutput,
)
from vocalis.realtime.session import (
    EventSender,
    RealtimeSession,
    merge_session,
    transcription_only,
)
from vocalis.realtime.voice_serializer import attach_voice
from vocalis.settings import Settings

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["realtime"])
SCOPE = "conversations:write"


async def authenticate_websocket(
    websocket: WebSocket, backends: Backends
) -> tuple[Principal, ClientSecretGrant | None]:
    """The caller of a WebSocket handshake (API key or client secret), with the scope."""
    header = websocket.headers.get("authorization", "")
    scheme, _, bearer = header.partition(" ")
    token = bearer.strip() if scheme.lower() == "bearer" else ""
    query_token = websocket.query_params.get("token", "").strip()
    if not token and query_token:
        if not client_secrets.is_client_secret(query_token):
            # API keys do not belong in URLs (they end up in logs): only client secrets.
            raise errors.AuthError("`?token=` takes a client secret, not an API key.")
        token = query_token
    if not token:
        raise errors.AuthError(
            "Send `Authorization: Bearer <api key or client secret>`.", code=errors.AUTH_MISSING
        )
    throttle: AuthThrottle | None = getattr(websocket.app.state, "auth_throttle", None)
    address = client_address(websocket)
    if throttle is not None:
        await throttle.check(address)

    async def refuse(detail: str) -> NoReturn:
        AUTH_FAILURES.labels(reason="invalid").inc()
        if throttle is not None:
            await throttle.failed(address)
        raise errors.AuthError(detail)

    grant: ClientSecretGrant | None = None
    if client_secrets.is_client_secret(token):
        grant = await client_secrets.redeem(backends.redis, token)
        if grant is None:
            await refuse("The client secret is invalid or has expired.")
        # A client secret dies with the key that minted it (revoked or expired).
        async with backends.database.session() as session:
            live = await orgs.key_is_live(session=session, key_id=grant.key_id)
        if not live:
            await client_secrets.forget(backends.redis, token)
            await refuse("The client secret's API key was revoked or has expired.")
        principal = grant.principal()
    else:
        async with backends.database.session() as session:
            key = await orgs.find_active_key(session=session, plaintext=token)
        if key is None:
            await refuse("The API key is invalid, revoked or expired.")
        principal = Principal(
            org_id=key.org_id,
            key_id=key.id,
            role=Role(key.role),
            scopes=frozenset(key.scopes),
            user_id=key.created_by,
        )
    if not principal.has(SCOPE):
        raise errors.PermissionDenied(f"This key lacks the scope: {SCOPE}.")
    return principal, grant


async def deny(
    websocket: WebSocket, exc: errors.VocalisError, event: str = "realtime_refused"
) -> None:
    """Refuse the handshake with a problem+json answer, or where the server cannot send
    one, close 1013 (try again later) for a limit and 1008 (policy) for anything else.
    A refusal is the client's doing: logged at INFO (WARNING for a limit), never ERROR."""
    limited = exc.status == 429
    (log.warning if limited else log.info)(event, code=exc.code, status=exc.status)
    try:
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            body = problem_body(
                exc.code,
                detail=exc.detail,
                request_id=websocket.scope.get("state", {}).get("request_id"),
                instance=websocket.url.path,
                extra=exc.extra,
            )
            await websocket.send_denial_response(
                JSONResponse(
                    body,
                    status_code=exc.status,
                    media_type=PROBLEM_MEDIA_TYPE,
                    headers=exc.headers or None,
                )
            )
        else:
            await websocket.close(code=1013 if limited else 1008, reason=exc.detail[:120])
    except (RuntimeError, OSError) as error:  # the client is gone already
        log.info("realtime_refusal_not_sent", error=type(error).__name__)


async def admit(websocket: WebSocket, principal: Principal) -> AbstractAsyncContextManager[None]:
    """Let a session in: the handshake takes a token from the key's rate limit, then a place
    among the key's and the organisation's open sessions (`SessionLimitReached` when there
    is none). The returned context holds the place while the session runs."""
    await _count_handshake(websocket, principal)
    slots: SessionSlots | None = getattr(websocket.app.state, "realtime_slots", None)
    if slots is None:
        return contextlib.nullcontext()
    lease = new_id("conn")
    await slots.acquire(org_id=principal.org_id, key_id=principal.key_id, member=lease)
    return slots.held(org_id=principal.org_id, key_id=principal.key_id, member=lease)


async def _count_handshake(websocket: WebSocket, principal: Principal) -> None:
    """The handshake is a request like any other: it takes a token from the key's bucket."""
    limiter: RateLimiter | None = getattr(websocket.app.state, "rate_limiter", None)
    if limiter is None or not limiter.applies_to(principal.org_id):
        return
    rate_class = "realtime_handshakes" if limiter.classes else None
    decision = await limiter.hit(principal.key_id, rate_class=rate_class)
    if not decision.allowed:
        RATE_LIMITED.inc()
        REALTIME_SESSIONS_REFUSED.labels(reason="rate_limited").inc()
        raise errors.RateLimited(
            f"Rate limit exceeded; retry in {decision.retry_after_s} s.",
            headers=decision.headers(),
        )


async def _open_conversation(
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    agent_id: str | None,
    conversation_id: str | None,
    pinned_agent: str | None = None,
) -> tuple[Document, bool, Document | None]:
    """The conversation to talk in, whether it was resumed, and the greeting to show."""
    if pinned_agent is not None and agent_id not in (None, pinned_agent):
        raise errors.PermissionDenied(f"This client secret is for agent {pinned_agent!r}.")
    if conversation_id:
        doc = await conversations.get_conversation(
            backends, org_id=org_id, conversation_id=conversation_id
        )
        if pinned_agent is not None and doc["agent_id"] != pinned_agent:
            raise errors.PermissionDenied(f"This client secret is for agent {pinned_agent!r}.")
        if doc["status"] != "active":
            raise ConversationEnded(f"Conversation {conversation_id!r} has ended.")
        return doc, True, None
    agent_id = agent_id or pinned_agent
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


def initial_session(
    settings: Settings,
    *,
    session_id: str,
    agent_id: str,
    voice: str | None,
    patch: dict[str, Any] | None = None,
) -> Session:
    """A new session's configuration: the deployment's voice defaults, then `patch`."""
    turn_detection = ServerVad(
        threshold=settings.voice_vad_threshold,
        silence_duration_ms=settings.voice_end_of_turn_silence_ms,
    )
    session = Session(
        id=session_id,
        model=agent_id,
        audio=SessionAudio(
            input=SessionAudioInput(turn_detection=turn_detection),
            output=SessionAudioOutput(voice=voice),
        ),
    )
    if not patch:
        return session
    patched = Session.model_validate(merge_session(session.model_dump(), patch))
    return transcription_only(patched) if patched.transcribes_only else patched


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
        principal, grant = await authenticate_websocket(websocket, backends)
        structlog.contextvars.bind_contextvars(org_id=principal.org_id)
        tag_request_span(org_id=principal.org_id)
        place = await admit(websocket, principal)  # before any conversation: none if refused
    except errors.VocalisError as exc:
        await deny(websocket, exc)
        return
    async with place:
        await _session(
            websocket, backends, runtime, principal, grant, model, agent_id, conversation_id
        )


async def _session(
    websocket: WebSocket,
    backends: Backends,
    runtime: AgentRuntime,
    principal: Principal,
    grant: ClientSecretGrant | None,
    model: str | None,
    agent_id: str | None,
    conversation_id: str | None,
) -> None:
    """Open (or resume) the conversation and run the session until the client leaves."""
    try:
        conversation, resumed, greeting = await _open_conversation(
            backends,
            runtime,
            principal.org_id,
            agent_id or model,
            conversation_id,
            pinned_agent=grant.agent_id if grant is not None else None,
        )
    except errors.VocalisError as exc:
        await deny(websocket, exc)
        return
    structlog.contextvars.bind_contextvars(conversation_id=conversation["_id"])
    try:
        session = await _start_session(
            websocket, backends, runtime, principal, grant, conversation, resumed, greeting
        )
    except BaseException as exc:
        # A conversation this handshake started must not stay `active` without a session.
        if not resumed:
            await _abandon(backends, runtime, principal.org_id, conversation["_id"])
        if isinstance(exc, WebSocketDisconnect | OSError):
            log.info("realtime_client_left_at_start", error=type(exc).__name__)
            return
        raise
    await session.run()
    log.info("realtime_session_ended")


async def _abandon(
    backends: Backends, runtime: AgentRuntime, org_id: str, conversation_id: str
) -> None:
    """End a conversation whose session never started (reason `error`)."""
    try:
        await asyncio.shield(
            lifecycle.end(
                backends, runtime, org_id=org_id, conversation_id=conversation_id, reason="error"
            )
        )
    except Exception:
        log.exception("realtime_conversation_not_ended", reason="error")


async def _start_session(
    websocket: WebSocket,
    backends: Backends,
    runtime: AgentRuntime,
    principal: Principal,
    grant: ClientSecretGrant | None,
    conversation: Document,
    resumed: bool,
    greeting: Document | None,
) -> RealtimeSession:
    """Accept the socket and start the session (`session.created`, the greeting)."""
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
        session=initial_session(
            backends.settings,
            session_id=f"sess_{conversation['_id'].split('_', 1)[1]}",
            agent_id=conversation["agent_id"],
            voice=config.voice.voice,
            patch=grant.session if grant is not None else None,
        ),
        sender=EventSender(websocket),
        config=config,
        key_id=principal.key_id,
        limiter=getattr(websocket.app.state, "rate_limiter", None),
    )
    voice = attach_voice(
        session,
        config=config,
        binary_declared=grant is not None and grant.declares_input_format,
    )
    session.spoken_truncate = voice.truncate
    log.info("realtime_session_started", resumed=resumed)
    await session.start(resumed=resumed, greeting=greeting)
    return session


@router.post(
    "/realtime/client_secrets",
    response_model=ClientSecretCreateResponse,
    responses=error_responses(
        "not_found", status_404="No agent with the id given as `session.model`."
    ),
    summary="Mint a short-lived client secret for the realtime WebSocket",
)
async def create_client_secret(
    principal: Annotated[Principal, Scoped("conversations:write")],
    backends: BackendsDep,
    body: ClientSecretCreateRequest | None = None,
) -> ClientSecretCreateResponse:
    """A secret `ek_…` a browser uses instead of an API key (as Bearer value or `?token=`)."""
    body = body or ClientSecretCreateRequest()
    settings = backends.settings
    ttl = body.expires_after.seconds if body.expires_after else settings.voice_client_secret_ttl_s
    ttl = max(client_secrets.MIN_TTL_S, min(client_secrets.MAX_TTL_S, ttl))
    requested = body.session
    agent_id = requested.model if requested is not None else None
    patch: dict[str, Any] = {}
    if requested is not None:
        unsupported = requested.unsupported()
        if unsupported:
            raise errors.ValidationFailed("Not part of the GA session: " + ", ".join(unsupported))
        patch = requested.changes()
    voice: str | None = None
    if agent_id is not None:
        async with backends.database.session() as db:
            view = await agents.get_agent(session=db, org_id=principal.org_id, agent_id=agent_id)
        voice = view.config.voice.voice
    try:  # the secret's session is checked before the secret exists
        session = initial_session(
            settings, session_id=new_id("sess"), agent_id=agent_id or "", voice=voice, patch=patch
        )
    except ValidationError as exc:
        raise errors.validation_failed(exc, loc=("body", "session")) from None
    value, grant = await client_secrets.mint(
        backends.redis, principal, ttl_s=ttl, agent_id=agent_id, session=patch
    )
    log.info("realtime_client_secret_created", ttl_s=ttl, agent_id=agent_id)
    return ClientSecretCreateResponse(value=value, expires_at=grant.expires_at, session=session)
