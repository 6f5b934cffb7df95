"""The voice pipeline's last stage: frames become the conversation's out-events.

It follows each user turn (speech, transcripts) and each reply (text, transcript, audio,
tool calls) and, when a reply ends, settles what was heard through `AgentReplies` and
reports `ResponseDoneEvent` with the latency breakdown. It is not interruptible: what was
already handed to the transport cannot be taken back, so an interruption is queued as a
mark behind it, and a reply that starts before the mark was cut off unheard.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

import structlog

from vocalis.core import audio
from vocalis.core.errors import CATALOGUE, INTERNAL_ERROR, REALTIME_NO_INPUT, VocalisError
from vocalis.voice.events import (
    CancelReason,
    InputCommitted,
    ResponseAudio,
    ResponseDoneEvent,
    ResponseError,
    ResponseStartedEvent,
    ResponseStatus,
    ResponseTextDelta,
    ResponseToolCall,
    ResponseToolResult,
    ResponseTranscriptDelta,
    SpeechStartedEvent,
    SpeechStoppedEvent,
    TranscriptionCompleted,
    TranscriptionDelta,
    TranscriptionFailed,
    VoiceErrorEvent,
    VoiceEventSink,
)
from vocalis.voice.frames import (
    AgentToolCall,
    AgentToolResult,
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
from vocalis.voice.pipeline import CommittedTurn, UserSpeechStarted, VoiceResponseStarted
from vocalis.voice.processors import DOWNSTREAM, Direction, FrameProcessor
from vocalis.voice.replies import AgentReplies, HeardReply
from vocalis.voice.turns import VoiceTurn

log = structlog.get_logger(__name__)

PLAYED_KEPT = 8  # finished replies whose timing is kept for client truncation
Sentence = tuple[str, float, float]  # text, start ms, audio ms


@dataclass
class _Sentence:
    text: str
    start_ms: float
    audio_ms: float = 0.0


@dataclass
class _Reply:
    """A reply the transport has been told about and that is not done."""

    started: VoiceResponseStarted
    transcript: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    sentences: list[_Sentence] = field(default_factory=list)
    sent_ms: float = 0.0
    audio: bytearray = field(default_factory=bytearray)
    audio_rate: int | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The response's id."""
        return self.started.response_id

    @property
    def item_id(self) -> str:
        """The assistant item (stored message) it becomes."""
        return self.started.item_id

    def played(self) -> list[Sentence]:
        """Its sentences as (text, start ms, audio ms)."""
        return [(s.text, s.start_ms, s.audio_ms) for s in self.sentences]


@dataclass
class _InterruptionMark(Frame):
    """Queued behind what the transport had already been given when an interruption came."""

    reason: CancelReason = "turn_detected"


