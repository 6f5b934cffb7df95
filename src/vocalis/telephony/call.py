"""One phone call: a carrier's media stream on the transport-neutral voice conversation.

    carrier ──media/mark/dtmf/stop──▶ PhoneCall ──frames──▶ VoiceConversation
    carrier ◀──media/mark/clear────── PhoneCall ◀──events──┘

Caller audio (μ-law 8 kHz) is decoded and pushed as it comes; the agent's speech goes out as
μ-law 8 kHz with a `mark` every half second and at each reply's end, so the carrier tells us
what was really played. When the caller speaks over the agent we send `clear` and keep
only what the marks confirmed was heard (`TruncatePlayed`). Keypad digits reach the agent
as text and as a `vocalis.dtmf` event; a `transfer_to_human` with a destination transfers
the call through the carrier once the agent's last words were played; the agent's goodbye
hangs up; `limits.max_duration_s` (or the deployment's maximum) ends it. The call is
recorded in stereo and its facts land on the conversation (`call`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import WebSocket
from opentelemetry import trace
from starlette.websockets import WebSocketDisconnect, WebSocketState

from vocalis.agents.runtime import AgentRuntime
from vocalis.agents.schemas import AgentConfig
from vocalis.agents.tools.transfer_to_human import transfer_destination
from vocalis.conversations import service as conversations
from vocalis.conversations import store
from vocalis.core import audio, jsonguard
from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.core.ids import new_id
from vocalis.core.metrics import (
    TELEPHONY_ACTIVE_CALLS,
    TELEPHONY_CALLS,
    TELEPHONY_MEDIA_JITTER,
    TELEPHONY_PLAYOUT_UNDERRUNS,
    TELEPHONY_TIME_TO_FIRST_AUDIO,
)
from vocalis.core.tracing import SPAN_NAMES, tracer
from vocalis.events.registry import DTMF
from vocalis.ports.tts import synthesize
from vocalis.telephony.carrier import (
    CallControl,
    Message,
    StreamDtmf,
    StreamMark,
    StreamMedia,
    StreamSerializer,
    StreamStart,
    StreamStop,
)
from vocalis.telephony.errors import ProviderFailed
from vocalis.telephony.recording import RATE, StereoRecorder, save_call_recording
from vocalis.telephony.slots import release_slot
from vocalis.telephony.tokens import StreamGrant
from vocalis.voice.conversation import VoiceConversation, VoiceInputError, open_voice_conversation
from vocalis.voice.events import (
    ConversationEndedEvent,
    HandoffRequestedEvent,
    ResponseAudio,
    ResponseDoneEvent,
    ResponseStartedEvent,
    ResponseTranscriptDelta,
    SpeechStartedEvent,
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
from vocalis.voice.recordings import recording_enabled

log = structlog.get_logger(__name__)

SPAN_NAMES.setdefault(
    "telephony.call", "One phone call, from the media stream's start to its end (children: turns)."
)
SPAN_NAMES.setdefault(
    "telephony.<operation>",
    "One call-control request to a carrier (answer, dial, transfer, hang_up).",
)

MARK_EVERY_MS = 500.0  # how finely the carrier reports what was played
DTMF_GAP_S = 1.5  # keypad digits pressed within this gap reach the agent together
DRAIN_SLACK_S = 2.0  # beyond the unplayed audio, how long to wait for the last mark
SETTLE_S = 3.0
GREETING_CHUNK_MS = 100
TRUNCATE_WAIT_S = 60.0  # how long a cleared reply's truncation waits for a newer reply


@dataclass
class Playback:
    """One spoken reply on its way to the caller."""

    item_id: str
    sent_ms: float = 0.0
    played_ms: float = 0.0  # confirmed by the carrier's marks
    marked_ms: float = 0.0
    marks: int = 0
    done: bool = False  # the reply ended: its last mark was sent
    cleared: bool = False  # the caller spoke over it: the rest was cleared
    greeting: bool = False  # the agent's first message, spoken by the call itself
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def unplayed_ms(self) -> float:
        """Audio sent that the carrier has not confirmed playing."""
        return max(0.0, self.sent_ms - self.played_ms)


def phone_settings(backends: Backends, config: AgentConfig) -> VoiceSettings:
    """Spoken replies at 8 kHz in the agent's voice; turns found by the deployment's VAD
    settings and its end-of-turn detector (`VOCALIS_VOICE_TURN_DETECTOR`), as on raw PCM."""
    settings = backends.settings
    detection = TurnDetection(
        threshold=settings.voice_vad_threshold,
        silence_ms=float(settings.voice_end_of_turn_silence_ms),
        eagerness="auto",
    )
    return VoiceSettings(
        turn_detection=detection,
        modalities=("audio",),
        voice=config.voice.voice,
        output_rate=RATE,
    )


class PhoneCall:
    """A call in progress: carrier messages to frames, conversation events to carrier messages."""

    def __init__(
        self,
        *,
        websocket: WebSocket,
        backends: Backends,
        runtime: AgentRuntime,
        serializer: StreamSerializer,
        control: CallControl,
        grant: StreamGrant,
        start: StreamStart,
        conversation_id: str,
        config: AgentConfig,
    ) -> None:
        self.websocket = websocket
        self.backends = backends
        self.runtime = runtime
        self.serializer = serializer
        self.control = control
        self.grant = grant
        self.start = start
        self.conversation_id = conversation_id
        self.config = config
        self.provider = serializer.provider
        self.voice: VoiceConversation | None = None
        self.playbacks: dict[str, Playback] = {}
        self._marks: dict[str, tuple[Playback, float]] = {}
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._end: tuple[str, str] | None = None  # (hang-up side, reason) when we end it
        self._handoff = False
        self._digits: list[str] = []
        self._digit_timer: asyncio.TimerHandle | None = None
        self._started = time.monotonic()
        self._first_audio = False
        self._buffer_until = 0.0
        self._last_media: tuple[float, float] | None = None
        max_s = float(backends.settings.telephony_max_call_duration_s)
        if config.limits.max_duration_s:
            max_s = min(max_s, float(config.limits.max_duration_s))
        self.max_duration_s = max_s
        self.recorder = StereoRecorder(max_s)

    # --- the call's life ---------------------------------------------------------------------
    async def run(self) -> None:
        """Talk until the caller, the agent or the clock ends the call; then settle it."""
        attributes = {
            "vocalis.org_id": self.grant.org_id,
            "vocalis.conversation_id": self.conversation_id,
            "vocalis.agent_id": self.grant.agent_id,
            "vocalis.telephony.provider": self.provider,
            "vocalis.telephony.direction": self.grant.direction,
        }
        span = tracer().start_span("telephony.call", attributes=attributes)
        TELEPHONY_ACTIVE_CALLS.labels(self.provider).inc()
        side, reason = "caller", "disconnected"
        try:
            with trace.use_span(span, end_on_exit=False):
                await self._record_answered()
                self.voice = open_voice_conversation(
                    backends=self.backends,
                    runtime=self.runtime,
                    org_id=self.grant.org_id,
                    conversation_id=self.conversation_id,
                    agent_id=self.grant.agent_id,
                    config=self.config,
                    settings=phone_settings(self.backends, self.config),
                    sink=self.on_event,
                    telephone_band=True,
                )
                await self.voice.activate()
                self._spawn(self._limit_duration())
                self._spawn(self._greet())
                log.info("phone_call_started", provider=self.provider, call_id=self.start.call_id)
                side, reason = await self._receive(self.voice)
        except Exception:  # the call cannot go on (engines unavailable…): hang it up
            log.exception("phone_call_failed", provider=self.provider)
            side, reason = "system", "error"
            with contextlib.suppress(Exception):
                await self.control.hang_up(call_id=self.start.call_id)
        finally:
            span.set_attribute("vocalis.telephony.hangup_side", side)
            span.set_attribute("vocalis.telephony.end_reason", reason)
            try:
                await self._settle(side, reason)
            finally:
                TELEPHONY_ACTIVE_CALLS.labels(self.provider).dec()
                span.end()

    async def _record_answered(self) -> None:
        """The call's facts so far, on its conversation (events carry them from now on)."""
        grant = self.grant
        inbound = grant.direction == "inbound"
        call = {
            "provider": self.provider,
            "direction": grant.direction,
            "from": grant.caller if inbound else grant.our_number,
            "to": grant.our_number if inbound else grant.caller,
            "provider_call_id": self.start.call_id,
            "stream_id": self.start.stream_id,
            "phone_number_id": grant.phone_number_id,
            "answered_at": store.iso(utcnow()),
            "duration_s": None,
            "hangup_side": None,
        }
        await store.update_conversation(
            self.backends.documents, grant.org_id, self.conversation_id, {"$set": {"call": call}}
        )

    async def _receive(self, voice: VoiceConversation) -> tuple[str, str]:
        """Feed the carrier's messages to the conversation; who ended the call and why."""
        while True:
            try:
                text = await self.websocket.receive_text()
            except (WebSocketDisconnect, RuntimeError, KeyError):
                return self._end or ("caller", "disconnected")
            try:
                message = jsonguard.loads(text)
            except ValueError:
                continue
            parsed = self.serializer.parse(message) if isinstance(message, dict) else None
            if isinstance(parsed, StreamMedia):
                await self._media(voice, parsed)
            elif isinstance(parsed, StreamMark):
                self._on_mark(parsed.name)
            elif isinstance(parsed, StreamDtmf):
                await self._on_dtmf(parsed.digit)
            elif isinstance(parsed, StreamStop):
                return self._end or ("caller", "user_ended")

    async def _media(self, voice: VoiceConversation, media: StreamMedia) -> None:
        if not media.ulaw:
            return
        now = time.monotonic()
        if media.timestamp_ms is not None:
            if self._last_media is not None:
                arrived, stamped = self._last_media
                drift = abs((now - arrived) - (media.timestamp_ms - stamped) / 1000.0)
                TELEPHONY_MEDIA_JITTER.labels(self.provider).observe(drift)
            self._last_media = (now, media.timestamp_ms)
        pcm = audio.ulaw_decode(media.ulaw)
        self.recorder.add_caller(pcm)
        try:
            await voice.push(AudioInput(pcm=pcm, sample_rate=RATE))
        except VoiceInputError as exc:
            log.warning("phone_media_refused", code=exc.code)

    async def _settle(self, side: str, reason: str) -> None:
        """Stop the voice, store the call's facts and recording, end the conversation."""
        for task in list(self._tasks):
            task.cancel()
        if self._digit_timer is not None:
            self._digit_timer.cancel()
        if self.voice is not None:
            await self.voice.close()
        grant = self.grant
        org_id = grant.org_id
        current = await conversations.get_conversation(
            self.backends, org_id=org_id, conversation_id=self.conversation_id
        )
        if current.get("status") == "ended" and current.get("ended_reason") in (
            conversations.AGENT_ENDINGS
        ):
            side = "agent"
        link = await self._save_recording()
        changes: dict[str, Any] = {
            "call.duration_s": round(time.monotonic() - self._started, 3),
            "call.hangup_side": side,
            "call.ended_at": store.iso(utcnow()),
        }
        if link is not None:
            changes["call.recording"] = link
        await store.update_conversation(
            self.backends.documents, org_id, self.conversation_id, {"$set": changes}
        )
        ended = await conversations.end_conversation(
            backends=self.backends,
            runtime=self.runtime,
            org_id=org_id,
            conversation_id=self.conversation_id,
            reason=reason,
        )
        await release_slot(self.backends, org_id=org_id, slot_id=grant.slot_id)
        outcome = str(ended.get("ended_reason") or reason)
        TELEPHONY_CALLS.labels(self.provider, grant.direction, outcome).inc()
        log.info("phone_call_ended", reason=outcome, hangup_side=side)
        await self._close()

    async def _save_recording(self) -> dict[str, Any] | None:
        if not recording_enabled(self.backends, self.grant.org_id):
            return None
        return await save_call_recording(
            self.backends,
            org_id=self.grant.org_id,
            conversation_id=self.conversation_id,
            recorder=self.recorder,
        )

    # --- sending -----------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        """One message to the carrier (dropped once the stream has gone)."""
        async with self._send_lock:
            if self.websocket.application_state != WebSocketState.CONNECTED:
                return
            try:
                await self.websocket.send_text(json.dumps(message))
            except (WebSocketDisconnect, RuntimeError, OSError):
                return

    async def _close(self) -> None:
        async with self._send_lock:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                    await self.websocket.close()

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _greet(self) -> None:
        """Speak the agent's first message (stored as message 1 when the call started)."""
        text = self.config.first_message
        if not text:
            return
        messages = await conversations.transcript(
            self.backends, org_id=self.grant.org_id, conversation_id=self.conversation_id
        )
        first = next((m for m in messages if m.get("sequence") == 1), None)
        if first is None or first.get("role") != "assistant":
            return
        tts = (await self.backends.voice.get()).tts
        pcm = audio.resample(
            await synthesize(tts, text, self.config.voice.voice), tts.sample_rate, RATE
        )
        item_id = str(first["_id"])
        playback = self.playbacks[item_id] = Playback(item_id, greeting=True)
        step = RATE * 2 * GREETING_CHUNK_MS // 1000
        for offset in range(0, len(pcm), step):
            if playback.cleared:
                break
            chunk = pcm[offset : offset + step]
            await self._play(ResponseAudio("greeting", item_id, chunk, RATE))
        playback.done = True
        if not playback.cleared:
            await self._mark(playback, last=True)

    # --- conversation events -----------------------------------------------------------------
    async def on_event(self, event: VoiceEvent) -> None:
        """One conversation event, as carrier messages."""
        if isinstance(event, ResponseAudio):
            await self._play(event)
        elif isinstance(event, ResponseStartedEvent):
            if event.speaks and not event.cut_off:
                self.playbacks[event.item_id] = Playback(event.item_id)
        elif isinstance(event, ResponseTranscriptDelta):
            playback = self.playbacks.get(event.item_id)
            if playback is not None and playback.sent_ms > playback.marked_ms:
                await self._mark(playback)  # a sentence ends here
        elif isinstance(event, ResponseDoneEvent):
            await self._reply_done(event)
        elif isinstance(event, SpeechStartedEvent):
            await self._barge_in()
        elif isinstance(event, HandoffRequestedEvent):
            self._handoff = True
        elif isinstance(event, ConversationEndedEvent):
            self._spawn(self._hang_up_after_playback(event.reason))
        elif isinstance(event, VoiceErrorEvent):
            log.warning("phone_voice_error", code=event.code, server=event.server)

    async def _play(self, event: ResponseAudio) -> None:
        playback = self.playbacks.get(event.item_id)
        if playback is None or playback.cleared:
            return
        pcm = event.pcm
        if event.sample_rate != RATE:
            pcm = audio.resample(pcm, event.sample_rate, RATE)
        duration_ms = audio.duration_seconds(pcm, RATE) * 1000.0
        now = time.monotonic()
        if not self._first_audio:
            self._first_audio = True
            TELEPHONY_TIME_TO_FIRST_AUDIO.labels(self.provider).observe(now - self._started)
        if playback.sent_ms > 0 and now > self._buffer_until + 0.02:
            TELEPHONY_PLAYOUT_UNDERRUNS.labels(self.provider).inc()  # the caller heard a gap
        self._buffer_until = max(self._buffer_until, now) + duration_ms / 1000.0
        await self.send(self.serializer.media(self.start.stream_id, audio.ulaw_encode(pcm)))
        self.recorder.add_agent(pcm)
        playback.sent_ms += duration_ms
        if playback.sent_ms - playback.marked_ms >= MARK_EVERY_MS:
            await self._mark(playback)

    async def _mark(self, playback: Playback, *, last: bool = False) -> None:
        playback.marks += 1
        name = f"{playback.item_id}:{'done' if last else playback.marks}"
        self._marks[name] = (playback, playback.sent_ms)
        playback.marked_ms = playback.sent_ms
        await self.send(self.serializer.mark(self.start.stream_id, name))

    def _on_mark(self, name: str) -> None:
        entry = self._marks.pop(name, None)
        if entry is None:
            return
        playback, at_ms = entry
        if playback.cleared:
            return  # cleared audio is echoed back too, unplayed
        playback.played_ms = max(playback.played_ms, at_ms)
        if name.endswith(":done"):
            playback.finished.set()
            self.playbacks.pop(playback.item_id, None)

    async def _reply_done(self, event: ResponseDoneEvent) -> None:
        playback = self.playbacks.get(event.item_id)
        if playback is not None:
            playback.done = True
            if playback.cleared:
                self._spawn(self._keep_played(playback))
            elif playback.sent_ms > 0:
                await self._mark(playback, last=True)
            else:
                playback.finished.set()
                self.playbacks.pop(playback.item_id, None)
        if self._handoff:
            self._handoff = False
            destination = transfer_destination(self.config.tools)
            if destination is not None:
                self._spawn(self._transfer_after(playback, destination))

    async def _barge_in(self) -> None:
        """The caller spoke over the agent: clear what the carrier has not played yet."""
        playing = [p for p in self.playbacks.values() if not p.cleared and p.unplayed_ms > 1.0]
        if not playing:
            return
        await self.send(self.serializer.clear(self.start.stream_id))
        self.recorder.cut_agent()
        self._buffer_until = 0.0
        for playback in playing:
            playback.cleared = True
            playback.finished.set()
            log.info(
                "phone_barge_in",
                played_ms=round(playback.played_ms),
                sent_ms=round(playback.sent_ms),
            )
            if playback.done:
                self._spawn(self._keep_played(playback))

    async def _keep_played(self, playback: Playback) -> None:
        """Store only what the carrier confirmed was played of a cleared reply."""
        self.playbacks.pop(playback.item_id, None)
        voice = self.voice
        if voice is None or playback.greeting:
            return  # the greeting is not the voice conversation's reply: it stays whole
        # The cleared reply is over, but the conversation may not have filed its timing yet;
        # and truncating while a newer reply runs would cancel that one: wait for both.
        for _ in range(int(TRUNCATE_WAIT_S / 0.05)):
            filed = voice.output is not None and playback.item_id in voice.output.played
            if filed and not voice.replying:
                break
            await asyncio.sleep(0.05)
        try:
            await voice.push(
                TruncatePlayed(item_id=playback.item_id, audio_end_ms=playback.played_ms)
            )
        except VoiceInputError as exc:
            log.warning("phone_truncate_failed", code=exc.code, item_id=playback.item_id)

    async def _drain(self, playbacks: list[Playback]) -> None:
        """Wait until the carrier played what was sent (or it is hopeless)."""
        unplayed = max((p.unplayed_ms for p in playbacks), default=0.0)
        waits = [asyncio.ensure_future(p.finished.wait()) for p in playbacks]
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=unplayed / 1000.0 + DRAIN_SLACK_S)
        for wait in pending:
            wait.cancel()

    # --- ending the call from our side ---------------------------------------------------------
    async def _end_call(self, side: str, reason: str, action: Awaitable[None]) -> None:
        """Run a call-control action that ends our part of the call, then close the stream."""
        if self._end is not None:
            return
        self._end = (side, reason)
        try:
            await action
        except ProviderFailed as exc:
            log.warning("phone_call_control_failed", reason=reason, error=exc.detail)
        await self._close()

    async def _hang_up_after_playback(self, reason: str) -> None:
        """The agent ended the conversation: let its goodbye play, then hang up."""
        await self._drain(list(self.playbacks.values()))
        await self._end_call("agent", reason, self.control.hang_up(call_id=self.start.call_id))

    async def _transfer_after(self, playback: Playback | None, destination: str) -> None:
        """Cold transfer once the agent's handoff message was played."""
        await self._drain([playback] if playback is not None else [])
        log.info("phone_transfer", provider=self.provider)
        transfer = self.control.transfer(
            call_id=self.start.call_id, destination=destination, from_=self.grant.our_number
        )
        await self._end_call("agent", "transferred", transfer)

    async def _limit_duration(self) -> None:
        await asyncio.sleep(self.max_duration_s)
        log.info("phone_call_max_duration", seconds=self.max_duration_s)
        await self._end_call(
            "system", "max_duration", self.control.hang_up(call_id=self.start.call_id)
        )

    # --- keypad ------------------------------------------------------------------------------
    async def _on_dtmf(self, digit: str) -> None:
        if not digit:
            return
        await self.backends.events(
            DTMF.name,
            {
                "org_id": self.grant.org_id,
                "conversation_id": self.conversation_id,
                "agent_id": self.grant.agent_id,
                "digit": digit,
                "provider": self.provider,
            },
        )
        self._digits.append(digit)
        if self._digit_timer is not None:
            self._digit_timer.cancel()
        if digit == "#":
            self._flush_digits()
        else:
            loop = asyncio.get_running_loop()
            self._digit_timer = loop.call_later(DTMF_GAP_S, self._flush_digits)

    def _flush_digits(self) -> None:
        self._digit_timer = None
        digits, self._digits = "".join(self._digits), []
        if digits:
            self._spawn(self._keypad_turn(digits))

    async def _keypad_turn(self, digits: str) -> None:
        """Keypad digits as a user turn: stop the reply in progress, then answer them."""
        voice = self.voice
        if voice is None:
            return
        try:
            if voice.replying:
                await self._barge_in()
                await voice.push(Cancel())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(voice.replies.idle.wait(), SETTLE_S)
            await voice.push(TextInput(item_id=new_id("msg"), text=f"Keypad: {digits}"))
            await voice.push(Respond())
        except VoiceInputError as exc:
            log.warning("phone_keypad_refused", code=exc.code)
