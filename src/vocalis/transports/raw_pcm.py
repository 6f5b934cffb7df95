"""`WS /v1/voice/pcm?agent_id=<agent id>`: a voice conversation over raw PCM frames.

The smallest voice transport, and the proof that a transport only maps wire messages to the
voice conversation's frames and back. Authenticate as for `/v1/realtime` (`Authorization:
Bearer <api key>` with `conversations:write`, or a client secret).

Client → server
- binary frames: the caller's audio, PCM16 little-endian, 16 kHz, mono (turns are found by
  server voice-activity detection; speaking over the agent interrupts it);
- `{"type": "text", "text": "…"}`: a typed message, answered at once;
- `{"type": "cancel"}`: stop the reply in progress;
- `{"type": "truncate", "item_id", "played_ms"}`: only `played_ms` of reply `item_id` was
  played (the client stopped playback itself): only what was heard is kept;
- `{"type": "end"}`: hang up (the conversation ends with reason `user_ended`).

Server → client
- binary frames: the agent's speech, PCM16 16 kHz mono;
- `{"type": "ready", "conversation_id", "sample_rate"}` once the call is set up;
- `{"type": "speech_started", "item_id"}` when the caller starts speaking;
- `{"type": "transcript", "role": "user", "item_id", "text"}` for each caller turn, and
  `{"type": "transcript", "role": "assistant", "response_id", "text"}` for each sentence
  the agent is about to speak;
- `{"type": "response.started", "response_id", "item_id"}`, then `{"type": "response.done",
  "response_id", "item_id", "status", "text", "citations", "latency_ms"}` (`text` is what
  was heard; `item_id` is the stored message);
- `{"type": "truncated", "item_id", "text"}` after a `truncate`: what the reply now holds;
- `{"type": "error", "code", "message"}` (the call carries on);
- `{"type": "end", "reason"}` when the conversation ends; the socket closes after it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Query, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from vocalis.agents.runtime import AgentRuntime, get_runtime
from vocalis.conversations import service as conversations
from vocalis.core import audio, errors, jsonguard
from vocalis.core.backends import Backends
from vocalis.core.ids import new_id
from vocalis.core.security import Principal
from vocalis.realtime.api import admit, authenticate_websocket, deny
from vocalis.voice.conversation import VoiceConversation, VoiceInputError, open_voice_conversation
from vocalis.voice.events import (
    ConversationEndedEvent,
    ReplyTruncated,
    ResponseAudio,
    ResponseDoneEvent,
    ResponseStartedEvent,
    ResponseTranscriptDelta,
    SpeechStartedEvent,
    TranscriptionCompleted,
    VoiceErrorEvent,
    VoiceEvent,
)
from vocalis.voice.inputs import (
    AudioInput,
    Cancel,
    Respond,
    TextInput,
    TruncatePlayed,
    TurnDetection,
    VoiceSettings,
)

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["voice"])
SAMPLE_RATE = 16000
Message = dict[str, Any]


class RawPcmCall:
    """One raw-PCM call: wire messages to the conversation's frames and its events back."""

    def __init__(self, websocket: WebSocket, backends: Backends) -> None:
        self.websocket = websocket
        self.backends = backends
        self._send_lock = asyncio.Lock()
        self.ended = asyncio.Event()

    async def send(self, message: Message | bytes) -> None:
        """A JSON message or a binary audio frame (dropped once the caller has gone)."""
        async with self._send_lock:
            if self.websocket.application_state != WebSocketState.CONNECTED:
                return
            try:
                if isinstance(message, bytes):
                    await self.websocket.send_bytes(message)
                else:
                    await self.websocket.send_text(json.dumps(message))
            except (WebSocketDisconnect, RuntimeError, OSError):  # the caller went away
                return

    async def on_event(self, event: VoiceEvent) -> None:
        """One conversation event on the wire."""
        message = _message(event)
        if isinstance(event, ResponseAudio):
            pcm = event.pcm
            if event.sample_rate != SAMPLE_RATE:
                pcm = audio.resample(pcm, event.sample_rate, SAMPLE_RATE)
            await self.send(pcm)
        elif message is not None:
            await self.send(message)
        if isinstance(event, ConversationEndedEvent) and not self.ended.is_set():
            self.ended.set()
            await self.hang_up()

    async def hang_up(self) -> None:
        """Close the socket (the caller's receive loop then ends)."""
        async with self._send_lock:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                try:
                    await self.websocket.close()
                except (WebSocketDisconnect, RuntimeError, OSError):
                    return

    async def receive(self, conversation: VoiceConversation) -> str:
        """Feed the caller's frames to the conversation; why the call ended."""
        limit = self.backends.settings.voice_max_frame_bytes
        while not self.ended.is_set():
            try:
                message = await self.websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                message = {"type": "websocket.disconnect"}
            if message["type"] == "websocket.disconnect":
                return "agent_ended" if self.ended.is_set() else "disconnected"
            data, text = message.get("bytes"), message.get("text")
            try:
                if data is not None:
                    if len(data) > limit:
                        raise VoiceInputError(
                            errors.REALTIME_AUDIO_FRAME_TOO_LARGE,
                            f"One frame may carry at most {limit} bytes.",
                        )
                    await conversation.push(AudioInput(pcm=data, sample_rate=SAMPLE_RATE))
                elif text is not None and not await self._control(conversation, text):
                    return "user_ended"
            except VoiceInputError as exc:
                await self.send({"type": "error", "code": exc.code, "message": exc.message})
            except errors.VocalisError as exc:
                await self.send({"type": "error", "code": exc.code, "message": exc.detail})
        return "agent_ended"

    async def _control(self, conversation: VoiceConversation, text: str) -> bool:
        """A JSON control message; False when the caller hung up."""
        try:
            message = jsonguard.loads(text)
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "end":
            return False
        if kind == "cancel":
            await conversation.push(Cancel())
        elif kind == "text" and isinstance(message, dict) and isinstance(message.get("text"), str):
            await conversation.push(TextInput(item_id=new_id("msg"), text=message["text"]))
            await conversation.push(Respond())
        elif kind == "truncate" and isinstance(message, dict) and _truncation(message):
            played = TruncatePlayed(item_id=message["item_id"], audio_end_ms=message["played_ms"])
            await conversation.push(played)
        else:
            raise VoiceInputError(
                errors.REALTIME_INVALID_EVENT,
                'Control messages are {"type": "text" | "cancel" | "truncate" | "end"}.',
            )
        return True


