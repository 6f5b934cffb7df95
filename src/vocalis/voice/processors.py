"""Frame processors: the base class, the pipeline, and the stages that need no agent runtime.

A processor does one thing and pushes frames on. Each has an input queue and a worker task,
so a slow stage (STT, pacing audio) never holds up the stages before it. System frames skip
the queue: on an `Interruption` every interruptible processor cancels the frame it is
working on, drops queued reply frames, runs its `on_interruption` hook and passes the
interruption on. Failures become `ErrorFrame`s and the pipeline keeps running.

The voice path: VADProcessor → STTProcessor → AgentProcessor → SentenceChunkerProcessor →
TTSProcessor → AudioPlayout → (transport out).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, TypeVar

from vocalis.core.ids import new_id
from vocalis.core.tracing import tracer
from vocalis.ports.stt import PartialTranscriber, SpeechToText
from vocalis.ports.tts import TextToSpeech
from vocalis.ports.vad import VoiceActivityDetector
from vocalis.voice.audio import Resampler, check_pcm16, duration_seconds
from vocalis.voice.frames import (
    AudioIn,
    BargeIn,
    CancelFrame,
    EndFrame,
    EndOfResponse,
    ErrorFrame,
    Frame,
    Interruption,
    LLMTextDelta,
    MetricFrame,
    ResponseSpoken,
    ResponseStarted,
    SpeakableText,
    SpeechStarted,
    SpeechStopped,
    SystemFrame,
    TranscriptFinal,
    TranscriptPartial,
    TTSAudio,
    TTSSentenceEnd,
    TTSSentenceStart,
)
from vocalis.voice.sentences import SentenceChunker

logger = logging.getLogger(__name__)

MetricsObserver = Callable[[str, str, float], None]
"""Called with (processor name, metric name, value) for every measurement."""

Responder = Callable[[str], AsyncIterator[str]]
"""The agent as the pipeline sees it: user text in, reply text deltas out."""


T = TypeVar("T")


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an async generator when the consumer stops early (e.g. on interruption)."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class Direction(enum.Enum):
    """Which way a frame travels."""

    DOWNSTREAM = "downstream"
    UPSTREAM = "upstream"


DOWNSTREAM = Direction.DOWNSTREAM
UPSTREAM = Direction.UPSTREAM


class FrameProcessor:
    """One stage of the pipeline. Override `process_frame`; call `push_frame` to emit."""

    interruptible: ClassVar[bool] = True

    def __init__(self, *, name: str | None = None) -> None:
        self.name = name or type(self).__name__
        self.metrics_observer: MetricsObserver | None = None
        self._next: FrameProcessor | None = None
        self._prev: FrameProcessor | None = None
        self._queue: asyncio.Queue[tuple[Frame, Direction]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._running = False

    def link(self, downstream: FrameProcessor) -> FrameProcessor:
        """Connect `downstream` after this processor; returns it for chaining."""
        self._next, downstream._prev = downstream, self
        return downstream

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the worker that processes queued frames."""
        self._running = True
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=f"voice:{self.name}")

    async def stop(self) -> None:
        """Cancel the worker; queued frames are discarded."""
        self._running = False
        await self._cancel_worker()

    async def _cancel_worker(self) -> None:
        worker = self._worker
        if worker is None or worker is asyncio.current_task():
            return  # a worker cannot await its own cancellation
        self._worker = None
        if not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    # --- frame flow ---------------------------------------------------------------------
    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        """Accept a frame: system frames are handled now, others are queued in order."""
        if isinstance(frame, SystemFrame):
            await self._handle_system_frame(frame, direction)
        else:
            self._queue.put_nowait((frame, direction))

    async def push_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        """Send a frame to the next (or, upstream, the previous) processor."""
        target = self._next if direction is DOWNSTREAM else self._prev
        if target is not None:
            await target.queue_frame(frame, direction)

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Handle one frame; the default passes it on unchanged."""
        await self.push_frame(frame, direction)

    async def on_interruption(self, frame: Interruption, dropped: list[Frame]) -> None:
        """Hook run after the current work was cancelled and reply frames were dropped."""

    async def report_metric(self, name: str, value: float) -> None:
        """Record a measurement: to the observer and as a `MetricFrame` downstream."""
        self._observe(name, value)
        await self.push_frame(MetricFrame(processor=self.name, name=name, value=value))

    def _observe(self, name: str, value: float) -> None:
        if self.metrics_observer is not None:
            try:
                self.metrics_observer(self.name, name, value)
            except Exception:  # a broken observer must not break the conversation
                logger.exception("metrics observer failed")

    async def _handle_system_frame(self, frame: SystemFrame, direction: Direction) -> None:
        if isinstance(frame, CancelFrame):
            await self.stop()
        elif isinstance(frame, Interruption) and self.interruptible:
            await self._interrupt(frame)
        await self.push_frame(frame, direction)

    async def _interrupt(self, frame: Interruption) -> None:
        await self._cancel_worker()
        kept: list[tuple[Frame, Direction]] = []
        dropped: list[Frame] = []
        while not self._queue.empty():
            queued, queued_direction = self._queue.get_nowait()
            if queued.drop_on_interruption and queued_direction is DOWNSTREAM:
                dropped.append(queued)
            else:
                kept.append((queued, queued_direction))
        for item in kept:
            self._queue.put_nowait(item)
        try:
            await self.on_interruption(frame, dropped)
        except Exception as exc:
            logger.exception("%s: interruption hook failed", self.name)
            await self.push_frame(ErrorFrame.from_exception(exc, self.name))
        if self._running:
            await self.start()

    async def _run(self) -> None:
        while True:
            frame, direction = await self._queue.get()
            started = time.perf_counter()
            try:
                await self.process_frame(frame, direction)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.exception("%s failed on %s", self.name, type(frame).__name__)
                await self.push_frame(ErrorFrame.from_exception(exc, self.name))
            self._observe("process_seconds", time.perf_counter() - started)
            if isinstance(frame, EndFrame):
                self._running = False
                return


class _Outlet(FrameProcessor):
    """The end of a pipeline: frames that reach it land in a queue."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        self.frames.put_nowait(frame)

    async def start(self) -> None:
        return None