class ConversationOutput(FrameProcessor):
    """Turns pipeline frames into out-events for the transport's sink."""

    interruptible = False

    def __init__(self, emit: VoiceEventSink, replies: AgentReplies) -> None:
        super().__init__(name="ConversationOutput")
        self._emit = emit
        self._replies = replies
        self._open: dict[str, _Reply] = {}
        self.played: OrderedDict[str, list[Sentence]] = OrderedDict()
        self._user_item: str | None = None
        self._partial_sent = ""
        self._turn: VoiceTurn | None = None  # the latest spoken turn not yet answered
        self._interrupted_at = float("-inf")
        self._interrupt_reason: CancelReason = "turn_detected"

    def has_open_replies(self) -> bool:
        """Whether a reply is being sent."""
        return bool(self._open)

    async def queue_frame(self, frame: Frame, direction: Direction = DOWNSTREAM) -> None:
        """Note interruptions at once; queue a mark so later frames can be judged."""
        if isinstance(frame, Interruption):
            reason: CancelReason = (
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
        elif isinstance(frame, AgentToolCall | AgentToolResult):
            await self._tool(frame)
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
            await self._emit(
                SpeechStartedEvent(item_id=frame.item_id, audio_start_ms=frame.audio_start_ms)
            )

    async def _speech_stopped(self, frame: SpeechStopped) -> None:
        item_id = self._user_item
        if item_id is None:
            return
        if not isinstance(frame, CommittedTurn):
            await self._emit(SpeechStoppedEvent(item_id=item_id, audio_end_ms=frame.audio_end_ms))
        if not frame.accepted:  # too little speech (a click, a cough): no turn
            self._user_item = None
            return
        self._end_turn("unanswered")
        self._turn = frame.turn
        await self._emit(InputCommitted(item_id=item_id))

    def _end_turn(self, status: str) -> None:
        turn, self._turn = self._turn, None
        if turn is not None:
            turn.end(status)

    async def _partial(self, frame: TranscriptPartial) -> None:
        # Deltas only ever append: a partial that revises earlier words waits for the final.
        if self._user_item and frame.text.startswith(self._partial_sent):
            delta = frame.text[len(self._partial_sent) :]
            if delta:
                self._partial_sent = frame.text
                await self._emit(TranscriptionDelta(item_id=self._user_item, delta=delta))

    async def _final(self, frame: TranscriptFinal) -> None:
        item_id = self._user_item
        text = frame.text.strip()
        if not text:
            self._end_turn("no_speech")
        if item_id is None:
            return
        rest = text[len(self._partial_sent) :] if text.startswith(self._partial_sent) else text
        if rest:
            await self._emit(TranscriptionDelta(item_id=item_id, delta=rest))
        seconds = audio.duration_seconds(frame.audio, frame.sample_rate)
        await self._emit(
            TranscriptionCompleted(item_id=item_id, transcript=text, audio_seconds=seconds)
        )
        self._user_item, self._partial_sent = None, ""

    # --- the agent's side -------------------------------------------------------------------
    async def _response_started(self, frame: VoiceResponseStarted) -> None:
        if frame.turn is not None and frame.turn is self._turn:
            self._turn = None  # the reply owns the turn now
        reply = _Reply(started=frame)
        cut_off = frame.ts < self._interrupted_at
        await self._emit(
            ResponseStartedEvent(
                response_id=frame.response_id,
                item_id=frame.item_id,
                user_item_id=frame.user_item_id,
                speaks=frame.speaks,
                cut_off=cut_off,
            )
        )
        if cut_off:  # cut off before a word of it was played: it ends here, unheard
            await self._finish(reply, heard="", interrupted=True)
            return
        self._open[frame.response_id] = reply

    async def _text(self, frame: LLMTextDelta) -> None:
        reply = self._open.get(frame.response_id)
        if reply is None or reply.started.speaks:
            return  # a spoken reply's transcript follows its audio, sentence by sentence
        reply.text.append(frame.text)
        await self._emit(
            ResponseTextDelta(response_id=reply.id, item_id=reply.item_id, delta=frame.text)
        )

    async def _sentence(self, frame: TTSSentenceStart) -> None:
        reply = self._open.get(frame.response_id)
        if reply is None:
            return
        delta = (" " if reply.transcript else "") + frame.text
        reply.transcript.append(delta)
        reply.sentences.append(_Sentence(frame.text, reply.sent_ms))
        await self._emit(
            ResponseTranscriptDelta(response_id=reply.id, item_id=reply.item_id, delta=delta)
        )

    async def _audio(self, frame: TTSAudio) -> None:
        reply = self._open.get(frame.response_id)
        if reply is None or not frame.pcm:
            return
        turn = reply.started.turn
        if turn is not None:
            turn.first_audio(time.monotonic())
        await self._emit(
            ResponseAudio(
                response_id=reply.id,
                item_id=reply.item_id,
                pcm=frame.pcm,
                sample_rate=frame.sample_rate,
            )
        )
        reply.sent_ms += frame.duration_ms
        if reply.sentences:
            reply.sentences[-1].audio_ms += frame.duration_ms
        pcm = frame.pcm
        if reply.audio_rate is None:
            reply.audio_rate = frame.sample_rate
        if frame.sample_rate != reply.audio_rate:  # the output rate changed mid-reply
            pcm = audio.resample(pcm, frame.sample_rate, reply.audio_rate)
        reply.audio += pcm

    async def _tool(self, frame: AgentToolCall | AgentToolResult) -> None:
        if isinstance(frame, AgentToolCall):
            await self._emit(
                ResponseToolCall(
                    response_id=frame.response_id,
                    call_id=frame.call_id,
                    name=frame.name,
                    arguments=frame.arguments,
                )
            )
            return
        await self._emit(
            ResponseToolResult(
                response_id=frame.response_id,
                call_id=frame.call_id,
                name=frame.name,
                output=frame.output,
                is_error=frame.is_error,
            )
        )

    def _metric(self, frame: MetricFrame) -> None:
        reply = next(reversed(self._open.values()), None)
        if reply is None:
            return
        if frame.name == "tts_ttfb_seconds":
            reply.latency_ms.setdefault("tts_first_byte", round(frame.value * 1000.0, 1))
        elif frame.name == "first_token_seconds":
            reply.latency_ms.setdefault("first_token", round(frame.value * 1000.0, 1))

    async def _error(self, frame: ErrorFrame) -> None:
        if frame.processor == "STTProcessor" and self._user_item is not None:
            await self._emit(
                TranscriptionFailed(item_id=self._user_item, code=frame.code, message=frame.message)
            )
            self._user_item = None
            self._end_turn("failed")
        entry = CATALOGUE.get(frame.code)
        server = entry.status >= 500 if entry is not None else frame.code != REALTIME_NO_INPUT
        await self._emit(VoiceErrorEvent(code=frame.code, message=frame.message, server=server))

    async def _response_spoken(self, frame: ResponseSpoken) -> None:
        reply = self._open.pop(frame.response_id, None)
        if reply is None:
            return
        heard = frame.text if reply.started.speaks else "".join(reply.text)
        await self._finish(reply, heard=heard, interrupted=frame.interrupted)

    async def _finish(self, reply: _Reply, *, heard: str, interrupted: bool) -> None:
        """Settle what was heard, then report the reply's end."""
        record = self._replies.records.get(reply.id)
        result = record.result if record is not None else None
        error = record.error if record is not None else None
        status: ResponseStatus = (
            "failed" if error is not None else "cancelled" if interrupted else "completed"
        )
        outcome = HeardReply(
            heard=heard,
            cut_short=status != "completed",
            agent_audio=bytes(reply.audio),
            agent_rate=reply.audio_rate,
        )
        message_id = await self._replies.settle(reply.id, outcome)
        turn = reply.started.turn
        latency = dict(result.final.latency_ms) if result is not None else {}
        latency.update(reply.latency_ms)
        if turn is not None:
            latency.update(turn.latency_ms)
            turn.end(status)  # before the transport hears of it: the turn is over
        self._remember_played(reply)  # a client may truncate it as soon as it hears it is done
        await self._emit(
            ResponseDoneEvent(
                response_id=reply.id,
                item_id=reply.item_id,
                speaks=reply.started.speaks,
                status=status,
                heard=heard,
                message_id=message_id,
                cancel_reason=self._interrupt_reason if status == "cancelled" else None,
                error=_response_error(error),
                result=result,
                latency_ms=latency,
                speculated=reply.started.speculative,
                speculations_dropped=reply.started.speculation_drops,
            )
        )
        if message_id is not None and latency:
            await self._replies.store_latency(message_id, latency)
        if result is not None and result.conversation_ended:
            await self._replies.ended()

    def _remember_played(self, reply: _Reply) -> None:
        if not reply.started.speaks:
            return
        self.played[reply.item_id] = reply.played()
        while len(self.played) > PLAYED_KEPT:
            self.played.popitem(last=False)

    async def stop(self) -> None:
        """Stop; a turn still waiting for its reply ends unanswered."""
        self._end_turn("unanswered")
        await super().stop()


def _response_error(error: BaseException | None) -> ResponseError | None:
    """The code and message a failed reply reports."""
    if error is None:
        return None
    if isinstance(error, VocalisError):
        return ResponseError(code=error.code, message=error.detail)
    return ResponseError(code=INTERNAL_ERROR, message="The reply failed.")
