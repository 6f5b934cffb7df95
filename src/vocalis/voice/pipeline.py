"""The assembled voice pipeline of one conversation.

    transport in → VAD/endpointing → STT → agent → sentence chunker → speech gate → TTS
                 → playout → transport out

The voice conversation (`voice.conversation`) feeds `AudioIn` frames (PCM16) at the head;
with manual turn detection it skips the VAD and hands each committed turn straight to the
STT stage. The turn labeller names each detected turn and begins it (`voice.turns`: its
span and latency). The agent stage turns final transcripts (and typed messages) into
replies through an injected `ReplyRunner`, so this module knows nothing about conversations
or transports. The output processor at the end turns frames into the conversation's events.

Frames added here on top of `voice.frames`: `UserSpeechStarted` (speech start with the id
of the user item it becomes), `UserText` (a typed message to answer with the next reply),
`RespondRequest` (answer now) and `VoiceResponseStarted` (a reply with its ids and
modalities).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import structlog

from vocalis.core.errors import REALTIME_NO_INPUT
from vocalis.core.ids import new_id
from vocalis.core.metrics import (
    STT_LATENCY,
    STT_REAL_TIME_FACTOR,
    TTS_TIME_TO_FIRST_BYTE,
    VOICE_BARGE_INS,
    VOICE_INTERRUPTIONS,
    VOICE_SPECULATIONS,
    VOICE_TURN_DECISION,
    VOICE_TURN_DECISIONS,
    VOICE_TURN_TEXT,
)
from vocalis.ports.speech import VoiceEngines
from vocalis.voice.frames import (
    BargeIn,
    ControlFrame,
    DataFrame,
    EndOfResponse,
    ErrorFrame,
    Frame,
    Interruption,
    LLMTextDelta,
    MetricFrame,
    PausePlayback,
    ResponseStarted,
    ResumePlayback,
    SpeakableText,
    SpeculationCommitted,
    SpeculationDropped,
    SpeechOnset,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
)
from vocalis.voice.processors import (
    DOWNSTREAM,
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
    task_ended,
)
from vocalis.voice.turns import SpanAttributes, VoiceTurn, start_turn

Modality = str  # "text" | "audio"

log = structlog.get_logger(__name__)


# --- frames -------------------------------------------------------------------------------
@dataclass
class UserSpeechStarted(SpeechStarted):
    """The user started a turn that will become user item `item_id`.

    `detected` is False for turns the client committed itself (manual turn detection).
    """

    item_id: str = field(default_factory=lambda: new_id("msg"))
    detected: bool = True


@dataclass
class CommittedTurn(SpeechStopped):
    """The end of a turn the client committed itself (no VAD event is reported)."""


@dataclass
class UserText(DataFrame):
    """A typed user message, answered together with any spoken input by the next reply."""

    item_id: str
    text: str


@dataclass
class RespondRequest(ControlFrame):
    """Answer the user input received so far (the client's `response.create`); with
    `without_input`, also when there is none (the turn has other input, e.g. tool outputs)."""

    without_input: bool = False


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
    speculation_drops: int = 0  # speculations dropped in the turn before this reply

    @property
    def speaks(self) -> bool:
        """Whether this reply is spoken (otherwise it is text only)."""
        return "audio" in self.modalities


@dataclass(frozen=True)
class ReplyRequest:
    """What the agent stage asks the conversation to answer."""

    response_id: str
    reply_item_id: str
    user_item_id: str  # empty when the reply answers no new user input
    text: str
    modalities: tuple[Modality, ...]
    transcript: TranscriptFinal | None = None  # the spoken turn answered, if any
    speculative: bool = False  # prepared at a pause: kept only once the turn is confirmed

    @property
    def turn(self) -> VoiceTurn | None:
        """The spoken turn this reply answers (its span is the reply's parent)."""
        return self.transcript.turn if self.transcript is not None else None


ReplyRunner = Callable[[ReplyRequest], AsyncIterator[str | Frame]]
"""Runs one agent turn: its text deltas (and frames such as tool calls); raises on failure."""


# --- after the VAD ------------------------------------------------------------------------
class TurnLabeller(FrameProcessor):
    """Names the user item each detected turn becomes (`SpeechStarted` → `UserSpeechStarted`)
    and begins each accepted turn when its end is found (`voice.turn` span, latency).

    At a pause the turn may be over: a *candidate* turn begins there, so the speculative
    work done at the pause (transcription, agent, first sentence) runs inside its span. If
    the turn ends at that pause the candidate is the turn; if the user goes on, its span
    ends renamed `voice.turn.speculation` (it never counts as a turn)."""

    interruptible = False

    def __init__(self, span_attributes: SpanAttributes, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self._span_attributes = span_attributes
        self._candidate: VoiceTurn | None = None

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Label speech starts, begin turns; pass everything on."""
        if isinstance(frame, SpeechStarted) and not isinstance(frame, UserSpeechStarted):
            self._drop_candidate()
            frame = UserSpeechStarted(
                audio_start_ms=frame.audio_start_ms,
                preroll=frame.preroll,
                sample_rate=frame.sample_rate,
                ts=frame.ts,
            )
        elif isinstance(frame, SpeechPaused):
            self._drop_candidate()
            frame.turn = self._candidate = start_turn(
                self._span_attributes, found_at=frame.ts, silence_ms=frame.silence_ms
            )
        elif isinstance(frame, SpeechResumed):
            self._drop_candidate()
        elif isinstance(frame, SpeechStopped) and frame.accepted and frame.turn is None:
            candidate, self._candidate = self._candidate, None
            if candidate is not None:  # it ended at its last pause: same speech end
                candidate.latency_ms["endpointing"] = round(frame.silence_ms, 1)
                frame.turn = candidate
            else:
                frame.turn = start_turn(
                    self._span_attributes, found_at=frame.ts, silence_ms=frame.silence_ms
                )
            if frame.turn_decision_ms is not None:
                frame.turn.measure("turn_decision", frame.turn_decision_ms)
        elif isinstance(frame, SpeechStopped):
            self._drop_candidate()
        await self.push_frame(frame, direction)

    def _drop_candidate(self) -> None:
        candidate, self._candidate = self._candidate, None
        if candidate is not None:
            candidate.span.update_name("voice.turn.speculation")
            candidate.end("continued")

    async def stop(self) -> None:
        """End a candidate turn's span, then the worker."""
        self._drop_candidate()
        await super().stop()


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
        commit: SpeculationCommitter | None = None,
        discard: SpeculationDiscarder | None = None,
        busy: Callable[[], bool] = lambda: False,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._runner = runner
        self._auto_respond = auto_respond
        self._modalities = modalities
        self._commit = commit
        self._discard = discard
        self._busy = busy
        self._item_id: str | None = None
        self._pending: list[tuple[str, str]] = []
        self._transcript: TranscriptFinal | None = None
        self._speculation: _Speculation | None = None
        self._dropped = 0  # speculations dropped in the current user turn
        self._task: asyncio.Task[None] | None = None  # a kept speculation still answering

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Track user input; reply when it is time."""
        if isinstance(frame, RespondRequest):
            await self._drop()
            if self._pending or frame.without_input:
                await self._reply()
            else:
                await self.push_frame(
                    ErrorFrame(
                        message="No user input to answer: speak, commit audio or add a message.",
                        code=REALTIME_NO_INPUT,
                        processor=self.name,
                    )
                )
            return
        if isinstance(frame, UserText):
            await self._drop()
            self._pending.append((frame.item_id, frame.text))
            return
        if isinstance(frame, TranscriptFinal) and frame.speculative:
            await self._speculate(frame)
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, UserSpeechStarted):
            self._item_id, self._dropped = frame.item_id, 0
        elif isinstance(frame, SpeechResumed):
            await self._drop()
        elif isinstance(frame, TranscriptFinal):
            if frame.backchannel or not frame.text.strip():
                await self._drop()
                return
            if await self._keep(frame):
                return
            self._pending.append((self._item_id or new_id("msg"), frame.text.strip()))
            self._transcript = frame
            if self._auto_respond():
                await self._reply()

    # --- speculation ------------------------------------------------------------------------
    async def _speculate(self, frame: TranscriptFinal) -> None:
        """Prepare the reply to the turn so far; it stays unheard until the turn ends here."""
        await self._drop()
        text = frame.text.strip()
        if self._commit is None or not text or self._pending or not self._auto_respond():
            return
        if self._busy() or (self._task is not None and not self._task.done()):
            return  # never over another reply
        request = self._request([(self._item_id or new_id("msg"), text)], frame, speculative=True)
        spec = _Speculation(request=request, text=text)
        deltas = self._runner(request)  # the reply is known (committable) from here on
        spec.task = asyncio.create_task(
            self._answer(request, spec, deltas), name="voice:speculation"
        )
        self._speculation = spec
        log.info("voice_speculation_started", response_id=request.response_id)

    async def _keep(self, frame: TranscriptFinal) -> bool:
        """The turn ended: keep the speculation that answers it exactly (a hit)."""
        spec = self._speculation
        if spec is None:
            return False
        if not frame.confirms_speculation or frame.text.strip() != spec.text:
            await self._drop()
            return False
        assert self._commit is not None
        if not await self._commit(spec.request.response_id):  # it failed or was refused
            await self._drop()
            return False
        log.info("voice_speculation_kept", response_id=spec.request.response_id)
        self._speculation = None
        spec.started.turn = frame.turn  # the held frame: the reply answers the confirmed turn
        spec.started.speculation_drops = self._dropped
        self._task, self._dropped = spec.task, 0
        await self.report_metric("speculation_hits", 1.0)
        await self.push_frame(SpeculationCommitted(response_id=spec.request.response_id))
        return True

    async def _drop(self) -> None:
        """Throw the speculation away (the user went on, or the input changed).

        Its turn is discarded before its task is cancelled: a tool call waiting for the turn
        to be kept, or the turn's end, then gives up at once even when the cancellation is
        lost on the way (`AgentReplies.discard`); otherwise the turn ran on to wait for a
        decision nobody makes, this stage waited on it, and the turn that followed was
        never answered.
        """
        spec, self._speculation = self._speculation, None
        if spec is None:
            return
        spec.dropped = True
        if self._discard is not None:
            self._discard(spec.request.response_id)
        if spec.task is not None and not spec.task.done():
            spec.task.cancel()
            await task_ended(spec.task)
        self._dropped += 1
        log.info("voice_speculation_dropped", response_id=spec.request.response_id)
        await self.report_metric("speculation_drops", 1.0)
        await self.push_frame(SpeculationDropped(response_id=spec.request.response_id))

    async def on_interruption(self, frame: Interruption, dropped: list[Frame]) -> None:
        """The reply is cut off: so is a speculation or a kept one still answering."""
        await self._drop()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await task_ended(task)

    async def stop(self) -> None:
        """Cancel any speculation, then the worker."""
        await self.on_interruption(Interruption(reason="stopped"), [])
        await super().stop()

    # --- replies ----------------------------------------------------------------------------
    def _request(
        self,
        pending: list[tuple[str, str]],
        transcript: TranscriptFinal | None,
        *,
        speculative: bool = False,
    ) -> ReplyRequest:
        return ReplyRequest(
            response_id=new_id("resp"),
            reply_item_id=new_id("msg"),
            user_item_id=pending[0][0] if pending else "",
            text="\n".join(text for _, text in pending),
            modalities=tuple(self._modalities()),
            transcript=transcript,
            speculative=speculative,
        )

    async def _reply(self) -> None:
        task, self._task = self._task, None
        if task is not None:  # a kept speculation is still answering the turn before
            await task_ended(task)
        pending, transcript = self._pending, self._transcript
        self._pending, self._transcript = [], None
        await self._answer(self._request(pending, transcript))

    async def _answer(
        self,
        request: ReplyRequest,
        spec: _Speculation | None = None,
        deltas: AsyncIterator[str | Frame] | None = None,
    ) -> None:
        started_frame = VoiceResponseStarted(
            response_id=request.response_id,
            transcript=request.text,
            item_id=request.reply_item_id,
            user_item_id=request.user_item_id,
            modalities=request.modalities,
            turn=request.turn,
            speculative=request.speculative,
        )
        if spec is not None:
            spec.started = started_frame
        await self.push_frame(started_frame)
        started, first = time.perf_counter(), True
        deltas = deltas or self._runner(request)
        try:
            async for delta in deltas:
                if isinstance(delta, Frame):
                    await self.push_frame(delta)
                    continue
                if not delta:
                    continue
                if first:
                    first = False
                    await self.report_metric("first_token_seconds", time.perf_counter() - started)
                await self.push_frame(LLMTextDelta(text=delta, response_id=request.response_id))
        except Exception as exc:  # the runner recorded it; close the reply properly
            if spec is None or not spec.dropped:  # a discarded turn's end is no failure
                await self.push_frame(ErrorFrame.from_exception(exc, self.name))
        finally:
            aclose = getattr(deltas, "aclose", None)
            if aclose is not None:
                await aclose()  # on interruption: cancels the agent turn, frees its lock
        if spec is not None and spec.dropped:
            return  # thrown away (and ended for the stages after this one): nothing to close
        await self.push_frame(EndOfResponse(response_id=request.response_id))


SpeculationCommitter = Callable[[str], Awaitable[bool]]
"""Keeps a speculative reply by response id (`AgentReplies.commit`); False when it is gone."""

SpeculationDiscarder = Callable[[str], None]
"""Throws a speculative reply away by response id (`AgentReplies.discard`)."""


@dataclass(eq=False)
class _Speculation:
    """A reply prepared at a pause, not yet kept."""

    request: ReplyRequest
    text: str
    task: asyncio.Task[None] | None = None
    dropped: bool = False
    started: VoiceResponseStarted = field(
        default_factory=lambda: VoiceResponseStarted(response_id="", transcript="")
    )


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


# --- between TTS and playout --------------------------------------------------------------
class SpeculationGate(FrameProcessor):
    """Holds a speculative reply's frames (its start, text, first sentence's audio) until
    the turn is confirmed (`SpeculationCommitted`), and throws them away when it is dropped.

    Nothing of a speculation reaches the playout or the transport before it is kept, so a
    dropped one leaves no event behind; it absorbs `SpeculationDropped`.
    """

    def __init__(self, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self._held: dict[str, list[Frame]] = {}
        self._dropped: set[str] = set()

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        """Drops are handled here; other interruptions also drop what is held."""
        if isinstance(frame, SpeculationDropped):
            self._forget(frame.response_id)
            return
        if isinstance(frame, Interruption):
            for response_id in list(self._held):
                self._forget(response_id)
        await super().queue_frame(frame, direction)

    def _forget(self, response_id: str) -> None:
        self._held.pop(response_id, None)
        self._dropped.add(response_id)
        while len(self._dropped) > 64:
            self._dropped.pop()

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Hold, release or pass on."""
        if isinstance(frame, ResponseStarted) and frame.speculative:
            if frame.response_id not in self._dropped:
                self._held[frame.response_id] = [frame]
            return
        if isinstance(frame, SpeculationCommitted):
            for held in self._held.pop(frame.response_id, []):
                await self.push_frame(held)
            return
        response_id = getattr(frame, "response_id", None)
        if response_id is None and isinstance(frame, MetricFrame | ErrorFrame) and self._held:
            response_id = next(reversed(self._held))  # the speculation's own measurements
        if response_id in self._dropped:
            return
        if response_id in self._held:
            self._held[response_id].append(frame)
            return
        await self.push_frame(frame, direction)


# --- interruptions ------------------------------------------------------------------------
BACKCHANNELS = frozenset(
    {
        *("uh", "huh", "uh-huh", "mm", "mmm", "mm-hmm", "mhm", "hmm", "hm", "um", "uhm"),
        *("ah", "aha", "oh", "okay", "ok", "yeah", "yep", "yup", "yes", "right", "sure"),
        *("alright", "all", "i", "see", "got", "it", "cool", "great", "nice", "wow", "really"),
    }
)
_NOT_WORDS = re.compile(r"[\[(*][^\])*]*[\])*]")  # [coughs], (laughs), *sigh*
_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


def interrupting_words(text: str) -> list[str]:
    """The words of `text` that are more than a backchannel ("uh-huh", "okay", "I see").

    A lone letter is not one either: it is Whisper's guess at a click or a blip ("U.",
    "A."), and a real interruption brings more words, or speech too long for a backchannel.
    """
    words = _WORD.findall(_NOT_WORDS.sub(" ", text.casefold()))
    return [w for w in words if w not in BACKCHANNELS and len(w) > 1]


@dataclass(frozen=True)
class InterruptionConfig:
    """When user speech over the agent's answer stops it (milliseconds)."""

    false_interruption_ms: float = 1500.0  # no interrupting words this long after the hold
    # A held answer resumes this long after speech that came to nothing (an onset cancelled,
    # a turn too short to count: a click, a breath, or a short first word: "Wait," then a
    # comma's pause) unless speech comes back meanwhile: resuming at once let the answer
    # play on into the sentence that followed (~0.6 s in bench/voice_latency.py). Longer
    # than a comma's pause; a resumed answer continues where it was held, so noise costs
    # only this wait.
    onset_grace_ms: float = 600.0


class InterruptionArbiter(FrameProcessor):
    """Decides whether speech over the agent's answer interrupts it.

    At the first sign of speech (`SpeechOnset`) the answer's audio is held
    (`PausePlayback`) and the speech is judged: words other than backchannels (in a partial
    transcript, the transcript at a pause, or the final one), or speech longer than a
    backchannel, cut the answer off (`BargeIn`); a cough, noise or a backchannel ("uh-huh",
    "okay") resume it where it stopped (`ResumePlayback`), as does silence without words
    `false_interruption_ms` after the hold (words in the transcript that comes later still
    cut it off). A backchannel's final transcript is marked so that it is not answered.
    """

    interruptible = False

    def __init__(
        self,
        *,
        replying: Callable[[], bool],
        config: InterruptionConfig | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.config = config or InterruptionConfig()
        self._replying = replying
        self._judging = False  # speech that began over the answer is being judged
        self._holding = False  # the answer's audio is held meanwhile
        self._in_turn = False  # that speech became a turn that has not ended
        self._speaking = False  # ... and is voiced right now
        self._awaiting = False  # ... and ended: its final transcript is due
        self._onsets = 0  # onsets while judging: a grace timer resumes only after the last
        self._timers: list[asyncio.Task[None]] = []

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        """Onsets are judged at once (they overtake queued audio)."""
        if isinstance(frame, SpeechOnset):
            if frame.long:
                if self._judging:
                    await self._cut_off()
            elif not frame.cancelled:
                self._onsets += 1  # a grace timer still running no longer resumes
                if not self._judging and self._replying():
                    await self._hold()
            elif self._judging and not self._in_turn:
                onsets = self._onsets
                self._timer(self.config.onset_grace_ms, lambda: self._onset_lapsed(onsets))
            return
        if isinstance(frame, Interruption):
            self._reset()
        await super().queue_frame(frame, direction)

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Follow the speech being judged until it is."""
        if self._judging:
            if isinstance(frame, UserSpeechStarted):
                self._in_turn = self._speaking = True
            elif isinstance(frame, SpeechPaused):
                self._speaking = False
            elif isinstance(frame, SpeechResumed):
                self._speaking = True
            elif isinstance(frame, SpeechStopped):
                self._in_turn = self._speaking = False
                if not frame.accepted:  # a cough, a click, or a short first word
                    await self.push_frame(frame, direction)
                    onsets = self._onsets
                    self._timer(self.config.onset_grace_ms, lambda: self._onset_lapsed(onsets))
                    return
                self._awaiting = True
            elif isinstance(frame, TranscriptPartial | TranscriptFinal):
                words = interrupting_words(frame.text)
                final = isinstance(frame, TranscriptFinal) and not frame.speculative
                if words:
                    await self._cut_off()
                elif isinstance(frame, TranscriptFinal) and frame.speculative and frame.text:
                    await self._resume("backchannel", done=False)  # its end confirms it
                elif final:
                    assert isinstance(frame, TranscriptFinal)
                    frame.backchannel = True
                    outcome = "backchannel" if frame.text.strip() else "false"
                    await self.push_frame(frame, direction)
                    await self._resume(outcome, done=True)
                    return
        await self.push_frame(frame, direction)

    async def _hold(self) -> None:
        log.info("voice_answer_held")
        self._judging = self._holding = True
        self._in_turn = self._speaking = False
        await self.push_frame(PausePlayback())
        self._timer(self.config.false_interruption_ms, self._deadline)

    async def _resume(self, outcome: str, *, done: bool) -> None:
        """Go on with the answer; `done` when the speech is fully judged."""
        if self._holding:
            self._holding = False
            log.info("voice_answer_resumed", outcome=outcome)
            await self.report_metric(f"interruptions_{outcome}", 1.0)
            await self.push_frame(ResumePlayback())
        if done:
            self._reset()

    async def _cut_off(self) -> None:
        log.info("voice_answer_interrupted")
        self._reset()
        await self.report_metric("interruptions_interruption", 1.0)
        await self.push_frame(BargeIn())

    async def _onset_lapsed(self, onsets: int) -> None:
        """The onset came to nothing and no speech followed within the grace: resume."""
        if self._judging and not self._in_turn and onsets == self._onsets:
            await self._resume("false", done=True)

    async def _deadline(self) -> None:
        """No words yet: resume (words that still come in the transcript cut it off)."""
        if self._judging and self._holding and not self._speaking:
            await self._resume("false", done=not (self._in_turn or self._awaiting))

    def _timer(self, ms: float, then: Callable[[], Awaitable[None]]) -> None:
        async def wait() -> None:
            await asyncio.sleep(ms / 1000.0)
            await then()

        self._timers = [t for t in self._timers if not t.done()]
        self._timers.append(asyncio.create_task(wait(), name="voice:interruption-timer"))

    def _reset(self) -> None:
        self._judging = self._holding = self._in_turn = self._speaking = self._awaiting = False
        current = asyncio.current_task()
        for timer in self._timers:
            if timer is not current:
                timer.cancel()
        self._timers = []

    async def stop(self) -> None:
        """Cancel the timers, then the worker."""
        self._reset()
        await super().stop()


# --- assembly -----------------------------------------------------------------------------
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


def prometheus_observer(
    stt_engine: str, tts_engine: str, turn_detector: str = "silence"
) -> MetricsObserver:
    """Feeds the processors' measurements into the Prometheus registry."""

    def observe(processor: str, name: str, value: float) -> None:
        if name == "turn_decision_seconds":
            VOICE_TURN_DECISION.labels(turn_detector).observe(value)
        elif name.startswith("turn_decisions_"):
            VOICE_TURN_DECISIONS.labels(turn_detector, name.removeprefix("turn_decisions_")).inc()
        elif name.startswith("turn_text_"):
            VOICE_TURN_TEXT.labels(name.removeprefix("turn_text_")).inc()
        elif name == "stt_seconds":
            STT_LATENCY.labels(stt_engine).observe(value)
        elif name == "stt_real_time_factor":
            STT_REAL_TIME_FACTOR.labels(stt_engine).observe(value)
        elif name == "tts_ttfb_seconds":
            TTS_TIME_TO_FIRST_BYTE.labels(tts_engine).observe(value)
        elif name == "barge_ins":
            VOICE_BARGE_INS.inc()
        elif name == "speculation_hits":
            VOICE_SPECULATIONS.labels("hit").inc()
        elif name == "speculation_drops":
            VOICE_SPECULATIONS.labels("dropped").inc()
        elif name.startswith("interruptions_"):
            VOICE_INTERRUPTIONS.labels(name.removeprefix("interruptions_")).inc()

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
    realtime: bool = True,
    span_attributes: SpanAttributes | None = None,
    commit: SpeculationCommitter | None = None,
    discard: SpeculationDiscarder | None = None,
    replying: Callable[[], bool] = lambda: False,
    interruptions: InterruptionConfig | None = None,
) -> VoicePipeline:
    """Wire the stages for one conversation (not started)."""
    attributes = dict(span_attributes or {})
    vad = VADProcessor(engines.vad, endpointing, turn=engines.turn)
    stt = STTProcessor(
        engines.stt,
        language=language,
        partial_interval_ms=partial_interval_ms,
        span_attributes=attributes,
    )
    agent = ConversationAgentProcessor(
        runner,
        auto_respond=auto_respond,
        modalities=modalities,
        commit=commit,
        discard=discard,
        busy=replying,
    )
    tts = TTSProcessor(
        engines.tts, voice=voice, sample_rate=output_rate, span_attributes=attributes
    )
    playout = AudioPlayout(lead_ms=playout_lead_ms, realtime=realtime)
    stages: list[FrameProcessor] = [
        vad,
        TurnLabeller(attributes),
        stt,
        InterruptionArbiter(replying=replying, config=interruptions),
        agent,
        SentenceChunkerProcessor(),
        SpeechGate(),
        tts,
        SpeculationGate(),
        playout,
        transport_out,
    ]
    turn_name = engines.turn.name if engines.turn is not None else "silence"
    observer = prometheus_observer(engines.stt.name, engines.tts.name, turn_name)
    return VoicePipeline(Pipeline(stages, metrics_observer=observer), vad, stt, agent, tts, playout)


def endpointing_config(
    *,
    threshold: float,
    silence_ms: float,
    prefix_padding_ms: float,
    min_speech_ms: float,
    interrupt: bool,
    turn_model: TurnModelConfig | None = None,
) -> EndpointingConfig:
    """VAD settings from a session's turn detection (`turn_model` for `semantic_vad`)."""
    return EndpointingConfig(
        threshold=threshold,
        # Hysteresis: once speaking, a little below the threshold still counts as speech.
        neg_threshold=max(0.0, min(threshold - 0.15, 0.35)),
        stop_silence_ms=silence_ms,
        min_speech_ms=min_speech_ms,
        prefix_padding_ms=prefix_padding_ms,
        interrupt_on_speech=interrupt,
        turn_decision_ms=turn_model.decision_ms if turn_model else None,
        turn_threshold=turn_model.threshold if turn_model else 0.8,
        max_silence_ms=turn_model.max_silence_ms if turn_model else 3000.0,
    )


@dataclass(frozen=True)
class TurnModelConfig:
    """How the end-of-turn model is used: when it decides, how sure it must be, the cap."""

    decision_ms: float
    threshold: float
    max_silence_ms: float

    def at_eagerness(self, eagerness: str) -> TurnModelConfig:
        """OpenAI's `semantic_vad` eagerness: `high` ends turns sooner (a lower threshold,
        half the cap), `low` later (half the distance to certainty, twice the cap);
        `medium` and `auto` are the deployment's settings."""
        if eagerness == "high":
            return TurnModelConfig(
                self.decision_ms,
                self.threshold * 0.6,
                max(self.decision_ms, self.max_silence_ms / 2),
            )
        if eagerness == "low":
            return TurnModelConfig(
                self.decision_ms, 1.0 - (1.0 - self.threshold) / 2, self.max_silence_ms * 2
            )
        return self
