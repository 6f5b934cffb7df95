"""Voice on a realtime WebSocket session: audio in, turns found by VAD, spoken replies out.

`VoiceChannel.attach(session)` extends a `RealtimeSession` (the text protocol) with the
audio part of the OpenAI Realtime protocol:

- transport in: `input_audio_buffer.append` (base64) and binary frames of raw audio in the
  session's input format are validated and decoded to PCM16 here, then fed to the voice
  pipeline (server VAD) or buffered until `input_audio_buffer.commit` (manual turns);
- `RealtimeAudioOut`, the pipeline's last stage, turns frames into server events: VAD
  events, transcripts, the reply's audio (encoded in the session's output format) and its
  transcript, and `response.done` with the latency breakdown;
- `run_reply` runs each agent turn through the conversation service, and `settle` makes
  the stored assistant message hold only what the listener heard when a reply is cut short.

The pipeline (and the speech engines) start on the first audio event or when the session
asks for audio output, so text-only sessions never load a model.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import structlog
from opentelemetry import trace

from vocalis.agents.events import HandoffEvent, TextDelta
from vocalis.agents.schemas import AgentConfig
from vocalis.conversations import service as conversations
from vocalis.conversations import store
from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.core.errors import CATALOGUE, VocalisError
from vocalis.core.metrics import VOICE_TURN_LATENCY
from vocalis.core.redaction import redact
from vocalis.core.tracing import tracer
from vocalis.realtime.protocol import (
    AudioContentPart,
    ContentPart,
    ConversationItemAdded,
    ConversationItemDone,
    FinalStatus,
    InputAudioBufferAppendEvent,
    InputAudioBufferCleared,
    InputAudioBufferClearEvent,
    InputAudioBufferCommitEvent,
    InputAudioBufferCommitted,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
    InputAudioTranscriptionCompleted,
    InputAudioTranscriptionDelta,
    InputAudioTranscriptionFailed,
    ItemStatus,
    MessageItem,
    Response,
    ResponseContentPartAdded,
    ResponseContentPartDone,
    ResponseCreated,
    ResponseCreateEvent,
    ResponseDone,
    ResponseOutputAudioDelta,
    ResponseOutputAudioDone,
    ResponseOutputAudioTranscriptDelta,
    ResponseOutputAudioTranscriptDone,
    ResponseOutputItemAdded,
    ResponseOutputItemDone,
    ResponseOutputTextDelta,
    ResponseOutputTextDone,
    ResponseUsage,
    ServerVad,
    StatusDetails,
    StatusError,
    TranscriptionError,
    TranscriptionUsage,
    VocalisCitation,
    VocalisConversationEnded,
    VocalisHandoffRequested,
    VocalisResponse,
)
from vocalis.realtime.session import ClientEventError, ClientHandler, RealtimeSession
from vocalis.voice import audio
from vocalis.voice.backends import voice_engines
from vocalis.voice.frames import (
    AudioIn,
    BargeIn,
    ErrorFrame,
    Frame,
    Interruption,
    LLMTextDelta,
    MetricFrame,
    ResponseSpoken,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    TTSAudio,
    TTSSentenceStart,
)
from vocalis.voice.pipeline import (
    ReplyRequest,
    RespondRequest,
    UserSpeechStarted,
    UserText,
    VoicePipeline,
    VoiceResponseStarted,
    build_voice_pipeline,
    endpointing_config,
)
from vocalis.voice.processors import DOWNSTREAM, Direction, FrameProcessor
from vocalis.voice.recordings import Speaker, record_turn, recording_enabled

log = structlog.get_logger(__name__)

MAX_BUFFER_SECONDS = 120.0  # manual turn detection: the longest turn a client may commit
MIN_COMMIT_MS = 100.0
SETTLE_TIMEOUT_S = 3.0
InterruptReason = Literal["turn_detected", "client_cancelled"]
INTERRUPTED_NOTE = "(The user interrupted before this reply was heard.)"


@dataclass
class ReplyRecord:
    """What the conversation side knows about one reply (filled by `run_reply`)."""

    request: ReplyRequest
    user_sequence: int | None = None
    result: conversations.TurnResult | None = None
    error: BaseException | None = None
    streamed: list[str] = field(default_factory=list)
    settled: bool = False


@dataclass
class OpenResponse:
    """A reply the client has been told about (`response.created`) and that is not done."""

    started: VoiceResponseStarted
    response: Response
    item: MessageItem
    transcript: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    audio_rate: int | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    answered_stop_at: float | None = None  # when the answered turn's speech was found over
    first_audio_at: float | None = None
    span: trace.Span | None = None

    @property
    def speaks(self) -> bool:
        """Whether the reply is spoken."""
        return self.started.speaks


@dataclass
class _InterruptionMark(Frame):
    """Queued behind what the transport had already been given when an interruption came."""

    reason: str = "turn_detected"


# --- transport out ----------------------------------------------------------------------------
class RealtimeAudioOut(FrameProcessor):
    """The pipeline's last stage: frames become OpenAI Realtime server events."""

    interruptible = False  # a half-sent WebSocket frame cannot be cancelled; it skips instead

    def __init__(self, channel: VoiceChannel) -> None:
        super().__init__(name="RealtimeAudioOut")
        self._channel = channel
        self._open: dict[str, OpenResponse] = {}
        self._done: set[str] = set()
        self._user_item: str | None = None
        self._partial_sent = ""
        self._interrupted_at = float("-inf")
        self._interrupt_reason: InterruptReason = "turn_detected"
        # The latest spoken turn: when its end was found and what it cost.
        self._turn_item: str | None = None
        self._turn_stop_at: float | None = None
        self._turn_previous: str | None = None
        self._turn_latency: dict[str, float] = {}

    @property
    def sender(self) -> Any:
        """The session's event sender."""
        return self._channel.session.sender

    def has_open_responses(self) -> bool:
        """Whether a reply is being sent."""
        return bool(self._open)

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        """Note interruptions at once; queue a marker so later frames can be judged."""
        if isinstance(frame, Interruption):
            reason: InterruptReason = (
                "turn_detected" if isinstance(frame, BargeIn) else "client_cancelled"
            )
            self._interrupt_reason = reason
            self._queue.put_nowait((_InterruptionMark(reason=reason, ts=frame.ts), direction))
            return  # the end of the line: nothing downstream needs it
        await super().queue_frame(frame, direction)

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Translate one frame."""
        try:
            await self._translate(frame)
        except Exception:
            log.exception("voice_event_failed", frame=type(frame).__name__)

    async def _translate(self, frame: Frame) -> None:
        if isinstance(frame, TTSAudio):
            await self._audio(frame)
        elif isinstance(frame, TTSSentenceStart):
            await self._sentence(frame)
        elif isinstance(frame, LLMTextDelta):
            await self._text(frame)
        elif isinstance(frame, UserSpeechStarted):
            await self._speech_started(frame)
        elif isinstance(frame, SpeechStopped):
            await self._speech_stopped(frame)
        elif isinstance(frame, TranscriptPartial):
            await self._partial(frame)
        elif isinstance(frame, TranscriptFinal):
            await self._final(frame)
        elif isinstance(frame, VoiceResponseStarted):
            await self._response_started(frame)
        elif isinstance(frame, ResponseSpoken):
            await self._response_spoken(frame)
        elif isinstance(frame, MetricFrame):
            self._metric(frame)
        elif isinstance(frame, ErrorFrame):
            await self._error(frame)
        elif isinstance(frame, _InterruptionMark):
            self._interrupted_at = frame.ts

    # --- the user's side --------------------------------------------------------------------
    async def _speech_started(self, frame: UserSpeechStarted) -> None:
        self._user_item, self._partial_sent = frame.item_id, ""
        if frame.detected:
            await self.sender.send(
                InputAudioBufferSpeechStarted(
                    audio_start_ms=int(frame.audio_start_ms), item_id=frame.item_id
                )
            )

    async def _speech_stopped(self, frame: SpeechStopped) -> None:
        item_id = self._user_item
        if item_id is None:
            return
        if not isinstance(frame, _CommittedTurn):
            await self.sender.send(
                InputAudioBufferSpeechStopped(audio_end_ms=int(frame.audio_end_ms), item_id=item_id)
            )
        if not frame.accepted:  # too little speech (a click, a cough): no turn
            self._user_item = None
            return
        session = self._channel.session
        previous, session.last_item_id = session.last_item_id, item_id
        await self.sender.send(
            InputAudioBufferCommitted(previous_item_id=previous, item_id=item_id)
        )
        item = MessageItem(
            id=item_id,
            role="user",
            status="in_progress",
            content=[AudioContentPart(type="input_audio", transcript=None)],
        )
        await self.sender.send(ConversationItemAdded(previous_item_id=previous, item=item))
        self._turn_item, self._turn_stop_at, self._turn_previous = item_id, frame.ts, previous
        self._turn_latency = {"endpointing": round(frame.silence_ms, 1)}

    async def _partial(self, frame: TranscriptPartial) -> None:
        # Deltas only ever append: a partial that revises earlier words waits for the final.
        if self._user_item and frame.text.startswith(self._partial_sent):
            delta = frame.text[len(self._partial_sent) :]
            if delta:
                self._partial_sent = frame.text
                await self.sender.send(
                    InputAudioTranscriptionDelta(item_id=self._user_item, delta=delta)
                )

    async def _final(self, frame: TranscriptFinal) -> None:
        item_id = self._user_item
        if item_id is None:
            return
        text = frame.text.strip()
        rest = text[len(self._partial_sent) :] if text.startswith(self._partial_sent) else text
        if rest:
            await self.sender.send(InputAudioTranscriptionDelta(item_id=item_id, delta=rest))
        seconds = audio.duration_seconds(frame.audio, frame.sample_rate)
        await self.sender.send(
            InputAudioTranscriptionCompleted(
                item_id=item_id,
                transcript=text,
                usage=TranscriptionUsage(seconds=round(seconds, 3)),
            )
        )
        item = MessageItem(
            id=item_id,
            role="user",
            content=[AudioContentPart(type="input_audio", transcript=text)],
        )
        previous = self._turn_previous if item_id == self._turn_item else None
        await self.sender.send(ConversationItemDone(previous_item_id=previous, item=item))
        if item_id == self._turn_item:
            self._turn_latency["stt"] = round(frame.stt_seconds * 1000.0, 1)
        self._user_item, self._partial_sent = None, ""

    # --- the agent's side -------------------------------------------------------------------
    async def _response_started(self, frame: VoiceResponseStarted) -> None:
        response = Response(
            id=frame.response_id,
            status="in_progress",
            conversation_id=self._channel.session.conversation_id,
            output_modalities=["audio"] if frame.speaks else ["text"],
            max_output_tokens=self._channel.session.session.max_output_tokens,
        )
        item = MessageItem(id=frame.item_id, role="assistant", status="in_progress")
        state = OpenResponse(started=frame, response=response, item=item)
        if frame.user_item_id == self._turn_item and self._turn_stop_at is not None:
            state.latency_ms.update(self._turn_latency)
            state.answered_stop_at = self._turn_stop_at
            # The span starts where the turn's latency does: when its end was found.
            ago_ns = int((time.monotonic() - self._turn_stop_at) * 1e9)
            state.span = tracer().start_span(
                "voice.turn",
                attributes=self._channel.span_attributes,
                start_time=time.time_ns() - ago_ns,
            )
        await self.sender.send(ResponseCreated(response=response.model_copy(deep=True)))
        if frame.ts < self._interrupted_at:
            # Cut off before a word of it was played: it ends here, with nothing heard.
            self._done.add(frame.response_id)
            await self._finish(state, heard="", interrupted=True)
            return
        self._open[frame.response_id] = state
        response.output.append(item)
        await self.sender.send(
            ResponseOutputItemAdded(response_id=response.id, output_index=0, item=item)
        )
        part: ContentPart | AudioContentPart = (
            AudioContentPart(type="audio", transcript="")
            if state.speaks
            else ContentPart(type="text", text="")
        )
        await self.sender.send(
            ResponseContentPartAdded(
                response_id=response.id,
                item_id=item.id,
                output_index=0,
                content_index=0,
                part=part,
            )
        )

    def _ids(self, state: OpenResponse) -> dict[str, Any]:
        return {
            "response_id": state.response.id,
            "item_id": state.item.id,
            "output_index": 0,
            "content_index": 0,
        }

    async def _text(self, frame: LLMTextDelta) -> None:
        state = self._open.get(frame.response_id)
        if state is None or state.speaks:
            return  # a spoken reply's transcript follows its audio, sentence by sentence
        state.text.append(frame.text)
        await self.sender.send(ResponseOutputTextDelta(**self._ids(state), delta=frame.text))

    async def _sentence(self, frame: TTSSentenceStart) -> None:
        state = self._open.get(frame.response_id)
        if state is None:
            return
        delta = (" " if state.transcript else "") + frame.text
        state.transcript.append(delta)
        await self.sender.send(ResponseOutputAudioTranscriptDelta(**self._ids(state), delta=delta))

    async def _audio(self, frame: TTSAudio) -> None:
        state = self._open.get(frame.response_id)
        if state is None or not frame.pcm:
            return
        fmt = self._channel.output_format()
        pcm = frame.pcm
        if frame.sample_rate != fmt.sample_rate:  # the format changed mid-sentence
            pcm = audio.resample(pcm, frame.sample_rate, fmt.sample_rate)
        payload = base64.b64encode(audio.encode(pcm, fmt)).decode("ascii")
        await self.sender.send(ResponseOutputAudioDelta(**self._ids(state), delta=payload))
        if state.first_audio_at is None:
            state.first_audio_at = time.monotonic()
            if state.answered_stop_at is not None:
                waited = (state.first_audio_at - state.answered_stop_at) * 1000.0
                first_byte = state.latency_ms.get("endpointing", 0.0) + waited
                state.latency_ms["first_audio_byte"] = round(first_byte, 1)
                VOICE_TURN_LATENCY.observe(first_byte / 1000.0)
        if state.audio_rate is None:
            state.audio_rate = fmt.sample_rate
        if fmt.sample_rate != state.audio_rate:
            pcm = audio.resample(pcm, fmt.sample_rate, state.audio_rate)
        state.audio += pcm

    def _metric(self, frame: MetricFrame) -> None:
        state = next(reversed(self._open.values()), None)
        if state is None:
            return
        if frame.name == "tts_ttfb_seconds":
            state.latency_ms.setdefault("tts_first_byte", round(frame.value * 1000.0, 1))
        elif frame.name == "first_token_seconds":
            state.latency_ms.setdefault("first_token", round(frame.value * 1000.0, 1))

    async def _error(self, frame: ErrorFrame) -> None:
        if frame.processor == "STTProcessor" and self._user_item is not None:
            await self.sender.send(
                InputAudioTranscriptionFailed(
                    item_id=self._user_item,
                    error=TranscriptionError(code=frame.code, message=frame.message),
                )
            )
            self._user_item = None
        entry = CATALOGUE.get(frame.code)
        server = entry.status >= 500 if entry is not None else frame.code != "no_input"
        await self.sender.error(frame.code, frame.message, server=server)

    async def _response_spoken(self, frame: ResponseSpoken) -> None:
        if frame.response_id in self._done:
            return
        state = self._open.pop(frame.response_id, None)
        if state is None:
            return
        self._done.add(frame.response_id)
        heard = frame.text if state.speaks else "".join(state.text)
        await self._finish(state, heard=heard, interrupted=frame.interrupted)

    async def _finish(self, state: OpenResponse, *, heard: str, interrupted: bool) -> None:
        """Close the reply's events, settle what is stored, send `response.done`."""
        channel = self._channel
        record = channel.records.get(state.response.id)
        failed = record is not None and record.error is not None
        status: FinalStatus = "failed" if failed else "cancelled" if interrupted else "completed"
        item_status: ItemStatus = "completed" if status == "completed" else "incomplete"
        ids = self._ids(state)
        if state.response.output:
            if state.speaks:
                await self.sender.send(ResponseOutputAudioDone(**ids))
                await self.sender.send(ResponseOutputAudioTranscriptDone(**ids, transcript=heard))
                part: ContentPart | AudioContentPart = AudioContentPart(
                    type="audio", transcript=heard
                )
                state.item.content = [AudioContentPart(type="output_audio", transcript=heard)]
            else:
                await self.sender.send(ResponseOutputTextDone(**ids, text=heard))
                part = ContentPart(type="text", text=heard)
                state.item.content = [ContentPart(type="output_text", text=heard)]
            await self.sender.send(ResponseContentPartDone(**ids, part=part))
            state.item.status = item_status
            await self.sender.send(
                ResponseOutputItemDone(
                    response_id=state.response.id, output_index=0, item=state.item
                )
            )
        message_id = None
        if record is not None:
            message_id = await channel.settle(
                record,
                heard=heard,
                cut_short=interrupted or failed,
                agent_audio=bytes(state.audio),
                agent_rate=state.audio_rate,
            )
        await self._done_event(state, record, status, message_id)
        channel.records.pop(state.response.id, None)
        if not channel.records:
            channel.idle.set()

    async def _done_event(
        self,
        state: OpenResponse,
        record: ReplyRecord | None,
        status: FinalStatus,
        message_id: str | None,
    ) -> None:
        channel = self._channel
        result = record.result if record is not None else None
        latency = dict(result.final.latency_ms) if result is not None else {}
        latency.update(state.latency_ms)
        vocalis = VocalisResponse(conversation_id=channel.session.conversation_id)
        usage = ResponseUsage()
        if result is not None:
            final = result.final
            turn_usage = final.usage
            vocalis = VocalisResponse(
                conversation_id=channel.session.conversation_id,
                citations=[VocalisCitation(**asdict(c)) for c in final.citations],
                cost_usd=turn_usage.cost_usd,
                provider=turn_usage.provider,
                model=turn_usage.model,
                flags=list(final.flags),
                handoff=final.handoff,
                conversation_ended=result.conversation_ended,
            )
            usage = ResponseUsage(
                total_tokens=turn_usage.prompt_tokens + turn_usage.completion_tokens,
                input_tokens=turn_usage.prompt_tokens,
                output_tokens=turn_usage.completion_tokens,
            )
        vocalis.message_id = message_id
        vocalis.latency_ms = latency
        state.response.status = status
        if status == "cancelled":
            details = StatusDetails(type="cancelled", reason=self._interrupt_reason)
        elif status == "failed" and record is not None and record.error is not None:
            error = record.error
            code = error.code if isinstance(error, VocalisError) else "internal_error"
            message = error.detail if isinstance(error, VocalisError) else "The reply failed."
            details = StatusDetails(
                type="failed", error=StatusError(type="server_error", code=code, message=message)
            )
        else:
            details = StatusDetails(type=status)
        state.response.status_details = details
        state.response.usage = usage
        await self.sender.send(ResponseDone(response=state.response, vocalis=vocalis))
        if state.span is not None:
            state.span.set_attribute("vocalis.voice.status", status)
            for name, value in latency.items():
                state.span.set_attribute(f"vocalis.latency_ms.{name}", value)
            state.span.end()
        if message_id is not None:
            channel.session.last_item_id = message_id
        if result is not None and result.conversation_ended:
            await channel.conversation_ended()


