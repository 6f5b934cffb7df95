"""A voice conversation, transport-neutral: in-frames in, out-events to the transport's sink.

    transport ──inputs──▶ VoiceConversation ──▶ pipeline (vad → stt → agent → tts → playout)
                                                   └──▶ ConversationOutput ──events──▶ sink

A transport (the OpenAI Realtime serializer, the raw-PCM WebSocket, a phone carrier) only
translates its wire messages to `voice.inputs` frames and `voice.events` back. Replies run
through the conversations service (`voice.replies`); nothing here knows a wire protocol.
The pipeline and the speech engines start on the first audio, or when the settings ask
for spoken replies, so a text-only conversation never loads a model.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

import structlog

from vocalis.agents.runtime import AgentRuntime
from vocalis.agents.schemas import AgentConfig
from vocalis.conversations import spoken
from vocalis.core import audio, errors
from vocalis.core.backends import Backends
from vocalis.ports.speech import VoiceEngines
from vocalis.voice.events import InputCleared, ReplyTruncated, VoiceEventSink
from vocalis.voice.frames import AudioIn, Interruption
from vocalis.voice.inputs import (
    AudioInput,
    Cancel,
    ClearInput,
    CommitInput,
    Configure,
    InputFrame,
    Respond,
    TextInput,
    TruncatePlayed,
    TurnDetection,
    VoiceSettings,
)
from vocalis.voice.output import ConversationOutput
from vocalis.voice.pipeline import (
    CommittedTurn,
    InterruptionConfig,
    RespondRequest,
    TurnModelConfig,
    UserSpeechStarted,
    UserText,
    VoicePipeline,
    build_voice_pipeline,
    endpointing_config,
)
from vocalis.voice.processors import EndpointingConfig, spoken_text
from vocalis.voice.replies import AgentReplies, TurnStarter
from vocalis.voice.turns import start_turn

log = structlog.get_logger(__name__)

MAX_BUFFER_SECONDS = 120.0  # client-committed turns: the longest turn a client may commit
MIN_COMMIT_MS = 100.0
SETTLE_TIMEOUT_S = 3.0

EngineLoader = Callable[[], Awaitable[VoiceEngines]]


class VoiceInputError(Exception):
    """An in-frame the conversation cannot honour now (the transport reports it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class VoiceConversation:
    """The voice side of one conversation: its pipeline, input buffer and replies."""

    def __init__(
        self,
        *,
        backends: Backends,
        runtime: AgentRuntime,
        org_id: str,
        conversation_id: str,
        agent_id: str,
        language: str | None,
        settings: VoiceSettings,
        sink: VoiceEventSink,
        engines: EngineLoader,
        begin_turn: TurnStarter | None = None,
        realtime_playout: bool = True,
        telephone_band: bool = False,
    ) -> None:
        self.backends = backends
        self.telephone_band = telephone_band
        self.settings = settings
        self.span_attributes: Mapping[str, str] = {
            "vocalis.org_id": org_id,
            "vocalis.conversation_id": conversation_id,
            "vocalis.agent_id": agent_id,
        }
        self._sink = sink
        self._engines = engines
        self._language = language
        self._realtime_playout = realtime_playout
        self.replies = AgentReplies(
            backends=backends,
            runtime=runtime,
            org_id=org_id,
            conversation_id=conversation_id,
            emit=sink,
            begin_turn=begin_turn,
        )
        self.voice: VoicePipeline | None = None
        self.output: ConversationOutput | None = None
        self._activation = asyncio.Lock()
        self._buffer = bytearray()
        self._buffer_rate = 0
        self._buffer_start_ms = 0.0
        self._received_ms = 0.0

    # --- state -----------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether the pipeline runs (the engines are loaded)."""
        return self.voice is not None

    @property
    def replying(self) -> bool:
        """Whether a reply is in progress."""
        return bool(self.replies.records) or (
            self.output is not None and self.output.has_open_replies()
        )

    def _endpointing(self) -> EndpointingConfig:
        detection = self.settings.turn_detection or TurnDetection()
        settings = self.backends.settings
        pause_ms = (
            settings.voice_phone_speculation_pause_ms
            if self.telephone_band
            else settings.voice_speculation_pause_ms
        )
        return replace(
            self._turn_endpointing(detection),
            pause_ms=float(pause_ms),
            onset_ms=float(settings.voice_interruption_onset_ms),
            long_speech_ms=float(settings.voice_backchannel_max_ms),
        )

    def _interruptions(self) -> InterruptionConfig:
        settings = self.backends.settings
        return InterruptionConfig(false_interruption_ms=float(settings.voice_false_interruption_ms))

    def _turn_endpointing(self, detection: TurnDetection) -> EndpointingConfig:
        return endpointing_config(
            threshold=detection.threshold,
            silence_ms=detection.silence_ms,
            prefix_padding_ms=detection.prefix_padding_ms,
            min_speech_ms=self.backends.settings.voice_min_speech_ms,
            interrupt=detection.interrupt_response,
            turn_model=self._turn_model(detection),
        )

    def _turn_model(self, detection: TurnDetection) -> TurnModelConfig | None:
        """The end-of-turn model's part, for semantic detection with a model detector."""
        settings = self.backends.settings
        if detection.eagerness is None or settings.voice_turn_detector == "silence":
            return None  # server_vad, or semantic_vad mapped onto silence by eagerness
        return TurnModelConfig(
            decision_ms=float(settings.voice_turn_decision_silence_ms),
            threshold=settings.voice_turn_threshold,
            max_silence_ms=float(settings.voice_turn_max_silence_ms),
        ).at_eagerness(detection.eagerness)

    def _auto_respond(self) -> bool:
        detection = self.settings.turn_detection
        return detection is not None and detection.create_response

    def _modalities(self) -> tuple[str, ...]:
        return self.settings.modalities

    async def activate(self) -> VoicePipeline:
        """The running pipeline (the engines are loaded on first use)."""
        if self.voice is not None:
            return self.voice
        async with self._activation:
            if self.voice is None:
                self.voice = await self._start_pipeline(await self._engines())
        return self.voice

    async def _start_pipeline(self, engines: VoiceEngines) -> VoicePipeline:
        partial_ms = self.backends.settings.voice_partial_transcripts_ms
        output = ConversationOutput(self._sink, self.replies)
        voice = build_voice_pipeline(
            engines,
            runner=self.replies.run,
            transport_out=output,
            auto_respond=self._auto_respond,
            modalities=self._modalities,
            endpointing=self._endpointing(),
            output_rate=self.settings.output_rate,
            voice=self.settings.voice,
            language=self._language,
            partial_interval_ms=float(partial_ms) if partial_ms > 0 else None,
            realtime=self._realtime_playout,
            span_attributes=self.span_attributes,
            commit=self.replies.commit,
            discard=self.replies.discard,
            replying=lambda: self.replying,
            interruptions=self._interruptions(),
        )
        await voice.start()
        self.output = output
        log.info("voice_started", stt=engines.stt.name, tts=engines.tts.name)
        return voice

    # --- in-frames ---------------------------------------------------------------------------
    async def push(self, frame: InputFrame) -> None:
        """Handle one in-frame; raises `VoiceInputError` when it cannot be honoured now."""
        if isinstance(frame, AudioInput):
            await self._audio(frame)
        elif isinstance(frame, TextInput):
            await (await self.activate()).feed_turn(
                UserText(item_id=frame.item_id, text=frame.text)
            )
        elif isinstance(frame, CommitInput):
            await self._commit()
        elif isinstance(frame, ClearInput):
            self._buffer.clear()
            await self._sink(InputCleared())
        elif isinstance(frame, Respond):
            await self._respond(frame)
        elif isinstance(frame, Cancel):
            await self._cancel(frame.reason)
        elif isinstance(frame, TruncatePlayed):
            await self._truncate(frame)
        elif isinstance(frame, Configure):
            await self._configure(frame.settings)

    async def _audio(self, frame: AudioInput) -> None:
        audio.check_pcm16(frame.pcm)
        if not frame.pcm:
            return
        voice = await self.activate()
        rate = frame.sample_rate
        ms = audio.duration_seconds(frame.pcm, rate) * 1000.0
        if self.settings.turn_detection is None:
            self._buffer_audio(frame.pcm, rate)
        else:
            await voice.feed_audio(AudioIn(pcm=frame.pcm, sample_rate=rate))
        self._received_ms += ms

    def _buffer_audio(self, pcm: bytes, rate: int) -> None:
        if rate != self._buffer_rate:
            self._buffer.clear()
            self._buffer_rate = rate
        if not self._buffer:
            self._buffer_start_ms = self._received_ms
        if len(self._buffer) + len(pcm) > MAX_BUFFER_SECONDS * rate * 2:
            raise VoiceInputError(
                errors.REALTIME_BUFFER_FULL,
                f"Commit the turn: the buffer holds at most {MAX_BUFFER_SECONDS:g} s.",
            )
        self._buffer += pcm

    async def _commit(self) -> None:
        if self.settings.turn_detection is not None:
            raise VoiceInputError(
                errors.REALTIME_COMMIT_UNAVAILABLE,
                "With server turn detection the server commits turns itself; turn it off to "
                "commit them yourself.",
            )
        rate = self._buffer_rate or 16000
        buffered_ms = len(self._buffer) / 2 / rate * 1000.0
        if buffered_ms < MIN_COMMIT_MS:
            raise VoiceInputError(
                errors.REALTIME_COMMIT_EMPTY,
                f"The buffer holds {buffered_ms:.0f} ms of audio; at least "
                f"{MIN_COMMIT_MS:.0f} ms are needed.",
            )
        voice = await self.activate()
        pcm, start = bytes(self._buffer), self._buffer_start_ms
        self._buffer.clear()
        turn = start_turn(self.span_attributes, found_at=time.monotonic(), silence_ms=0.0)
        await voice.feed_turn(
            UserSpeechStarted(audio_start_ms=start, preroll=pcm, sample_rate=rate, detected=False)
        )
        await voice.feed_turn(
            CommittedTurn(
                audio_end_ms=start + buffered_ms, speech_ms=buffered_ms, silence_ms=0.0, turn=turn
            )
        )

    async def _respond(self, frame: Respond) -> None:
        if self.replying:
            raise VoiceInputError(
                errors.REALTIME_RESPONSE_ACTIVE,
                "A response is already in progress; cancel it or wait for it to finish.",
            )
        request = RespondRequest(without_input=frame.without_input)
        await (await self.activate()).feed_turn(request)

    async def _cancel(self, reason: str) -> None:
        if self.voice is None or not self.replying:
            raise VoiceInputError(errors.REALTIME_CANCEL_NOT_ACTIVE, "No response is in progress.")
        await self.voice.interrupt(Interruption(reason=reason))

    async def _truncate(self, frame: TruncatePlayed) -> None:
        """Keep only what the client played of a spoken reply (client-side barge-in)."""
        if self.replying and self.voice is not None:
            await self.voice.interrupt(Interruption(reason="client_cancelled"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.replies.idle.wait(), SETTLE_TIMEOUT_S)
        played = self.output.played if self.output is not None else {}
        sentences = played.get(frame.item_id)
        if sentences is None:
            raise VoiceInputError(
                errors.REALTIME_ITEM_NOT_TRUNCATABLE,
                f"No spoken reply {frame.item_id!r} to truncate.",
            )
        heard = spoken_text(sentences, frame.audio_end_ms)
        await spoken.keep_heard_reply(
            backends=self.backends,
            runtime=self.replies.runtime,
            org_id=self.replies.org_id,
            conversation_id=self.replies.conversation_id,
            message_id=frame.item_id,
            heard=heard,
            user_sequence=None,
            in_history=next(reversed(played)) == frame.item_id,
        )
        await self._sink(
            ReplyTruncated(item_id=frame.item_id, audio_end_ms=frame.audio_end_ms, heard=heard)
        )

    async def _configure(self, settings: VoiceSettings) -> None:
        """Apply new settings to the running pipeline (and start it for spoken replies)."""
        self.settings = settings
        if settings.turn_detection is not None:
            self._buffer.clear()
        voice = self.voice
        if voice is not None:
            voice.vad.config = self._endpointing()
            voice.tts.voice = settings.voice
            voice.tts.sample_rate = settings.output_rate
        if settings.speaks:
            await self.activate()  # load the engines now rather than at the first turn

    # --- shutdown ----------------------------------------------------------------------------
    async def close(self) -> None:
        """The transport went away: settle the reply in progress, then stop the pipeline."""
        voice = self.voice
        if voice is None:
            return
        if self.replying:
            await voice.interrupt(Interruption(reason="disconnected"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.replies.idle.wait(), SETTLE_TIMEOUT_S)
        await voice.stop()
        await self.replies.settle_unfinished()
        log.info("voice_stopped")


def open_voice_conversation(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    conversation_id: str,
    agent_id: str,
    config: AgentConfig,
    settings: VoiceSettings,
    sink: VoiceEventSink,
    begin_turn: TurnStarter | None = None,
    telephone_band: bool = False,
) -> VoiceConversation:
    """A transport's voice conversation on the process's speech engines (loaded on first use).

    `telephone_band`: the caller's audio is 8 kHz G.711 — transcribe it with the phone-band
    engine (`voice_phone_whisper_model`) and speculate at `voice_phone_speculation_pause_ms`.
    """
    language = config.voice.language.split("-")[0].lower() or None
    return VoiceConversation(
        backends=backends,
        runtime=runtime,
        org_id=org_id,
        conversation_id=conversation_id,
        agent_id=agent_id,
        language=language,
        settings=settings,
        sink=sink,
        engines=backends.phone_voice.get if telephone_band else backends.voice.get,
        begin_turn=begin_turn,
        telephone_band=telephone_band,
    )