def _truncation(message: Message) -> bool:
    """Whether a `truncate` message names an item and a played duration."""
    played = message.get("played_ms")
    return (
        isinstance(message.get("item_id"), str) and isinstance(played, int | float) and played >= 0
    )


def _message(event: VoiceEvent) -> Message | None:
    """The JSON message for an event (None for events this transport does not report)."""
    if isinstance(event, SpeechStartedEvent):
        return {"type": "speech_started", "item_id": event.item_id}
    if isinstance(event, TranscriptionCompleted):
        return {
            "type": "transcript",
            "role": "user",
            "item_id": event.item_id,
            "text": event.transcript,
        }
    if isinstance(event, ResponseTranscriptDelta):
        text = event.delta.strip()
        return {
            "type": "transcript",
            "role": "assistant",
            "response_id": event.response_id,
            "text": text,
        }
    if isinstance(event, ResponseStartedEvent):
        return {
            "type": "response.started",
            "response_id": event.response_id,
            "item_id": event.item_id,
        }
    if isinstance(event, ResponseDoneEvent):
        return {
            "type": "response.done",
            "response_id": event.response_id,
            "item_id": event.item_id,
            "status": event.status,
            "text": event.heard,
            "citations": [asdict(c) for c in event.citations],
            "latency_ms": event.latency_ms,
            "speculation": {"hit": event.speculated, "dropped": event.speculations_dropped},
        }
    if isinstance(event, ReplyTruncated):
        return {"type": "truncated", "item_id": event.item_id, "text": event.heard}
    if isinstance(event, VoiceErrorEvent):
        return {"type": "error", "code": event.code, "message": event.message}
    if isinstance(event, ConversationEndedEvent):
        return {"type": "end", "reason": event.reason}
    return None