@dataclass
class _CommittedTurn(SpeechStopped):
    """The end of a turn the client committed itself (no VAD event is reported)."""


# --- the channel ------------------------------------------------------------------------------
class VoiceChannel:
    """The voice state of one realtime session."""

    def __init__(self, session: RealtimeSession, *, config: AgentConfig) -> None:
        self.session = session
        self.config = config
        self.records: dict[str, ReplyRecord] = {}
        self.idle = asyncio.Event()  # set while no reply is in progress
        self.idle.set()
        self.voice: VoicePipeline | None = None
        self.out: RealtimeAudioOut | None = None
        self._activation = asyncio.Lock()
        self._binary_declared = False
        self._buffer = bytearray()
        self._buffer_rate = 0
        self._buffer_start_ms = 0.0
        self._received_ms = 0.0
        self._text_handlers: dict[str, ClientHandler] = {}

    @property
    def backends(self) -> Backends:
        """The process's backends."""
        return self.session.backends

    @property
    def span_attributes(self) -> dict[str, str]:
        """The attributes every span carries."""
        return {
            "vocalis.org_id": self.session.org_id,
            "vocalis.conversation_id": self.session.conversation_id,
            "vocalis.agent_id": str(self.session.conversation["agent_id"]),
        }

    # --- wiring ----------------------------------------------------------------------------
    def attach(self, *, binary_declared: bool = False) -> VoiceChannel:
        """Register the audio events' handlers on the session."""
        session = self.session
        self._binary_declared = binary_declared
        for name in ("session.update", "response.create", "response.cancel"):
            self._text_handlers[name] = session.handlers[name]
        session.handlers.update(
            {
                "session.update": self.on_session_update,
                "response.create": self.on_response_create,
                "response.cancel": self.on_response_cancel,
                "input_audio_buffer.append": self.on_append,
                "input_audio_buffer.commit": self.on_commit,
                "input_audio_buffer.clear": self.on_clear,
            }
        )
        session.on_binary = self.on_binary
        session.on_close.append(self.close)
        return self

    # --- session configuration ------------------------------------------------------------
    def input_format(self) -> audio.AudioFormat:
        """The wire format of the caller's audio."""
        return audio.AudioFormat.parse(self.session.session.audio.input.format.model_dump())

    def output_format(self) -> audio.AudioFormat:
        """The wire format of the agent's audio."""
        return audio.AudioFormat.parse(self.session.session.audio.output.format.model_dump())

    def turn_detection(self) -> ServerVad | None:
        """Server VAD settings, or None for client-committed turns."""
        return self.session.session.audio.input.turn_detection

    def modalities(self) -> list[str]:
        """The session's output modalities."""
        return list(self.session.session.output_modalities)

    def _auto_respond(self) -> bool:
        detection = self.turn_detection()
        return detection is not None and detection.create_response

    def _endpointing(self) -> Any:
        detection = self.turn_detection() or ServerVad()
        return endpointing_config(
            threshold=detection.threshold,
            silence_ms=detection.silence_duration_ms,
            prefix_padding_ms=detection.prefix_padding_ms,
            min_speech_ms=self.backends.settings.voice_min_speech_ms,
            interrupt=detection.interrupt_response,
        )

    def _language(self) -> str | None:
        language = self.config.voice.language.split("-")[0].lower()
        return language or None

    async def activate(self) -> VoicePipeline:
        """The running pipeline (the engines are loaded on first use)."""
        if self.voice is not None:
            return self.voice
        async with self._activation:
            if self.voice is None:
                engines = await voice_engines(self.backends)
                settings = self.backends.settings
                out = RealtimeAudioOut(self)
                partial_ms = settings.voice_partial_transcripts_ms
                voice = build_voice_pipeline(
                    engines,
                    runner=self.run_reply,
                    transport_out=out,
                    auto_respond=self._auto_respond,
                    modalities=self.modalities,
                    endpointing=self._endpointing(),
                    output_rate=self.output_format().sample_rate,
                    voice=self.session.session.audio.output.voice,
                    language=self._language(),
                    partial_interval_ms=float(partial_ms) if partial_ms > 0 else None,
                )
                await voice.start()
                self.voice, self.out = voice, out
                log.info("voice_started", stt=engines.stt.name, tts=engines.tts.name)
        assert self.voice is not None
        return self.voice

    def _reconfigure(self) -> None:
        voice = self.voice
        if voice is None:
            return
        voice.vad.config = self._endpointing()
        voice.tts.voice = self.session.session.audio.output.voice
        voice.tts.sample_rate = self.output_format().sample_rate

    # --- client events ---------------------------------------------------------------------
    async def on_session_update(self, raw: dict[str, Any]) -> None:
        """The text handler, then the audio settings are applied to the running pipeline."""
        await self._text_handlers["session.update"](raw)
        audio_patch = (raw.get("session") or {}).get("audio") or {}
        if isinstance(audio_patch, dict) and "format" in (audio_patch.get("input") or {}):
            self._binary_declared = True
        self._reconfigure()
        if self.turn_detection() is not None:
            self._buffer.clear()
        if "audio" in self.modalities():
            await self.activate()  # load the engines now rather than at the first turn

    async def on_append(self, raw: dict[str, Any]) -> None:
        """`input_audio_buffer.append`: base64 audio in the session's input format."""
        event = InputAudioBufferAppendEvent.model_validate(raw)
        limit = self.backends.settings.voice_max_frame_bytes
        if len(event.audio) > 4 * (limit // 3 + 1):
            raise ClientEventError(
                "audio_frame_too_large",
                f"An append may carry at most {limit} bytes of audio.",
                param="audio",
            )
        try:
            data = base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError):
            raise ClientEventError(
                "invalid_audio", "`audio` must be base64-encoded audio.", param="audio"
            ) from None
        await self._ingest(data)

    async def on_binary(self, data: bytes) -> None:
        """A binary frame: raw audio in the declared input format."""
        sender = self.session.sender
        if not self._binary_declared:
            await sender.error(
                "unsupported_frame",
                "Binary frames are raw audio: declare `audio.input.format` with "
                "`session.update` first, or send `input_audio_buffer.append`.",
            )
            return
        try:
            await self._ingest(data)
        except ClientEventError as exc:
            await sender.error(exc.code, exc.message, param=exc.param)
        except VocalisError as exc:
            await sender.error(exc.code, exc.detail)

    async def _ingest(self, data: bytes) -> None:
        limit = self.backends.settings.voice_max_frame_bytes
        if len(data) > limit:
            raise ClientEventError(
                "audio_frame_too_large", f"One audio frame may carry at most {limit} bytes."
            )
        fmt = self.input_format()
        pcm = audio.decode(data, fmt)  # raises on odd PCM16 byte counts
        if not pcm:
            return
        voice = await self.activate()
        ms = audio.duration_seconds(pcm, fmt.sample_rate) * 1000.0
        if self.turn_detection() is None:
            if fmt.sample_rate != self._buffer_rate:
                self._buffer.clear()
                self._buffer_rate = fmt.sample_rate
            if not self._buffer:
                self._buffer_start_ms = self._received_ms
            if len(self._buffer) + len(pcm) > MAX_BUFFER_SECONDS * fmt.sample_rate * 2:
                raise ClientEventError(
                    "input_audio_buffer_full",
                    f"Commit the turn: the buffer holds at most {MAX_BUFFER_SECONDS:g} s.",
                )
            self._buffer += pcm
        else:
            await voice.feed_audio(AudioIn(pcm=pcm, sample_rate=fmt.sample_rate))
        self._received_ms += ms

    async def on_commit(self, raw: dict[str, Any]) -> None:
        """`input_audio_buffer.commit`: the buffered audio is the user's turn."""
        InputAudioBufferCommitEvent.model_validate(raw)
        if self.turn_detection() is not None:
            raise ClientEventError(
                "input_audio_buffer_commit_unavailable",
                "With `server_vad` the server commits turns itself; set "
                "`audio.input.turn_detection` to null to commit them yourself.",
            )
        rate = self._buffer_rate or self.input_format().sample_rate
        buffered_ms = len(self._buffer) / 2 / rate * 1000.0
        if buffered_ms < MIN_COMMIT_MS:
            raise ClientEventError(
                "input_audio_buffer_commit_empty",
                f"The buffer holds {buffered_ms:.0f} ms of audio; at least "
                f"{MIN_COMMIT_MS:.0f} ms are needed.",
            )
        voice = await self.activate()
        pcm, start = bytes(self._buffer), self._buffer_start_ms
        self._buffer.clear()
        await voice.feed_turn(
            UserSpeechStarted(audio_start_ms=start, preroll=pcm, sample_rate=rate, detected=False)
        )
        await voice.feed_turn(
            _CommittedTurn(audio_end_ms=start + buffered_ms, speech_ms=buffered_ms, silence_ms=0.0)
        )

    async def on_clear(self, raw: dict[str, Any]) -> None:
        """`input_audio_buffer.clear`: forget the buffered audio."""
        InputAudioBufferClearEvent.model_validate(raw)
        self._buffer.clear()
        await self.session.sender.send(InputAudioBufferCleared())

    def _replying(self) -> bool:
        return bool(self.records) or (self.out is not None and self.out.has_open_responses())

    async def on_response_create(self, raw: dict[str, Any]) -> None:
        """With voice running, replies go through the pipeline (spoken when audio is on)."""
        if self.voice is None and "audio" not in self.modalities():
            await self._text_handlers["response.create"](raw)
            return
        ResponseCreateEvent.model_validate(raw)
        if self._replying():
            raise ClientEventError(
                "conversation_already_has_active_response",
                "A response is already in progress; cancel it or wait for `response.done`.",
            )
        voice = await self.activate()
        for item_id, text in self.session.pending:
            await voice.feed_turn(UserText(item_id=item_id, text=text))
        self.session.pending.clear()
        await voice.feed_turn(RespondRequest())

    async def on_response_cancel(self, raw: dict[str, Any]) -> None:
        """Cancel the spoken reply in progress (or the text one)."""
        if self.voice is None or not self._replying():
            await self._text_handlers["response.cancel"](raw)
            return
        await self.voice.interrupt(Interruption(reason="client_cancelled"))

    # --- replies ---------------------------------------------------------------------------
    async def run_reply(self, request: ReplyRequest) -> AsyncIterator[str]:
        """One agent turn for the pipeline: its text deltas; results land on the record."""
        record = ReplyRecord(request)
        self.records[request.response_id] = record
        self.idle.clear()
        session = self.session
        try:
            turn = await conversations.begin_turn(
                backends=self.backends,
                runtime=session.runtime,
                org_id=session.org_id,
                conversation_id=session.conversation_id,
                content=request.text,
                message_id=request.user_item_id,
            )
            turn.reply_id = request.reply_item_id
            record.user_sequence = int(turn.user_message["sequence"])
            events = turn.events()
            try:
                async for event in events:
                    if isinstance(event, TextDelta):
                        record.streamed.append(event.text)
                        yield event.text
                    elif isinstance(event, conversations.TurnResult):
                        record.result = event
                    elif isinstance(event, HandoffEvent):
                        await session.sender.send(
                            VocalisHandoffRequested(
                                conversation_id=session.conversation_id, reason=event.reason
                            )
                        )
            finally:
                # Closing the turn cancels the agent and releases the conversation's lock.
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()
        except Exception as exc:
            record.error = exc
            log.warning("voice_reply_failed", error=str(exc))
            raise

    async def settle(
        self,
        record: ReplyRecord,
        *,
        heard: str,
        cut_short: bool,
        agent_audio: bytes,
        agent_rate: int | None,
    ) -> str | None:
        """Store what was heard and the turn's recordings; the kept message's id, if any."""
        if record.settled:
            return None
        record.settled = True
        request = record.request
        message_id: str | None = request.reply_item_id if record.result is not None else None
        if cut_short:
            message_id = await self._store_heard(record, heard.strip())
        if record.user_sequence is not None and recording_enabled(
            self.backends, self.session.org_id
        ):
            sides: list[tuple[Speaker, str | None, bytes, int]] = []
            transcript = request.transcript
            if transcript is not None and transcript.audio:
                sides.append(
                    ("user", request.user_item_id, transcript.audio, transcript.sample_rate)
                )
            if agent_audio and agent_rate:
                sides.append(("agent", message_id, agent_audio, agent_rate))
            await record_turn(
                self.backends,
                org_id=self.session.org_id,
                conversation_id=self.session.conversation_id,
                turn=record.user_sequence,
                sides=sides,
            )
        return message_id

    async def _store_heard(self, record: ReplyRecord, heard: str) -> str | None:
        """Make the stored reply hold only `heard` (removed when nothing was heard)."""
        documents, org_id = self.backends.documents, self.session.org_id
        conversation_id = self.session.conversation_id
        message_id = record.request.reply_item_id
        existing = await documents.get(store.MESSAGES, org_id, message_id)
        if record.result is not None:
            await self._truncate_history(heard)
        if not heard:
            if existing is not None:
                await documents.delete_many(store.MESSAGES, org_id, {"_id": message_id})
                await store.update_conversation(
                    documents, org_id, conversation_id, {"$inc": {"message_count": -1}}
                )
            return None
        redacted = redact(heard) if conversations.redaction_on(self.backends, org_id) else None
        fields = {"content": heard, "content_redacted": redacted, "interrupted": True}
        if existing is not None:
            await documents.update_one(
                store.MESSAGES, org_id, {"_id": message_id}, {"$set": fields}
            )
            return message_id
        if record.user_sequence is None:
            return None  # the turn never began: there is no user message to answer
        doc: dict[str, Any] = {
            "_id": message_id,
            "conversation_id": conversation_id,
            "sequence": record.user_sequence + 1,
            "role": "assistant",
            "created_at": store.iso(utcnow()),
            "citations": [],
            **fields,
        }
        await store.insert_message(documents, org_id, doc)
        await store.update_conversation(
            documents,
            org_id,
            conversation_id,
            {"$set": {"last_message_at": doc["created_at"]}, "$inc": {"message_count": 1}},
        )
        return message_id

    async def _truncate_history(self, heard: str) -> None:
        """The model's memory of its last reply becomes what the user heard of it."""
        graph = self.session.runtime.graph
        config: Any = {"configurable": {"thread_id": self.session.conversation_id}}
        try:
            snapshot = await graph.aget_state(config)
            messages = list((snapshot.values or {}).get("messages", []))
            if not messages or messages[-1].get("role") != "assistant":
                return
            last = {**messages[-1], "content": heard or INTERRUPTED_NOTE}
            await graph.aupdate_state(config, {"messages": [last]}, as_node="output_guard")
        except Exception:  # the stored transcript is right; the model's memory is best effort
            log.exception("voice_history_not_truncated")

    async def conversation_ended(self) -> None:
        """The agent ended the conversation with this reply."""
        session = self.session
        session.conversation = {**session.conversation, "status": "ended"}
        ended = await conversations.get_conversation(
            self.backends, org_id=session.org_id, conversation_id=session.conversation_id
        )
        await session.sender.send(
            VocalisConversationEnded(
                conversation_id=session.conversation_id,
                reason=str(ended.get("ended_reason") or ""),
            )
        )

    # --- shutdown ----------------------------------------------------------------------------
    async def close(self) -> None:
        """The client left: settle the reply in progress, then stop the pipeline."""
        voice = self.voice
        if voice is None:
            return
        if self._replying():
            await voice.interrupt(Interruption(reason="disconnected"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), SETTLE_TIMEOUT_S)
        await voice.stop()
        for record in list(self.records.values()):  # replies that never reached the transport
            await self.settle(record, heard="", cut_short=True, agent_audio=b"", agent_rate=None)
        self.records.clear()
        log.info("voice_stopped")


def attach_voice(
    session: RealtimeSession, *, config: AgentConfig, binary_declared: bool = False
) -> VoiceChannel:
    """Give a realtime session its voice channel."""
    return VoiceChannel(session, config=config).attach(binary_declared=binary_declared)
