"""Routes: /v1/phone-numbers, /v1/calls, and the carriers' webhooks and media streams.

Carrier-facing routes (`/v1/telephony/{twilio,telnyx}/…`) take no API key: the voice
webhooks are authenticated by the carrier's signature, the media streams by the signed
single-use token the webhook handed the carrier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Request, Response, WebSocket
from starlette.websockets import WebSocketDisconnect

from vocalis.agents.runtime import get_runtime
from vocalis.conversations import service as conversations
from vocalis.core import jsonguard
from vocalis.core.deps import BackendsDep, SessionDep
from vocalis.core.errors import NotFound, VocalisError
from vocalis.core.ids import new_id
from vocalis.core.metrics import TELEPHONY_WEBHOOKS
from vocalis.core.object_keys import validate_key
from vocalis.core.openapi import error_responses
from vocalis.core.pagination import ListResource, Page, created_before, paginate
from vocalis.core.security import Principal, Scoped
from vocalis.ports.object_store import ObjectNotFound
from vocalis.telephony import calls, service, telnyx, twilio
from vocalis.telephony.call import PhoneCall
from vocalis.telephony.carrier import StreamConnected, StreamSerializer, StreamStart
from vocalis.telephony.carriers import SERIALIZERS, call_control, media_url
from vocalis.telephony.errors import SignatureInvalid, StreamTokenInvalid
from vocalis.telephony.models import PhoneNumber
from vocalis.telephony.recording import recording_key
from vocalis.telephony.schemas import (
    CallCreate,
    CallOut,
    PhoneNumberCreate,
    PhoneNumberOut,
    PhoneNumberUpdate,
)
from vocalis.telephony.slots import active_calls
from vocalis.telephony.tokens import StreamGrant, issue, redeem

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["telephony"])
Reader = Annotated[Principal, Scoped("telephony:read")]
Writer = Annotated[Principal, Scoped("telephony:write")]
_404: dict[int | str, dict[str, Any]] = {
    404: {"description": "Not found (or another organisation's)."}
}
START_TIMEOUT_S = 10.0
XML = "application/xml"


def _before(page: Page) -> tuple[datetime, str] | None:
    return created_before(page.position)


def _position(item: PhoneNumberOut) -> dict[str, str]:
    return {"c": item.created_at.isoformat(), "id": item.id}


# --- phone numbers -----------------------------------------------------------------------------
@router.post(
    "/phone-numbers",
    response_model=PhoneNumberOut,
    status_code=201,
    responses={
        **_404,
        **error_responses("telephony_number_taken", status_409="The number is already registered."),
    },
    summary="Register a phone number and point it at an agent",
)
async def create_phone_number(
    body: PhoneNumberCreate, principal: Writer, session: SessionDep, backends: BackendsDep
) -> PhoneNumberOut:
    row = await service.create_number(
        session=session,
        backends=backends,
        principal=principal,
        number=body.number,
        provider=body.provider,
        agent_id=body.agent_id,
        credentials=body.credentials,
    )
    return PhoneNumberOut.model_validate(row)


@router.get(
    "/phone-numbers", response_model=ListResource[PhoneNumberOut], summary="List phone numbers"
)
async def list_phone_numbers(
    page: Page, principal: Reader, session: SessionDep
) -> ListResource[PhoneNumberOut]:
    rows = await service.list_numbers(
        session=session, org_id=principal.org_id, limit=page.limit + 1, before=_before(page)
    )
    return paginate([PhoneNumberOut.model_validate(r) for r in rows], page.limit, _position)


@router.get(
    "/phone-numbers/{phone_number_id}",
    response_model=PhoneNumberOut,
    responses=_404,
    summary="A phone number",
)
async def get_phone_number(
    phone_number_id: str, principal: Reader, session: SessionDep
) -> PhoneNumberOut:
    row = await service.get_number(
        session=session, org_id=principal.org_id, number_id=phone_number_id
    )
    return PhoneNumberOut.model_validate(row)


@router.patch(
    "/phone-numbers/{phone_number_id}",
    response_model=PhoneNumberOut,
    responses=_404,
    summary="Re-point a phone number at another agent, or replace its credentials",
)
async def update_phone_number(
    phone_number_id: str,
    body: PhoneNumberUpdate,
    principal: Writer,
    session: SessionDep,
    backends: BackendsDep,
) -> PhoneNumberOut:
    row = await service.update_number(
        session=session,
        backends=backends,
        principal=principal,
        number_id=phone_number_id,
        agent_id=body.agent_id,
        credentials=body.credentials,
    )
    return PhoneNumberOut.model_validate(row)


@router.delete(
    "/phone-numbers/{phone_number_id}",
    status_code=204,
    response_class=Response,
    responses=_404,
    summary="Remove a phone number",
)
async def delete_phone_number(
    phone_number_id: str, principal: Writer, session: SessionDep
) -> Response:
    await service.delete_number(session=session, principal=principal, number_id=phone_number_id)
    return Response(status_code=204)


# --- outbound calls ----------------------------------------------------------------------------
@router.post(
    "/calls",
    response_model=CallOut,
    status_code=202,
    responses={
        **_404,
        **error_responses(
            "telephony_call_limit", status_429="The organisation's calls are at the cap."
        ),
        502: {"description": "`telephony_provider_failed`: the carrier refused to dial."},
    },
    summary="Place an outbound call from one of the organisation's numbers",
)
async def place_call(
    body: CallCreate, principal: Writer, request: Request, backends: BackendsDep
) -> CallOut:
    return await calls.place_call(
        backends=backends,
        runtime=get_runtime(request.app),
        org_id=principal.org_id,
        phone_number_id=body.phone_number_id,
        to=body.to,
        metadata=body.metadata,
        fallback_base=str(request.base_url),
    )


@router.get(
    "/conversations/{conversation_id}/call-recording",
    response_class=Response,
    responses={
        200: {"description": "Stereo WAV: caller left, agent right.", "content": {"audio/wav": {}}},
        **_404,
    },
    summary="Download a phone call's stereo recording",
)
async def get_call_recording(
    conversation_id: str,
    principal: Annotated[Principal, Scoped("conversations:read")],
    backends: BackendsDep,
) -> Response:
    await conversations.get_conversation(
        backends, org_id=principal.org_id, conversation_id=conversation_id
    )
    try:
        data = await backends.objects.get(
            validate_key(recording_key(principal.org_id, conversation_id))
        )
    except ObjectNotFound:
        raise NotFound("This conversation has no call recording.") from None
    return Response(content=data, media_type="audio/wav")


# --- carrier webhooks --------------------------------------------------------------------------
def _public_url(request: Request, backends: BackendsDep) -> str:
    """The URL the carrier called, as configured at the carrier (public base + path)."""
    base = backends.settings.public_base_url
    if not base:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return base.rstrip("/") + request.url.path + query


async def _inbound_grant(
    backends: BackendsDep, number: PhoneNumber, caller: str
) -> StreamGrant | None:
    """The stream grant of a call to `number`, or None when the organisation is at its cap."""
    settings = backends.settings
    if await active_calls(backends, org_id=number.org_id) >= (
        settings.telephony_max_concurrent_calls_per_org
    ):
        return None
    return StreamGrant(
        provider=number.provider,
        org_id=number.org_id,
        phone_number_id=number.id,
        agent_id=number.agent_id,
        direction="inbound",
        caller=caller,
        our_number=number.number,
        slot_id=new_id("slot"),
    )


@router.post(
    "/telephony/twilio/voice",
    response_class=Response,
    responses={
        200: {"description": "TwiML: connect the call to our media stream.", "content": {XML: {}}},
        **error_responses("telephony_signature_invalid", status_403="Missing or wrong signature."),
    },
    summary="Twilio's voice webhook (signed with the number's auth token)",
)
async def twilio_voice(request: Request, backends: BackendsDep) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    number = await service.find_by_number(
        backends, number=form.get("To", ""), provider=twilio.PROVIDER
    )
    signature = request.headers.get("X-Twilio-Signature")
    url = _public_url(request, backends)
    if number is None or not twilio.signature_valid(
        str((await service.credentials(backends, number))["auth_token"]), url, form, signature
    ):
        TELEPHONY_WEBHOOKS.labels(twilio.PROVIDER, "bad_signature").inc()
        log.warning("twilio_webhook_refused", known_number=number is not None)
        raise SignatureInvalid("The X-Twilio-Signature does not sign this request.")
    grant = await _inbound_grant(backends, number, form.get("From", ""))
    if grant is None:
        TELEPHONY_WEBHOOKS.labels(twilio.PROVIDER, "busy").inc()
        return Response(twilio.reject_twiml(), media_type=XML)
    token = await issue(backends, grant)
    TELEPHONY_WEBHOOKS.labels(twilio.PROVIDER, "answered").inc()
    stream_url = media_url(backends, twilio.PROVIDER, str(request.base_url))
    return Response(twilio.stream_twiml(stream_url, token), media_type=XML)


@router.post(
    "/telephony/telnyx/voice",
    responses=error_responses(
        "telephony_signature_invalid", status_403="Missing or wrong signature."
    ),
    summary="Telnyx's Call Control webhook (Ed25519-signed)",
)
async def telnyx_voice(request: Request, backends: BackendsDep) -> dict[str, str]:
    body = await request.body()
    settings = backends.settings
    if not telnyx.signature_valid(
        settings.telephony_telnyx_public_key,
        body,
        request.headers.get(telnyx.SIGNATURE_HEADER),
        request.headers.get(telnyx.TIMESTAMP_HEADER),
        tolerance_s=settings.telephony_webhook_tolerance_s,
    ):
        TELEPHONY_WEBHOOKS.labels(telnyx.PROVIDER, "bad_signature").inc()
        log.warning("telnyx_webhook_refused")
        raise SignatureInvalid("The telnyx-signature-ed25519 does not sign this request.")
    data = (json.loads(body) or {}).get("data") or {}
    payload = data.get("payload") or {}
    if data.get("event_type") != "call.initiated" or payload.get("direction") != "incoming":
        TELEPHONY_WEBHOOKS.labels(telnyx.PROVIDER, "ignored").inc()
        return {"status": "ignored"}
    number = await service.find_by_number(
        backends, number=str(payload.get("to", "")), provider=telnyx.PROVIDER
    )
    if number is None:
        TELEPHONY_WEBHOOKS.labels(telnyx.PROVIDER, "unknown_number").inc()
        return {"status": "ignored"}
    control = await call_control(
        backends, telnyx.PROVIDER, await service.credentials(backends, number)
    )
    assert isinstance(control, telnyx.TelnyxCalls)
    call_id = str(payload.get("call_control_id", ""))
    grant = await _inbound_grant(backends, number, str(payload.get("from", "")))
    if grant is None:
        TELEPHONY_WEBHOOKS.labels(telnyx.PROVIDER, "busy").inc()
        await control.hang_up(call_id=call_id)
        return {"status": "busy"}
    stream_url = media_url(backends, telnyx.PROVIDER, str(request.base_url))
    await control.answer(call_id=call_id, stream_url=stream_url, token=await issue(backends, grant))
    TELEPHONY_WEBHOOKS.labels(telnyx.PROVIDER, "answered").inc()
    return {"status": "answered"}


# --- media streams -----------------------------------------------------------------------------
@router.websocket("/telephony/twilio/media")
async def twilio_media(websocket: WebSocket) -> None:
    """Twilio Media Streams: one call's audio both ways."""
    await _media_stream(websocket, SERIALIZERS[twilio.PROVIDER])


