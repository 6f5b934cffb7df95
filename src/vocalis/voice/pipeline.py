"""The assembled voice pipeline of one conversation.

    transport in → VAD/endpointing → STT → agent → sentence chunker → speech gate → TTS
                 → playout → transport out

The transport (a realtime WebSocket session, a benchmark) decodes the caller's audio to
PCM16 and feeds `AudioIn` frames at the head; with manual turn detection it skips the VAD
and hands each committed turn straight to the STT stage. The agent stage turns final
transcripts (and typed messages) into replies through an injected `ReplyRunner`, so this
module knows nothing about conversations or WebSockets. The transport-out processor at the
end turns frames into whatever the transport speaks.

Frames added here on top of `voice.frames`: `UserSpeechStarted` (speech start with the id
of the user item it becomes), `UserText` (a typed message to answer with the next reply),
`RespondRequest` (answer now) and `VoiceResponseStarted` (a reply with its ids and
modalities).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from vocalis.core.ids import new_id
from vocalis.core.metrics import (
    STT_LATENCY,
    STT_REAL_TIME_FACTOR,
    TTS_TIME_TO_FIRST_BYTE,
    VOICE_BARGE_INS,
)
from vocalis.ports.stt import SpeechToText
from vocalis.ports.tts import TextToSpeech
from vocalis.ports.vad import VoiceActivityDetector
from vocalis.voice.frames import (
    ControlFrame,
    DataFrame,
    EndOfResponse,
    ErrorFrame,
    Frame,
    Interruption,
    LLMTextDelta,
    ResponseStarted,
    SpeakableText,
    SpeechStarted,
    TranscriptFinal,
)
from vocalis.voice.processors import (
    AudioPlayout,
    Direction,
    EndpointingConfig,
    FrameProcessor,
    MetricsObserver,
    Pipeline,
    SentenceChunkerProcessor,
    STTProcessor,
    TTSProcessor,
    VADProcessor,
)

Modality = str  # "text" | "audio"


# --- frames -------------------------------------------------------------------------------
@dataclass
class UserSpeechStarted(SpeechStarted):
    """The user started a turn that will become user item `item_id`.

    `detected` is False for turns the client committed itself (manual turn detection).
    """

    item_id: str = field(default_factory=lambda: new_id("msg"))
    detected: bool = True


@dataclass
class UserText(DataFrame):
    """A typed user message, answered together with any spoken input by the next reply."""

    item_id: str
    text: str


@dataclass
class RespondRequest(ControlFrame):
    """Answer the user input received so far (the client's `response.create`)."""


@dataclass
class VoiceResponseStarted(ResponseStarted):
    """A reply began: `item_id` is the assistant item (and stored message) it becomes.

    Unlike other reply frames it survives interruptions, so the transport learns of every
    reply, also of one cut off before it was heard.
    """

    drop_on_interruption: ClassVar[bool] = False

    item_id: str = ""
    user_item_id: str = ""
    modalities: tuple[Modality, ...] = ("audio",)

    @property
    def speaks(self) -> bool:
        """Whether this reply is spoken (otherwise it is text only)."""
        return "audio" in self.modalities


@dataclass(frozen=True)
class ReplyRequest:
    """What the agent stage asks the conversation to answer."""

    response_id: str
    reply_item_id: str
    user_item_id: str
    text: str
    modalities: tuple[Modality, ...]
    transcript: TranscriptFinal | None = None  # the spoken turn answered, if any


ReplyRunner = Callable[[ReplyRequest], AsyncIterator[str]]
"""Runs one agent turn for a request and yields its text deltas; it raises on failure."""


# --- after the VAD ------------------------------------------------------------------------
class TurnLabeller(FrameProcessor):
    """Names the user item each detected turn becomes (`SpeechStarted` → `UserSpeechStarted`)."""

    interruptible = False

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Label speech starts; pass everything on."""
        if isinstance(frame, SpeechStarted) and not isinstance(frame, UserSpeechStarted):
            frame = UserSpeechStarted(
                audio_start_ms=frame.audio_start_ms,
                preroll=frame.preroll,
                sample_rate=frame.sample_rate,
                ts=frame.ts,
            )
        await self.push_frame(frame, direction)


# --- agent --------------------------------------------------------------------------------
class ConversationAgentProcessor(FrameProcessor):
    """Collects user input (final transcripts, typed text) and answers it with a reply.

    With `auto_respond()` true (server VAD with `create_response`) each final transcript is
    answered at once; otherwise input waits for a `RespondRequest`. A reply always ends
    with `EndOfResponse`, also when it fails, so later stages can close it.
    """

    def __init__(
        self,
        runner: ReplyRunner,
        *,
        auto_respond: Callable[[], bool],
        modalities: Callable[[], Sequence[Modality]],
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._runner = runner
        self._auto_respond = auto_respond
        self._modalities = modalities
        self._item_id: str | None = None
        self._pending: list[tuple[str, str]] = []
        self._transcript: TranscriptFinal | None = None

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Track user input; reply when it is time."""
        if isinstance(frame, RespondRequest):
            if self._pending:
                await self._reply()
            else:
                await self.push_frame(
                    ErrorFrame(
                        message="No user input to answer: speak, commit audio or add a message.",
                        code="no_input",
                        processor=self.name,
                    )
                )
            return
        if isinstance(frame, UserText):
            self._pending.append((frame.item_id, frame.text))
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, UserSpeechStarted):
            self._item_id = frame.item_id
        elif isinstance(frame, TranscriptFinal) and frame.text.strip() and self._item_id:
            self._pending.append((self._item_id, frame.text.strip()))
            self._transcript = frame
            if self._auto_respond():
                await self._reply()

    async def _reply(self) -> None:
        pending, transcript = self._pending, self._transcript
        self._pending, self._transcript = [], None
        modalities = tuple(self._modalities())
        request = ReplyRequest(
            response_id=new_id("resp"),
            reply_item_id=new_id("msg"),
            user_item_id=pending[0][0],
            text="\n".join(text for _, text in pending),
            modalities=modalities,
            transcript=transcript,
        )
        await self.push_frame(
            VoiceResponseStarted(
                response_id=request.response_id,
                transcript=request.text,
                item_id=request.reply_item_id,
                user_item_id=request.user_item_id,
                modalities=modalities,
            )
        )
        started, first = time.perf_counter(), True
        deltas = self._runner(request)
        try:
            async for delta in deltas:
                if not delta:
                    continue
                if first:
                    first = False
                    await self.report_metric("first_token_seconds", time.perf_counter() - started)
                await self.push_frame(LLMTextDelta(text=delta, response_id=request.response_id))
        except Exception as exc:  # the runner recorded it; close the reply properly
            await self.push_frame(ErrorFrame.from_exception(exc, self.name))
        finally:
            aclose = getattr(deltas, "aclose", None)
            if aclose is not None:
                await aclose()  # on interruption: cancels the agent turn, frees its lock
        await self.push_frame(EndOfResponse(response_id=request.response_id))