class Pipeline:
    """A chain of processors; frames go in at the head and come out of `output`."""

    def __init__(
        self,
        processors: Sequence[FrameProcessor],
        *,
        metrics_observer: MetricsObserver | None = None,
    ) -> None:
        if not processors:
            raise ValueError("a pipeline needs at least one processor")
        self.processors = list(processors)
        self._upstream_outlet = _Outlet("upstream")
        self._downstream_outlet = _Outlet("output")
        chain: list[FrameProcessor] = [
            self._upstream_outlet,
            *self.processors,
            self._downstream_outlet,
        ]
        for before, after in itertools.pairwise(chain):
            before.link(after)
        for processor in self.processors:
            processor.metrics_observer = metrics_observer

    @property
    def output(self) -> asyncio.Queue[Frame]:
        """Frames that left the last processor downstream."""
        return self._downstream_outlet.frames

    @property
    def upstream(self) -> asyncio.Queue[Frame]:
        """Frames that left the first processor upstream."""
        return self._upstream_outlet.frames

    async def start(self) -> None:
        """Start every processor's worker."""
        for processor in self.processors:
            await processor.start()

    async def stop(self) -> None:
        """Stop every worker now (queued frames are discarded)."""
        for processor in self.processors:
            await processor.stop()

    async def queue_frame(self, frame: Frame) -> None:
        """Feed a frame into the head of the pipeline."""
        await self.processors[0].queue_frame(frame, DOWNSTREAM)

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


