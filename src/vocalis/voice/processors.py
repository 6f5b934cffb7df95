"""Frame processors: the base class, the pipeline, and the stages that need no agent runtime.

A processor does one thing and pushes frames on. Each has an input queue and a worker task,
so a slow stage (STT, pacing audio) never holds up the stages before it. System frames skip
the queue: on an `Interruption` every interruptible processor cancels the frame it is
working on, drops queued reply frames, runs its `on_interruption` hook and passes the
interruption on. Failures become `ErrorFrame`s and the pipeline keeps running.

The voice path (assembled in `voice.pipeline`): VADProcessor → STTProcessor → the agent →
SentenceChunkerProcessor → TTSProcessor → AudioPlayout → (the conversation's output).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from vocalis.core.audio import Resampler, check_pcm16, duration_seconds, resample
from vocalis.ports.speech import TurnDetector
from vocalis.ports.stt import PartialTranscriber, SpeechToText, Transcript, UtteranceTranscriber
from vocalis.ports.tts import TextToSpeech
from vocalis.ports.vad import VoiceActivityDetector
from vocalis.voice.completeness import Words, words_verdict
from vocalis.voice.frames import (
    AudioIn,
    BargeIn,
    CancelFrame,
    ControlFrame,
    EndFrame,
    EndOfResponse,
    ErrorFrame,
    Frame,
    Interruption,
    LLMTextDelta,
    MetricFrame,
    PausePlayback,
    ResponseSpoken,
    ResponseStarted,
    ResumePlayback,
    SpeakableText,
    SpeculationCommitted,
    SpeechOnset,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    SystemFrame,
    TranscriptFinal,
    TranscriptPartial,
    TTSAudio,
    TTSSentenceEnd,
    TTSSentenceStart,
    TurnTextHint,
)
from vocalis.voice.sentences import SentenceChunker
from vocalis.voice.turns import VoiceTurn, turn_span

logger = logging.getLogger(__name__)

MetricsObserver = Callable[[str, str, float], None]
"""Called with (processor name, metric name, value) for every measurement."""

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


async def task_ended(task: asyncio.Task[Any]) -> None:
    """Wait until `task` has ended, however it ends (a cancelled one too). A cancellation of
    the caller meanwhile is raised: swallowing it too left a stage being stopped running on
    (on Python 3.11 `asyncio.wait_for`, which redis-py uses, can lose a cancellation)."""
    current = asyncio.current_task()
    cancels = current.cancelling() if current is not None else 0
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > cancels:
            raise


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
            await task_ended(worker)

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
    # Speculation: silence after which a pause is reported (`SpeechPaused`); 0 = never.
    pause_ms: float = 0.0
    # Speech that reports an onset (`SpeechOnset`: the agent's audio is held at once).
    onset_ms: float = 64.0
    # Voiced speech in a turn after which `SpeechOnset(long=True)` says it is no backchannel.
    long_speech_ms: float = 900.0
    # Model-based end of turn (`semantic_vad`): at this much silence the turn detector
    # decides; the silence that ends the turn then follows its probability (`turn_wait_ms`)
    # up to `max_silence_ms`. None = silence alone (`stop_silence_ms`) ends turns.
    turn_decision_ms: float | None = None
    turn_threshold: float = 0.8
    max_silence_ms: float = 3000.0
    # The words' half (`TurnTextHint`, from the pause's speculative transcript): words that
    # cannot end a turn make it wait at least `incomplete_wait_ms`, words that read as going
    # on (a verb without its object) at least `open_wait_ms`; a question that reads finished
    # ends it at the decision unless the model is all but sure it is not (`question_floor`).
    # A decision to end waits up to `text_hint_wait_ms` more for a hint still being
    # transcribed (the speculative reply needs that transcript anyway: the wait costs the
    # answer little).
    incomplete_wait_ms: float = 1500.0
    open_wait_ms: float = 1000.0
    question_floor: float = 0.05
    text_hint_wait_ms: float = 400.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.neg_threshold <= self.threshold <= 1.0:
            raise ValueError("need 0 <= neg_threshold <= threshold <= 1")
        if self.turn_decision_ms is not None and not (
            0.0 < self.turn_decision_ms <= self.max_silence_ms
        ):
            raise ValueError("need 0 < turn_decision_ms <= max_silence_ms")


def turn_wait_ms(probability: float, config: EndpointingConfig) -> float:
    """The silence that ends a turn once the turn model said `probability` at a pause.

    At or above `turn_threshold` the turn ends at the decision; below it the wait grows
    with the square root of the shortfall (a confident "unfinished" waits longest), up to
    the `max_silence_ms` cap.
    """
    decision = config.turn_decision_ms or 0.0
    if probability >= config.turn_threshold:
        return decision
    shortfall = (config.turn_threshold - probability) / config.turn_threshold
    return decision + (config.max_silence_ms - decision) * min(1.0, shortfall) ** 0.5


def turn_wait_with_words(
    probability: float, words: Words | None, config: EndpointingConfig
) -> float:
    """The silence that ends a turn once the model said `probability` and the pause's
    transcript gave `words` (None: no verdict yet): `turn_wait_ms`, held to at least
    `incomplete_wait_ms` or `open_wait_ms` by words that go on, cut to the decision by a
    finished question unless the model is below `question_floor`; never past the cap."""
    wait = turn_wait_ms(probability, config)
    if words is Words.INCOMPLETE:
        return min(config.max_silence_ms, max(wait, config.incomplete_wait_ms))
    if words is Words.OPEN:
        return min(config.max_silence_ms, max(wait, config.open_wait_ms))
    if words is Words.COMPLETE and probability >= config.question_floor:
        return config.turn_decision_ms or 0.0
    return wait


@dataclass(kw_only=True)
class _TurnDecided(ControlFrame):
    """The turn model's answer for pause number `pause`, back in the VAD's own queue."""

    pause: int
    probability: float | None  # None: the model failed
    seconds: float


class VADProcessor(FrameProcessor):
    """Finds turns in `AudioIn`: emits BargeIn + SpeechStarted, then SpeechStopped.

    Speech starts after `start_ms` of consecutive windows above `threshold`; the turn ends
    after `stop_silence_ms` below `neg_threshold`. A turn with less than `min_speech_ms` of
    voiced audio ends with `accepted=False`. Input audio is passed on unchanged.

    With a `turn` detector and `turn_decision_ms` set, silence alone no longer ends the
    turn: at `turn_decision_ms` of silence the turn's audio (its last 8 s) goes to the
    model in the background, and the turn ends once the silence reaches what the model's
    probability asks for (`turn_wait_ms`) or the `max_silence_ms` cap, whichever is first.
    Speech before that forgets the decision; the next pause asks again.
    """

    interruptible = False
    _INLINE_WINDOWS = 8  # larger inputs go to a worker thread
    _TURN_AUDIO_S = 8.0  # what the turn model hears, at most

    def __init__(
        self,
        vad: VoiceActivityDetector,
        config: EndpointingConfig | None = None,
        *,
        turn: TurnDetector | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.config = config or EndpointingConfig()
        self.turn_detector = turn
        self._recent = bytearray()  # the last seconds of audio at the VAD's rate
        self._pause = 0  # numbers the pauses, so a late decision is recognised as stale
        self._deciding = False
        self._decided = False
        self._probability: float | None = None
        self._decision_ms: float | None = None
        self._stopped_decision: tuple[float | None, float | None] = (None, None)
        self._decision_task: asyncio.Task[None] | None = None
        # The words' verdict on the current pause: (audio_end_ms of the pause, complete).
        self._hint: tuple[float, Words] | None = None
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
        self._paused = False  # a `SpeechPaused` was reported and speech has not resumed
        self._onset_reported = False
        self._long_reported = False
        self._onset_ms = 0.0
        self._onset_start_ms = 0.0
        self._voiced_ms = 0.0
        self._silence_ms = 0.0
        self._speech_start_ms = 0.0
        self._last_speech_end_ms = 0.0

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Classify audio and emit turn events after the audio they concern."""
        if isinstance(frame, _TurnDecided):
            await self._on_decision(frame)
            return
        if isinstance(frame, TurnTextHint):
            await self._on_text_hint(frame)
            return
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
        if self._model_decides():
            self._recent += audio
            excess = len(self._recent) - int(self._TURN_AUDIO_S * self._vad.sample_rate) * 2
            if excess > 0:
                del self._recent[:excess]
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
                    if self._onset_reported:
                        events.append(("onset_cancelled", start))
                        self._onset_reported = False
                    self._onset_ms = 0.0
                if not self._onset_reported and 0 < cfg.onset_ms <= self._onset_ms:
                    self._onset_reported = True
                    events.append(("onset", start))
                if self._onset_ms >= cfg.start_ms:
                    self._onset_reported = self._long_reported = False
                    self.speaking = True
                    self._speech_start_ms = self._onset_start_ms
                    self._voiced_ms, self._silence_ms = self._onset_ms, 0.0
                    self._last_speech_end_ms = self._vad_ms
                    events.append(("start", self._onset_start_ms))
                continue
            if p >= cfg.neg_threshold:
                if self._paused and p >= cfg.threshold:
                    self._paused = False
                    events.append(("resume", start))
                self._silence_ms, self._last_speech_end_ms = 0.0, self._vad_ms
                self._voiced_ms += self._window_ms if p >= cfg.threshold else 0.0
                self._forget_decision()
                if not self._long_reported and 0 < cfg.long_speech_ms <= self._voiced_ms:
                    self._long_reported = True
                    events.append(("long", start))
            else:
                self._silence_ms += self._window_ms
            too_long = self._vad_ms - self._speech_start_ms >= cfg.max_turn_ms
            if self._turn_over(too_long):
                self._stopped_decision = (self._probability, self._decision_ms)
                self._forget_decision()
                events.append(("stop", self._vad_ms))
                self.speaking = self._paused = False
                self._onset_ms = 0.0
            elif (
                not self._paused
                and 0 < cfg.pause_ms <= self._silence_ms
                and self._voiced_ms >= cfg.min_speech_ms
            ):
                self._paused = True
                events.append(("pause", self._last_speech_end_ms))
            if (
                self.speaking
                and self._model_decides()
                and not (self._deciding or self._decided)
                and self._silence_ms >= (cfg.turn_decision_ms or 0.0)
            ):
                self._deciding = True
                events.append(("decide", self._vad_ms))
        return events

    # --- model-based end of turn ------------------------------------------------------
    def _model_decides(self) -> bool:
        return self.turn_detector is not None and self.config.turn_decision_ms is not None

    def _turn_over(self, too_long: bool) -> bool:
        """Whether the silence so far ends the turn (see the class docstring)."""
        cfg = self.config
        if too_long:
            return True
        if not self._model_decides():
            return self._silence_ms >= cfg.stop_silence_ms
        if self._silence_ms >= cfg.max_silence_ms:
            return True
        if not self._decided:
            return False
        if self._probability is None:  # the model failed: silence decides
            return self._silence_ms >= cfg.stop_silence_ms
        return self._silence_ms >= self._wait_ms(self._probability)

    def _wait_ms(self, probability: float) -> float:
        """The model's wait, corrected by what the words say (`turn_wait_with_words`)."""
        cfg = self.config
        hint = self._current_hint()
        wait = turn_wait_with_words(probability, hint, cfg)
        if hint is None and self._hint_pending() and wait <= (cfg.turn_decision_ms or 0.0):
            # The model says end; the pause's words are still being transcribed.
            return wait + cfg.text_hint_wait_ms
        return wait

    def _current_hint(self) -> Words | None:
        """The words' verdict on the current silence (None: none has come back for it)."""
        hint = self._hint
        if hint is None or hint[0] != self._last_speech_end_ms:
            return None
        return hint[1]

    def _hint_pending(self) -> bool:
        """A pause was reported for this silence and its words have not come back yet."""
        hint = self._hint
        return self._paused and (hint is None or hint[0] != self._last_speech_end_ms)

    async def _on_text_hint(self, frame: TurnTextHint) -> None:
        if not self.speaking or frame.audio_end_ms != self._last_speech_end_ms:
            return  # stale: the user spoke again, or the turn already ended
        self._hint = (frame.audio_end_ms, frame.words)
        await self.report_metric(f"turn_text_{frame.words.value}", 1.0)
        if self._decided and self._turn_over(False):
            await self._end_turn_now()

    async def _end_turn_now(self) -> None:
        self._stopped_decision = (self._probability, self._decision_ms)
        self._forget_decision()
        self.speaking = self._paused = False
        self._onset_ms = 0.0
        await self._emit(("stop", self._vad_ms), self._rate or self._vad.sample_rate)

    def _forget_decision(self) -> None:
        """Speech went on (or the turn ended): a decision in flight is stale."""
        if self._deciding or self._decided:
            self._pause += 1
        self._deciding = self._decided = False
        self._probability = self._decision_ms = None

    def _start_decision(self) -> None:
        detector = self.turn_detector
        if detector is None:
            return
        rate = self._vad.sample_rate
        heard_ms = self._vad_ms - self._speech_start_ms + self.config.prefix_padding_ms
        audio = bytes(self._recent[-int(heard_ms / 1000.0 * rate) * 2 :])
        if detector.sample_rate != rate:
            audio = resample(audio, rate, detector.sample_rate)
        self._decision_task = asyncio.create_task(self._decide(detector, audio, self._pause))

    async def _decide(self, detector: TurnDetector, audio: bytes, pause: int) -> None:
        started = time.perf_counter()
        probability: float | None
        try:
            probability = await detector.end_of_turn_probability(audio)
        except Exception:  # the turn still ends: on plain silence
            logger.exception("turn detector %s failed", detector.name)
            probability = None
        seconds = time.perf_counter() - started
        await self.queue_frame(_TurnDecided(pause=pause, probability=probability, seconds=seconds))

    async def _on_decision(self, frame: _TurnDecided) -> None:
        if frame.pause != self._pause or not self.speaking or not self._deciding:
            return  # stale: the user spoke again, or the turn already ended
        self._deciding, self._decided = False, True
        self._probability, self._decision_ms = frame.probability, frame.seconds * 1000.0
        await self.report_metric("turn_decision_seconds", frame.seconds)
        if frame.probability is None:
            outcome = "failed"
        else:
            ends = frame.probability >= self.config.turn_threshold
            outcome = "end" if ends else "wait"
        await self.report_metric(f"turn_decisions_{outcome}", 1.0)
        if self._turn_over(False):
            await self._end_turn_now()

    async def stop(self) -> None:
        """Cancel a decision in flight, then the worker."""
        task, self._decision_task = self._decision_task, None
        if task is not None and not task.done():
            task.cancel()
            await task_ended(task)
        await super().stop()

    async def _emit(self, event: tuple[str, float], rate: int) -> None:
        kind, at = event
        if kind in ("onset", "onset_cancelled", "long"):
            if self.config.interrupt_on_speech:  # the interruption arbiter decides
                frame = SpeechOnset(cancelled=kind == "onset_cancelled", long=kind == "long")
                await self.push_frame(frame)
            return
        if kind == "pause":
            await self.push_frame(SpeechPaused(audio_end_ms=at, silence_ms=self._silence_ms))
            return
        if kind == "resume":
            await self.push_frame(SpeechResumed())
            return
        if kind == "decide":
            self._start_decision()
            return
        if kind == "start":
            audio_start = max(
                self._history_start_ms, self._speech_start_ms - self.config.prefix_padding_ms
            )
            offset = int((audio_start - self._history_start_ms) / 1000.0 * rate) * 2
            if self.config.interrupt_on_speech and self.config.onset_ms <= 0:
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
        probability, decision_ms = self._stopped_decision
        self._stopped_decision = (None, None)
        await self.push_frame(
            SpeechStopped(
                audio_end_ms=self._last_speech_end_ms,
                speech_ms=speech_ms,
                silence_ms=self._silence_ms,
                accepted=accepted,
                turn_probability=probability,
                turn_decision_ms=decision_ms,
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

    At each pause the speech since the last one is transcribed (for the speculative reply);
    a turn that ends there keeps those segments. A turn that went on after a pause is
    transcribed whole — at its next pause and at its end — while it is no longer than
    `whole_turn_max_s`: Whisper's cost is its encoder window, not the audio's length, so the
    whole turn costs about what its tail would, and it has no seams (a segment cut
    mid-sentence is sometimes completed by Whisper — "shipping take | to Canada take" — and
    the word doubled). Longer turns keep the segments and transcribe only the tail.
    """

    interruptible = False  # what the user said must be transcribed even during a barge-in

    def __init__(
        self,
        stt: SpeechToText,
        *,
        language: str | None = None,
        partial_interval_ms: float | None = None,
        trailing_pad_ms: float = 200.0,
        whole_turn_max_s: float = 8.0,
        span_attributes: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._stt = stt
        self._whole_turn_max_s = whole_turn_max_s
        self._span_attributes = dict(span_attributes or {})
        self._language = language
        self._partial_interval_ms = partial_interval_ms
        self._trailing_pad_ms = trailing_pad_ms
        self._collecting = False
        self._audio = bytearray()
        self._audio_start_ms = 0.0
        self._rate = 16000
        self._partial_task: asyncio.Task[None] | None = None
        self._partial_at_bytes = 0
        # Incremental transcription: the turn's audio up to its last pause is transcribed
        # at that pause (in segments cut at pauses), so the end of the turn only needs the tail.
        self._segments: list[str] = []
        self._cut_bytes = 0  # where the untranscribed tail begins
        self._resumed = False  # speech came after the last pause
        self._language_seen: str | None = None
        self._segment_seconds = 0.0  # transcribing the segments before the tail

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
            self._segments, self._cut_bytes, self._resumed = [], 0, False
            self._segment_seconds = 0.0
        elif isinstance(frame, SpeechPaused) and self._collecting:
            await self._pause(frame)
        elif isinstance(frame, SpeechResumed):
            self._resumed = True
        elif isinstance(frame, SpeechStopped) and self._collecting:
            self._collecting = False
            await self._cancel_partial()
            if frame.accepted:
                keep_ms = frame.audio_end_ms + self._trailing_pad_ms - self._audio_start_ms
                turn_audio = bytes(self._audio[: int(keep_ms / 1000.0 * self._rate) * 2])
                await self._transcribe(turn_audio, frame.turn)
            self._audio = bytearray()
            self._segments, self._cut_bytes = [], 0

    def _bytes_at(self, audio_ms: float) -> int:
        return max(0, int((audio_ms - self._audio_start_ms) / 1000.0 * self._rate) * 2)

    async def _pause(self, frame: SpeechPaused) -> None:
        """Transcribe the speech since the last pause; offer the turn so far for speculation,
        and tell the VAD upstream what the words say about the turn (`TurnTextHint`)."""
        end = min(len(self._audio), self._bytes_at(frame.audio_end_ms + self._trailing_pad_ms))
        if end <= self._cut_bytes:
            await self.push_frame(
                TurnTextHint(audio_end_ms=frame.audio_end_ms, words=Words.NONE), UPSTREAM
            )
            return
        started = time.perf_counter()
        # A turn that went on after an earlier pause is transcribed whole up to here while
        # it is short enough (see the class docs): no seam in the speculative reply's words,
        # the words' verdict or the transcript a confirmed turn keeps.
        whole = self._cut_bytes > 0 and end / (2 * self._rate) <= self._whole_turn_max_s
        start = 0 if whole else self._cut_bytes
        with turn_span(
            "stt.transcribe",
            frame.turn,
            self._span_attributes,
            **{
                "vocalis.stt.engine": self._stt.name,
                "vocalis.stt.segment": "pause_whole" if whole else "pause",
            },
        ):
            transcript = await self._live(bytes(self._audio[start:end]))
        self._language_seen = transcript.language
        if whole:
            self._segments = []
        if transcript.text.strip():
            self._segments.append(transcript.text.strip())
        # The next segment starts where the speech stopped (the pad is silence).
        self._cut_bytes = self._bytes_at(frame.audio_end_ms)
        self._resumed = False
        self._segment_seconds += time.perf_counter() - started
        await self.report_metric("stt_seconds", time.perf_counter() - started)
        text = " ".join(self._segments)
        words = words_verdict(text, transcript.language)
        await self.push_frame(TurnTextHint(audio_end_ms=frame.audio_end_ms, words=words), UPSTREAM)
        if text:
            await self.push_frame(
                TranscriptFinal(
                    text=text,
                    language=transcript.language,
                    audio=bytes(self._audio[:end]),
                    sample_rate=self._rate,
                    stt_seconds=time.perf_counter() - started,
                    turn=frame.turn,
                    speculative=True,
                )
            )

    async def _transcribe(self, audio: bytes, turn: VoiceTurn | None) -> None:
        started = time.perf_counter()
        attributes = self._span_attributes
        confirms = bool(self._segments) and not self._resumed
        tail = b"" if confirms else audio[self._cut_bytes :]
        language = self._language_seen
        texts = list(self._segments)
        if tail and texts and duration_seconds(audio, self._rate) <= self._whole_turn_max_s:
            tail, texts = audio, []  # short enough to transcribe whole: no seams
        if tail:
            with turn_span(
                "stt.transcribe", turn, attributes, **{"vocalis.stt.engine": self._stt.name}
            ):
                transcript = await self._live(tail)
            language = transcript.language
            if transcript.text.strip():
                texts.append(transcript.text.strip())
        seconds = time.perf_counter() - started
        if turn is not None:  # all of the turn's transcription, also what ran at its pauses
            turn.measure("stt", (seconds + self._segment_seconds) * 1000.0)
        audio_seconds = duration_seconds(tail, self._rate)
        if tail:
            await self.report_metric("stt_seconds", seconds)
        if audio_seconds > 0:
            await self.report_metric("stt_real_time_factor", seconds / audio_seconds)
        await self.push_frame(
            TranscriptFinal(
                text=" ".join(texts),
                language=language,
                audio=audio,
                sample_rate=self._rate,
                stt_seconds=seconds,
                turn=turn,
                confirms_speculation=confirms,
            )
        )

    async def _live(self, audio: bytes) -> Transcript:
        """A live utterance: the engine's short-utterance path when it has one."""
        if isinstance(self._stt, UtteranceTranscriber):
            return await self._stt.transcribe_utterance(audio, self._rate, self._language)
        return await self._stt.transcribe(audio, self._rate, self._language)

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
            await task_ended(task)

    async def stop(self) -> None:
        """Cancel any partial transcription, then the worker."""
        await self._cancel_partial()
        await super().stop()


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
        span_attributes: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._tts = tts
        self.voice = voice
        self.sample_rate = sample_rate
        self._span_attributes = dict(span_attributes or {})
        self._turns: dict[str, VoiceTurn] = {}  # the spoken turn each reply answers
        # Speculative replies: only the first sentence is synthesised before the turn is
        # confirmed; the frames after it wait here (by response id) for `SpeculationCommitted`.
        self._speculative: dict[str, list[Frame]] = {}
        self._spoken: set[str] = set()

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Speak sentences; pass everything else on in order."""
        response_id = getattr(frame, "response_id", None)
        if isinstance(frame, SpeculationCommitted):
            held = self._speculative.pop(frame.response_id, [])
            for queued in held:
                await self.process_frame(queued, DOWNSTREAM)
        elif response_id in self._speculative and (
            self._speculative[response_id] or response_id in self._spoken
        ):
            self._speculative[response_id].append(frame)  # after the first sentence: wait
            return
        if isinstance(frame, SpeakableText):
            await self._speak(frame)
            if frame.response_id in self._speculative:
                self._spoken.add(frame.response_id)
            return
        if isinstance(frame, ResponseStarted):
            if frame.turn is not None:
                self._turns[frame.response_id] = frame.turn
            if frame.speculative:
                self._speculative[frame.response_id] = []
        elif isinstance(frame, EndOfResponse):
            self._turns.pop(frame.response_id, None)
            self._speculative.pop(frame.response_id, None)
            self._spoken.discard(frame.response_id)
        await self.push_frame(frame, direction)

    async def on_interruption(self, frame: Interruption, dropped: list[Frame]) -> None:
        """Forget the replies that were cut off."""
        self._turns.clear()
        self._speculative.clear()
        self._spoken.clear()

    async def _speak(self, frame: SpeakableText) -> None:
        await self.push_frame(TTSSentenceStart(text=frame.text, response_id=frame.response_id))
        resampler = Resampler(self._tts.sample_rate, self.sample_rate)
        started, sent_bytes = time.perf_counter(), 0
        turn = self._turns.get(frame.response_id)
        engine = {"vocalis.tts.engine": self._tts.name}
        with turn_span("tts.synthesize", turn, self._span_attributes, **engine):
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
_REPLY_FRAMES = (ResponseStarted, TTSSentenceStart, TTSAudio, TTSSentenceEnd, EndOfResponse)


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
    It also reports `barge_ins`. With `realtime=False` audio passes straight through and everything sent
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
        # While held (`PausePlayback`) the reply's frames wait in `_backlog`; the user's
        # frames go on, so the transport still learns at once that the user speaks.
        self.held = False
        self._backlog: list[Frame] = []

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        """Hold or release the audio at once; everything else as usual."""
        if isinstance(frame, PausePlayback):
            self.held = True
        elif isinstance(frame, ResumePlayback) and self.held:
            self.held = False
            waiting = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
            for held in self._backlog:
                self._queue.put_nowait((held, DOWNSTREAM))
            for item in waiting:
                self._queue.put_nowait(item)
            self._backlog = []
        await super().queue_frame(frame, direction)

    def played_ms(self) -> float:
        """Milliseconds of the current reply the listener has heard by now."""
        if not self.realtime:
            return self._sent_ms
        unplayed = max(0.0, self._playback_end - self._clock()) * 1000.0
        return max(0.0, self._sent_ms - unplayed)

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Pace audio; track sentences; report what was heard at the end of a reply."""
        if self.held and isinstance(frame, _REPLY_FRAMES):
            self._backlog.append(frame)
            return
        if isinstance(frame, ResponseStarted):
            self._begin(frame.response_id)
        elif isinstance(frame, TTSSentenceStart):
            self._sentences.append(_SpokenSentence(frame.text, self._sent_ms))
        elif isinstance(frame, TTSAudio):
            await self._play(frame)
            return
        elif isinstance(frame, EndOfResponse):
            if self.realtime:
                await asyncio.sleep(max(0.0, self._playback_end - self._clock()))
            if self.held:  # a held reply ends once it is resumed (or cut off)
                self._backlog.append(frame)
                return
            await self._finish(interrupted=False)
        await self.push_frame(frame, direction)

    def _begin(self, response_id: str) -> None:
        self._response_id = response_id
        self._sentences, self._sent_ms = [], 0.0

    async def _play(self, frame: TTSAudio) -> None:
        ahead = self._playback_end - self._clock()
        if self.realtime and ahead * 1000.0 > self.lead_ms:
            await asyncio.sleep(ahead - self.lead_ms / 1000.0)
        if self.held:
            self._backlog.insert(0, frame)
            return
        now = self._clock()
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
        dropped = [*self._backlog, *dropped]
        self.held, self._backlog = False, []
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