def call_settings(backends: Backends) -> VoiceSettings:
    """Spoken replies at 16 kHz, turns found by the deployment's VAD settings and its
    end-of-turn detector (`VOCALIS_VOICE_TURN_DETECTOR`)."""
    settings = backends.settings
    detection = TurnDetection(
        threshold=settings.voice_vad_threshold,
        silence_ms=float(settings.voice_end_of_turn_silence_ms),
        eagerness="auto",
    )
    return VoiceSettings(turn_detection=detection, modalities=("audio",), output_rate=SAMPLE_RATE)


@router.websocket("/voice/pcm")
async def raw_pcm(
    websocket: WebSocket, agent_id: Annotated[str, Query(min_length=1, max_length=64)]
) -> None:
    """A voice call with an agent over raw PCM16 frames."""
    backends: Backends = websocket.app.state.backends
    try:
        principal, grant = await authenticate_websocket(websocket, backends)
        if grant is not None and grant.agent_id not in (None, agent_id):
            raise errors.PermissionDenied(f"This client secret is for agent {grant.agent_id!r}.")
        # The realtime limits: the handshake is rate-limited, the call takes a session place.
        place = await admit(websocket, principal)
    except errors.VocalisError as exc:
        await _refuse(websocket, exc)
        return
    async with place:
        await _call(websocket, backends, principal, agent_id)


async def _call(
    websocket: WebSocket, backends: Backends, principal: Principal, agent_id: str
) -> None:
    """Start the conversation and run the call until either side ends it."""
    runtime = get_runtime(websocket.app)
    try:
        conversation = await conversations.start_conversation(
            backends=backends,
            runtime=runtime,
            org_id=principal.org_id,
            agent_id=agent_id,
            channel="voice",
            metadata={"source": "raw_pcm"},
        )
    except errors.VocalisError as exc:
        await _refuse(websocket, exc)
        return
    org_id, conversation_id = principal.org_id, str(conversation["_id"])
    structlog.contextvars.bind_contextvars(org_id=org_id, conversation_id=conversation_id)
    call = RawPcmCall(websocket, backends)
    voice: VoiceConversation | None = None
    try:
        config = await conversations.agent_config(
            backends.database,
            org_id=org_id,
            agent_id=agent_id,
            version=int(conversation["agent_version"]),
        )
        await websocket.accept()
        voice = open_voice_conversation(
            backends=backends,
            runtime=runtime,
            org_id=org_id,
            conversation_id=conversation_id,
            agent_id=agent_id,
            config=config,
            settings=call_settings(backends),
            sink=call.on_event,
        )
        await voice.activate()
        await call.send(
            {"type": "ready", "conversation_id": conversation_id, "sample_rate": SAMPLE_RATE}
        )
    except BaseException as exc:
        # The call never started: its conversation must not stay `active`.
        if voice is not None:
            await voice.close()
        await _end_unstarted(backends, runtime, org_id, conversation_id)
        if isinstance(exc, WebSocketDisconnect | OSError):
            log.info("raw_pcm_client_left_at_start", error=type(exc).__name__)
            return
        raise
    log.info("raw_pcm_call_started")
    reason = "disconnected"
    try:
        reason = await call.receive(voice)
    finally:
        await voice.close()
        ended = await conversations.end_conversation(
            backends=backends,
            runtime=runtime,
            org_id=org_id,
            conversation_id=conversation_id,
            reason=reason,
        )
        await call.on_event(ConversationEndedEvent(reason=str(ended["ended_reason"])))
        log.info("raw_pcm_call_ended", reason=ended["ended_reason"])


async def _end_unstarted(
    backends: Backends, runtime: AgentRuntime, org_id: str, conversation_id: str
) -> None:
    """End the conversation of a call that never started (reason `error`)."""
    try:
        await asyncio.shield(
            conversations.end_conversation(
                backends=backends,
                runtime=runtime,
                org_id=org_id,
                conversation_id=conversation_id,
                reason="error",
            )
        )
    except Exception:
        log.exception("raw_pcm_conversation_not_ended")


async def _refuse(websocket: WebSocket, exc: errors.VocalisError) -> None:
    """Refuse the handshake with a problem+json answer (or close 1008, 1013 for a limit)."""
    await deny(websocket, exc, event="raw_pcm_refused")