# --- VAD and endpointing -----------------------------------------------------------------
@dataclass(frozen=True)
class EndpointingConfig:
    """When speech starts and when a turn ends (milliseconds of input audio)."""

    threshold: float = 0.5
    neg_threshold: float = 0.35
    start_ms: float = 160.0
    stop_silence_ms: float = 500.0
    min_speech_ms: float = 250.0
    prefix_padding_ms: float = 300.0
    max_turn_ms: float = 30_000.0
    interrupt_on_speech: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.neg_threshold <= self.threshold <= 1.0:
            raise ValueError("need 0 <= neg_threshold <= threshold <= 1")


class VADProcessor(FrameProcessor):
    """Finds turns in `AudioIn`: emits BargeIn + SpeechStarted, then SpeechStopped.

    Speech starts after `start_ms` of consecutive windows above `threshold`; the turn ends
    after `stop_silence_ms` below `neg_threshold`. A turn with less than `min_speech_ms` of
    voiced audio ends with `accepted=False`. Input audio is passed on unchanged.
    """

    interruptible = False
    _INLINE_WINDOWS = 8  # larger inputs go to a worker thread

    def __init__(
        self,
        vad: VoiceActivityDetector,
        config: EndpointingConfig | None = None,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.config = config or EndpointingConfig()
        self._vad = vad
        self._stream = vad.new_stream()
        self._window_ms = vad.window_samples * 1000.0 / vad.sample_rate
        self._resampler: Resampler | None = None
        self._rate: int | None = None
        self._history = bytearray()  # recent input audio, for the pre-roll
        self._history_start_ms = 0.0
        self._received_ms = 0.0
        self._vad_ms = 0.0  # end of the last window classified
        self._reset_turn()

    def _reset_turn(self) -> None:
        self.speaking = False
        self._onset_ms = 0.0
        self._onset_start_ms = 0.0
        self._voiced_ms = 0.0
        self._silence_ms = 0.0
        self._speech_start_ms = 0.0
        self._last_speech_end_ms = 0.0

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Classify audio and emit turn events after the audio they concern."""
        if not isinstance(frame, AudioIn) or direction is UPSTREAM:
            await self.push_frame(frame, direction)
            return
        check_pcm16(frame.pcm)
        self._accept_rate(frame.sample_rate)
        self._remember(frame.pcm, frame.sample_rate)
        await self.push_frame(frame)
        for event in self._classify(await self._probabilities(frame.pcm)):
            await self._emit(event, frame.sample_rate)

    def _accept_rate(self, rate: int) -> None:
        if rate == self._rate:
            return
        self._rate = rate
        self._resampler = (
            None if rate == self._vad.sample_rate else Resampler(rate, self._vad.sample_rate)
        )
        self._history.clear()
        self._history_start_ms = self._received_ms

    def _remember(self, pcm: bytes, rate: int) -> None:
        self._history += pcm
        self._received_ms += duration_seconds(pcm, rate) * 1000.0
        keep_ms = self.config.prefix_padding_ms + self.config.start_ms + 2000.0
        excess = len(self._history) - int(keep_ms / 1000.0 * rate) * 2
        if excess > 0 and not self.speaking:
            del self._history[:excess]
            self._history_start_ms += excess / 2 / rate * 1000.0

    async def _probabilities(self, pcm: bytes) -> list[float]:
        audio = self._resampler.push(pcm) if self._resampler else pcm
        if len(audio) // 2 <= self._INLINE_WINDOWS * self._vad.window_samples:
            return self._stream.process(audio)
        return await asyncio.to_thread(self._stream.process, audio)

    def _classify(self, probabilities: list[float]) -> list[tuple[str, float]]:
        cfg, events = self.config, []
        for p in probabilities:
            start, self._vad_ms = self._vad_ms, self._vad_ms + self._window_ms
            if not self.speaking:
                if p >= cfg.threshold:
                    self._onset_start_ms = start if self._onset_ms == 0 else self._onset_start_ms
                    self._onset_ms += self._window_ms
                else:
                    self._onset_ms = 0.0
                if self._onset_ms >= cfg.start_ms:
                    self.speaking = True
                    self._speech_start_ms = self._onset_start_ms
                    self._voiced_ms, self._silence_ms = self._onset_ms, 0.0
                    self._last_speech_end_ms = self._vad_ms
                    events.append(("start", self._onset_start_ms))
                continue
            if p >= cfg.neg_threshold:
                self._silence_ms, self._last_speech_end_ms = 0.0, self._vad_ms
                self._voiced_ms += self._window_ms if p >= cfg.threshold else 0.0
            else:
                self._silence_ms += self._window_ms
            too_long = self._vad_ms - self._speech_start_ms >= cfg.max_turn_ms
            if self._silence_ms >= cfg.stop_silence_ms or too_long:
                events.append(("stop", self._vad_ms))
                self.speaking = False
                self._onset_ms = 0.0
        return events

    async def _emit(self, event: tuple[str, float], rate: int) -> None:
        kind, _at = event
        if kind == "start":
            audio_start = max(
                self._history_start_ms, self._speech_start_ms - self.config.prefix_padding_ms
            )
            offset = int((audio_start - self._history_start_ms) / 1000.0 * rate) * 2
            if self.config.interrupt_on_speech:
                await self.push_frame(BargeIn())
            await self.push_frame(
                SpeechStarted(
                    audio_start_ms=audio_start,
                    preroll=bytes(self._history[offset:]),
                    sample_rate=rate,
                )
            )
            return
        speech_ms = self._voiced_ms
        accepted = speech_ms >= self.config.min_speech_ms
        await self.push_frame(
            SpeechStopped(
                audio_end_ms=self._last_speech_end_ms,
                speech_ms=speech_ms,
                silence_ms=self._silence_ms,
                accepted=accepted,
            )
        )
        if accepted:
            await self.report_metric("endpointing_seconds", self._silence_ms / 1000.0)


# --- speech-to-text ----------------------------------------------------------------------
class STTProcessor(FrameProcessor):
    """Collects each turn's audio between SpeechStarted and SpeechStopped and transcribes it.

    `AudioIn` stops here (the turn's audio travels on in `TranscriptFinal.audio`). With
    `partial_interval_ms` set and an engine that supports it, provisional transcripts are
    emitted while the user is still speaking.
    """

    interruptible = False  # what the user said must be transcribed even during a barge-in

    def __init__(
        self,
        stt: SpeechToText,
        *,
        language: str | None = None,
        partial_interval_ms: float | None = None,
        trailing_pad_ms: float = 200.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._stt = stt
        self._language = language
        self._partial_interval_ms = partial_interval_ms
        self._trailing_pad_ms = trailing_pad_ms
        self._collecting = False
        self._audio = bytearray()
        self._audio_start_ms = 0.0
        self._rate = 16000
        self._partial_task: asyncio.Task[None] | None = None
        self._partial_at_bytes = 0

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Buffer the turn's audio and transcribe it when the turn ends."""
        if isinstance(frame, AudioIn):
            if self._collecting and frame.sample_rate == self._rate:
                self._audio += frame.pcm
                self._maybe_start_partial()
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, SpeechStarted):
            self._collecting, self._rate = True, frame.sample_rate
            self._audio = bytearray(frame.preroll)
            self._audio_start_ms, self._partial_at_bytes = frame.audio_start_ms, 0
        elif isinstance(frame, SpeechStopped) and self._collecting:
            self._collecting = False
            await self._cancel_partial()
            if frame.accepted:
                keep_ms = frame.audio_end_ms + self._trailing_pad_ms - self._audio_start_ms
                await self._transcribe(bytes(self._audio[: int(keep_ms / 1000.0 * self._rate) * 2]))
            self._audio = bytearray()

    async def _transcribe(self, audio: bytes) -> None:
        started = time.perf_counter()
        with tracer().start_as_current_span("stt.transcribe") as span:
            span.set_attribute("vocalis.stt.engine", self._stt.name)
            transcript = await self._stt.transcribe(audio, self._rate, self._language)
        seconds = time.perf_counter() - started
        audio_seconds = duration_seconds(audio, self._rate)
        await self.report_metric("stt_seconds", seconds)
        if audio_seconds > 0:
            await self.report_metric("stt_real_time_factor", seconds / audio_seconds)
        await self.push_frame(
            TranscriptFinal(
                text=transcript.text,
                language=transcript.language,
                audio=audio,
                sample_rate=self._rate,
                stt_seconds=seconds,
            )
        )

    def _maybe_start_partial(self) -> None:
        if self._partial_interval_ms is None or not isinstance(self._stt, PartialTranscriber):
            return
        if self._partial_task is not None and not self._partial_task.done():
            return
        step = int(self._partial_interval_ms / 1000.0 * self._rate) * 2
        if len(self._audio) - self._partial_at_bytes < step:
            return
        self._partial_at_bytes = len(self._audio)
        self._partial_task = asyncio.create_task(self._partial(self._stt, bytes(self._audio)))

    async def _partial(self, stt: PartialTranscriber, audio: bytes) -> None:
        try:
            text = await stt.transcribe_partial(audio, self._rate, self._language)
        except Exception:  # partials are best effort; the final transcript still comes
            logger.exception("partial transcription failed")
            return
        if text and self._collecting:
            await self.push_frame(TranscriptPartial(text=text))

    async def _cancel_partial(self) -> None:
        task, self._partial_task = self._partial_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        """Cancel any partial transcription, then the worker."""
        await self._cancel_partial()
        await super().stop()


# --- agent -------------------------------------------------------------------------------
class AgentProcessor(FrameProcessor):
    """Answers each non-empty final transcript with the injected `Responder`'s text deltas."""

    def __init__(self, respond: Responder, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self._respond = respond

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Pass the transcript on, then stream the reply as `LLMTextDelta`s."""
        await self.push_frame(frame, direction)
        if isinstance(frame, TranscriptFinal) and frame.text.strip():
            await self._reply(frame.text)

    async def _reply(self, text: str) -> None:
        response_id = new_id("resp")
        await self.push_frame(ResponseStarted(response_id=response_id, transcript=text))
        started, first = time.perf_counter(), True
        async with _closing(self._respond(text)) as deltas:
            async for delta in deltas:
                if not delta:
                    continue
                if first:
                    first = False
                    await self.report_metric("first_token_seconds", time.perf_counter() - started)
                await self.push_frame(LLMTextDelta(text=delta, response_id=response_id))
        await self.push_frame(EndOfResponse(response_id=response_id))


class SentenceChunkerProcessor(FrameProcessor):
    """Turns the reply's text deltas into `SpeakableText` sentences as soon as each is complete."""

    def __init__(self, chunker: SentenceChunker | None = None, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self._chunker = chunker or SentenceChunker()

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Split deltas; flush what is left at the end of the reply."""
        if isinstance(frame, ResponseStarted):
            self._chunker.reset()
            await self.push_frame(frame, direction)
        elif isinstance(frame, LLMTextDelta):
            await self.push_frame(frame, direction)
            for sentence in self._chunker.push(frame.text):
                await self.push_frame(SpeakableText(text=sentence, response_id=frame.response_id))
        elif isinstance(frame, EndOfResponse):
            for sentence in self._chunker.flush():
                await self.push_frame(SpeakableText(text=sentence, response_id=frame.response_id))
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def on_interruption(self, frame: Interruption, dropped: list[Frame]) -> None:
        """Forget the half-finished sentence."""
        self._chunker.reset()


# --- text-to-speech ----------------------------------------------------------------------
class TTSProcessor(FrameProcessor):
    """Synthesises each `SpeakableText`, streaming `TTSAudio` at `sample_rate` as it is produced.

    Each sentence's audio is framed by `TTSSentenceStart`/`TTSSentenceEnd`, so a later stage
    can tell which text the user heard. An interruption closes the engine's stream at once.
    """

    def __init__(
        self,
        tts: TextToSpeech,
        *,
        voice: str | None = None,
        sample_rate: int = 24000,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._tts = tts
        self.voice = voice
        self.sample_rate = sample_rate

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Speak sentences; pass everything else on in order."""
        if isinstance(frame, SpeakableText):
            await self._speak(frame)
        else:
            await self.push_frame(frame, direction)

    async def _speak(self, frame: SpeakableText) -> None:
        await self.push_frame(TTSSentenceStart(text=frame.text, response_id=frame.response_id))
        resampler = Resampler(self._tts.sample_rate, self.sample_rate)
        started, sent_bytes = time.perf_counter(), 0
        with tracer().start_as_current_span("tts.synthesize") as span:
            span.set_attribute("vocalis.tts.engine", self._tts.name)
            async with _closing(self._tts.synthesize_stream(frame.text, self.voice)) as chunks:
                async for chunk in chunks:
                    if sent_bytes == 0:
                        await self.report_metric("tts_ttfb_seconds", time.perf_counter() - started)
                    sent_bytes += await self._send(resampler.push(chunk), frame.response_id)
            sent_bytes += await self._send(resampler.flush(), frame.response_id)
        audio_ms = sent_bytes / 2 / self.sample_rate * 1000.0
        await self.push_frame(
            TTSSentenceEnd(text=frame.text, audio_ms=audio_ms, response_id=frame.response_id)
        )

    async def _send(self, pcm: bytes, response_id: str) -> int:
        if pcm:
            await self.push_frame(
                TTSAudio(pcm=pcm, sample_rate=self.sample_rate, response_id=response_id)
            )
        return len(pcm)


# --- playout -----------------------------------------------------------------------------
@dataclass
class _SpokenSentence:
    text: str
    start_ms: float
    audio_ms: float = 0.0


def spoken_text(sentences: Sequence[tuple[str, float, float]], played_ms: float) -> str:
    """The text heard after `played_ms` of a reply made of (text, start_ms, audio_ms) sentences.

    Whole sentences whose audio was fully played, then the share of the next sentence's
    words proportional to how much of its audio was played (rounded down).
    """
    parts: list[str] = []
    for text, start_ms, audio_ms in sentences:
        if played_ms >= start_ms + audio_ms - 0.5:  # half a millisecond absorbs float sums
            parts.append(text)
            continue
        if played_ms > start_ms and audio_ms > 0:
            words = text.split()
            parts.append(" ".join(words[: int(len(words) * (played_ms - start_ms) / audio_ms)]))
        break
    return " ".join(part for part in parts if part)


class AudioPlayout(FrameProcessor):
    """Releases agent audio at real-time pace, `lead_ms` ahead of the listener, and accounts
    for what was heard.

    Pacing keeps at most `lead_ms` of audio in the client's buffer, so a barge-in silences
    the agent within that bound, and the server knows how much was played. At the end of
    each reply (or on interruption) it emits `ResponseSpoken` with the text actually heard.
    It also reports `turn_latency_seconds` (end of user speech → first agent audio out) and
    `barge_ins`. With `realtime=False` audio passes straight through and everything sent
    counts as heard (for consumers that are not listeners: tests, files).
    """

    def __init__(
        self,
        *,
        lead_ms: float = 200.0,
        realtime: bool = True,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.lead_ms = lead_ms
        self.realtime = realtime
        self._clock = clock
        self._response_id: str | None = None
        self._sentences: list[_SpokenSentence] = []
        self._sent_ms = 0.0
        self._playback_end = 0.0  # clock time at which everything sent has been played
        self._speech_stopped_at: float | None = None

    def played_ms(self) -> float:
        """Milliseconds of the current reply the listener has heard by now."""
        if not self.realtime:
            return self._sent_ms
        unplayed = max(0.0, self._playback_end - self._clock()) * 1000.0
        return max(0.0, self._sent_ms - unplayed)

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Pace audio; track sentences; report what was heard at the end of a reply."""
        if isinstance(frame, SpeechStopped) and frame.accepted:
            self._speech_stopped_at = frame.ts
        elif isinstance(frame, ErrorFrame) or (
            isinstance(frame, TranscriptFinal) and not frame.text.strip()
        ):
            self._speech_stopped_at = None  # that turn gets no reply to time
        elif isinstance(frame, ResponseStarted):
            self._begin(frame.response_id)
        elif isinstance(frame, TTSSentenceStart):
            self._sentences.append(_SpokenSentence(frame.text, self._sent_ms))
        elif isinstance(frame, TTSAudio):
            await self._play(frame)
            return
        elif isinstance(frame, EndOfResponse):
            if self.realtime:
                await asyncio.sleep(max(0.0, self._playback_end - self._clock()))
            await self._finish(interrupted=False)
        await self.push_frame(frame, direction)

    def _begin(self, response_id: str) -> None:
        self._response_id = response_id
        self._sentences, self._sent_ms = [], 0.0

    async def _play(self, frame: TTSAudio) -> None:
        ahead = self._playback_end - self._clock()
        if self.realtime and ahead * 1000.0 > self.lead_ms:
            await asyncio.sleep(ahead - self.lead_ms / 1000.0)
        now = self._clock()
        if self._sent_ms == 0.0 and self._speech_stopped_at is not None:
            await self.report_metric("turn_latency_seconds", now - self._speech_stopped_at)
            self._speech_stopped_at = None
        await self.push_frame(frame)
        self._playback_end = max(now, self._playback_end) + frame.duration_ms / 1000.0
        self._sent_ms += frame.duration_ms
        if self._sentences:
            self._sentences[-1].audio_ms += frame.duration_ms

    async def _finish(self, *, interrupted: bool, extra_ms: float = 0.0) -> None:
        if self._response_id is None:
            return
        played = self.played_ms() if interrupted else self._sent_ms
        if self._sentences:
            self._sentences[-1].audio_ms += extra_ms
        if interrupted:
            heard = spoken_text([(s.text, s.start_ms, s.audio_ms) for s in self._sentences], played)
        else:
            heard = " ".join(s.text for s in self._sentences)
        await self.push_frame(
            ResponseSpoken(
                response_id=self._response_id, text=heard, audio_ms=played, interrupted=interrupted
            )
        )
        self._response_id = None
        self._sentences, self._sent_ms, self._playback_end = [], 0.0, 0.0

    async def on_interruption(self, frame: Interruption, dropped: list[Frame]) -> None:
        """Stop at once and report the part of the reply that was heard."""
        if self._response_id is not None and isinstance(frame, BargeIn):
            await self.report_metric("barge_ins", 1.0)
        # Audio of the current sentence still queued counts towards its length, so the
        # heard share of that sentence is measured against its whole duration.
        unsent_ms = 0.0
        for queued in dropped:
            if isinstance(queued, TTSSentenceStart | TTSSentenceEnd):
                break
            if isinstance(queued, TTSAudio):
                unsent_ms += queued.duration_ms
        await self._finish(interrupted=True, extra_ms=unsent_ms)
        # Replies that never reached playout were not heard at all; say so explicitly.
        for queued in dropped:
            if isinstance(queued, ResponseStarted):
                await self.push_frame(
                    ResponseSpoken(
                        response_id=queued.response_id, text="", audio_ms=0.0, interrupted=True
                    )
                )