# --- between the chunker and TTS ----------------------------------------------------------
_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


def speakable(text: str) -> str:
    """Text as it should be spoken: citation markers such as `[1]` are left unsaid."""
    return " ".join(_CITATION.sub("", text).split())


class SpeechGate(FrameProcessor):
    """Lets only spoken replies reach TTS, with citation markers removed from their text."""

    def __init__(self, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self._silent: set[str] = set()

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Drop the sentences of text-only replies; clean the others."""
        if isinstance(frame, VoiceResponseStarted) and not frame.speaks:
            self._silent.add(frame.response_id)
        elif isinstance(frame, EndOfResponse):
            self._silent.discard(frame.response_id)
        elif isinstance(frame, SpeakableText):
            text = speakable(frame.text)
            if frame.response_id in self._silent or not text:
                return
            frame = SpeakableText(text=text, response_id=frame.response_id)
        await self.push_frame(frame, direction)

    async def on_interruption(self, frame: Interruption, dropped: list[Frame]) -> None:
        """Forget replies that were cut off."""
        self._silent.clear()


# --- assembly -----------------------------------------------------------------------------
@dataclass(frozen=True)
class VoiceEngines:
    """The speech engines a pipeline uses (shared by every session of a process)."""

    stt: SpeechToText
    tts: TextToSpeech
    vad: VoiceActivityDetector


@dataclass
class VoicePipeline:
    """A running pipeline and handles on the stages a transport reconfigures."""

    pipeline: Pipeline
    vad: VADProcessor
    stt: STTProcessor
    agent: ConversationAgentProcessor
    tts: TTSProcessor
    playout: AudioPlayout

    async def start(self) -> None:
        """Start every stage."""
        await self.pipeline.start()

    async def stop(self) -> None:
        """Stop every stage now (an agent turn in progress is cancelled)."""
        await self.pipeline.stop()

    async def feed_audio(self, frame: Frame) -> None:
        """Input for the VAD (server turn detection)."""
        await self.vad.queue_frame(frame)

    async def feed_turn(self, frame: Frame) -> None:
        """Input that bypasses the VAD: committed turns, typed text, respond requests.

        It enters at the STT stage so it stays behind any transcription in progress.
        """
        await self.stt.queue_frame(frame)

    async def interrupt(self, frame: Interruption) -> None:
        """Cancel the reply in progress (generation, synthesis, playout)."""
        await self.vad.queue_frame(frame)


def prometheus_observer(stt_engine: str, tts_engine: str) -> MetricsObserver:
    """Feeds the processors' measurements into the Prometheus registry."""

    def observe(processor: str, name: str, value: float) -> None:
        if name == "stt_seconds":
            STT_LATENCY.labels(stt_engine).observe(value)
        elif name == "stt_real_time_factor":
            STT_REAL_TIME_FACTOR.labels(stt_engine).observe(value)
        elif name == "tts_ttfb_seconds":
            TTS_TIME_TO_FIRST_BYTE.labels(tts_engine).observe(value)
        elif name == "barge_ins":
            VOICE_BARGE_INS.inc()

    return observe


def build_voice_pipeline(
    engines: VoiceEngines,
    *,
    runner: ReplyRunner,
    transport_out: FrameProcessor,
    auto_respond: Callable[[], bool],
    modalities: Callable[[], Sequence[Modality]],
    endpointing: EndpointingConfig,
    output_rate: int,
    voice: str | None = None,
    language: str | None = None,
    partial_interval_ms: float | None = None,
    playout_lead_ms: float = 200.0,
) -> VoicePipeline:
    """Wire the stages for one conversation (not started)."""
    vad = VADProcessor(engines.vad, endpointing)
    stt = STTProcessor(engines.stt, language=language, partial_interval_ms=partial_interval_ms)
    agent = ConversationAgentProcessor(runner, auto_respond=auto_respond, modalities=modalities)
    tts = TTSProcessor(engines.tts, voice=voice, sample_rate=output_rate)
    playout = AudioPlayout(lead_ms=playout_lead_ms)
    stages: list[FrameProcessor] = [
        vad,
        TurnLabeller(),
        stt,
        agent,
        SentenceChunkerProcessor(),
        SpeechGate(),
        tts,
        playout,
        transport_out,
    ]
    observer = prometheus_observer(engines.stt.name, engines.tts.name)
    return VoicePipeline(Pipeline(stages, metrics_observer=observer), vad, stt, agent, tts, playout)


def endpointing_config(
    *,
    threshold: float,
    silence_ms: float,
    prefix_padding_ms: float,
    min_speech_ms: float,
    interrupt: bool,
) -> EndpointingConfig:
    """VAD settings from a session's `server_vad` turn detection."""
    return EndpointingConfig(
        threshold=threshold,
        # Hysteresis: once speaking, a little below the threshold still counts as speech.
        neg_threshold=max(0.0, min(threshold - 0.15, 0.35)),
        stop_silence_ms=silence_ms,
        min_speech_ms=min_speech_ms,
        prefix_padding_ms=prefix_padding_ms,
        interrupt_on_speech=interrupt,
    )