@router.websocket("/telephony/telnyx/media")
async def telnyx_media(websocket: WebSocket) -> None:
    """Telnyx media streaming: one call's audio both ways."""
    await _media_stream(websocket, SERIALIZERS[telnyx.PROVIDER])


async def _await_start(websocket: WebSocket, serializer: StreamSerializer) -> StreamStart | None:
    """The stream's `start` (after `connected`), or None if it does not come."""
    while True:
        text = await websocket.receive_text()
        try:
            message = jsonguard.loads(text)
        except ValueError:
            continue
        parsed = serializer.parse(message) if isinstance(message, dict) else None
        if isinstance(parsed, StreamStart):
            return parsed
        if parsed is not None and not isinstance(parsed, StreamConnected):
            return None


async def _media_stream(websocket: WebSocket, serializer: StreamSerializer) -> None:
    backends = websocket.app.state.backends
    runtime = get_runtime(websocket.app)
    await websocket.accept()
    try:
        start = await asyncio.wait_for(_await_start(websocket, serializer), START_TIMEOUT_S)
        if start is None or not start.token:
            raise StreamTokenInvalid("The stream's start carried no call token.")
        grant = await redeem(backends, start.token, provider=serializer.provider)
        number = await service.find_by_id(backends, number_id=grant.phone_number_id)
        if number is None:
            raise StreamTokenInvalid("The call's phone number is gone.")
        if grant.conversation_id is None:
            conversation = await calls.start_inbound(backends, runtime, grant, start.call_id)
        else:
            conversation = await conversations.get_conversation(
                backends, org_id=grant.org_id, conversation_id=grant.conversation_id
            )
        conversation_id = str(conversation["_id"])
        config = await conversations.agent_config(
            backends.database,
            org_id=grant.org_id,
            agent_id=grant.agent_id,
            version=int(conversation["agent_version"]),
        )
        control = await call_control(
            backends, serializer.provider, await service.credentials(backends, number)
        )
    except (TimeoutError, WebSocketDisconnect, VocalisError) as exc:
        code = exc.code if isinstance(exc, VocalisError) else type(exc).__name__
        log.info("phone_stream_refused", provider=serializer.provider, code=code)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=1008)
        return
    structlog.contextvars.bind_contextvars(org_id=grant.org_id, conversation_id=conversation_id)
    call = PhoneCall(
        websocket=websocket,
        backends=backends,
        runtime=runtime,
        serializer=serializer,
        control=control,
        grant=grant,
        start=start,
        conversation_id=conversation_id,
        config=config,
    )
    await call.run()
