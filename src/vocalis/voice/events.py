"""What a voice conversation tells its transport: the out-events, transport-neutral.

A transport registers one sink (`VoiceEventSink`) and turns each event into its wire
messages (OpenAI Realtime server events, raw-PCM JSON and binary frames, a carrier's media
messages). Audio is mono PCM16 at the rate it says; ids are the conversation's item and
response ids (the stored messages' ids).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from vocalis.agents.events import Citation
from vocalis.conversations.service import TurnResult

ResponseStatus = Literal["completed", "cancelled", "failed"]
CancelReason = Literal["turn_detected", "client_cancelled"]


@dataclass(frozen=True)
class VoiceEvent:
    """Base of every out-event."""


# --- the user's side --------------------------------------------------------------------------
@dataclass(frozen=True)
class SpeechStartedEvent(VoiceEvent):
    """The user began speaking (VAD); `item_id` is the user item the turn becomes."""

    item_id: str
    audio_start_ms: float


@dataclass(frozen=True)
class SpeechStoppedEvent(VoiceEvent):
    """The VAD found the end of the user's speech."""

    item_id: str
    audio_end_ms: float


@dataclass(frozen=True)
class InputCommitted(VoiceEvent):
    """A user turn (detected or committed by the client) will be transcribed and kept."""

    item_id: str


@dataclass(frozen=True)
class InputCleared(VoiceEvent):
    """The buffered input audio was discarded."""


@dataclass(frozen=True)
class TranscriptionDelta(VoiceEvent):
    """More of the user turn's transcript (deltas only ever append)."""

    item_id: str
    delta: str


@dataclass(frozen=True)
class TranscriptionCompleted(VoiceEvent):
    """The user turn's final transcript."""

    item_id: str
    transcript: str
    audio_seconds: float


@dataclass(frozen=True)
class TranscriptionFailed(VoiceEvent):
    """The user turn could not be transcribed."""

    item_id: str
    code: str
    message: str


# --- the agent's side -------------------------------------------------------------------------
@dataclass(frozen=True)
class ResponseStartedEvent(VoiceEvent):
    """A reply began; `item_id` is the assistant message it becomes.

    `cut_off` replies were interrupted before a word was played: their `ResponseDoneEvent`
    follows at once, with nothing heard.
    """

    response_id: str
    item_id: str
    user_item_id: str
    speaks: bool
    cut_off: bool = False


@dataclass(frozen=True)
class ResponseTextDelta(VoiceEvent):
    """A piece of a text-only reply."""

    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True)
class ResponseTranscriptDelta(VoiceEvent):
    """The text of the speech that follows (a spoken reply's transcript, sentence by sentence)."""

    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True)
class ResponseAudio(VoiceEvent):
    """A chunk of the agent's speech: mono PCM16 at `sample_rate`."""

    response_id: str
    item_id: str
    pcm: bytes
    sample_rate: int


@dataclass(frozen=True)
class ResponseToolCall(VoiceEvent):
    """The agent called a tool (its arguments are complete)."""

    response_id: str
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ResponseToolResult(VoiceEvent):
    """A server-side tool answered."""

    response_id: str
    call_id: str
    name: str
    output: str
    is_error: bool


@dataclass(frozen=True)
class ResponseError:
    """Why a reply failed."""

    code: str
    message: str


@dataclass(frozen=True)
class ResponseDoneEvent(VoiceEvent):
    """A reply ended. `heard` is what the listener heard (the whole text when completed).

    `result` is the agent turn's outcome (usage, citations, flags) when it finished;
    `message_id` the stored assistant message, if one was kept; `latency_ms` the breakdown
    (endpointing, stt, first_token, tts_first_byte, first_audio_byte, and the agent's own).
    """

    response_id: str
    item_id: str
    speaks: bool
    status: ResponseStatus
    heard: str
    message_id: str | None = None
    cancel_reason: CancelReason | None = None
    error: ResponseError | None = None
    result: TurnResult | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    # Whether the reply was prepared speculatively at the pause that ended the turn, and
    # how many speculations the user's going on speaking threw away before it.
    speculated: bool = False
    speculations_dropped: int = 0

    @property
    def citations(self) -> list[Citation]:
        """The knowledge the reply cited."""
        return list(self.result.final.citations) if self.result is not None else []


# --- the conversation -------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplyTruncated(VoiceEvent):
    """A reply was truncated to what the client says it played."""

    item_id: str
    audio_end_ms: float
    heard: str


@dataclass(frozen=True)
class HandoffRequestedEvent(VoiceEvent):
    """The agent asked for a human."""

    reason: str


@dataclass(frozen=True)
class VoiceErrorEvent(VoiceEvent):
    """Something failed; `server` tells a server fault from a problem with the input."""

    code: str
    message: str
    server: bool = True


@dataclass(frozen=True)
class ConversationEndedEvent(VoiceEvent):
    """The conversation ended (the agent ended it, or an end phrase was said)."""

    reason: str


VoiceEventSink = Callable[[VoiceEvent], Awaitable[None]]
"""A transport's receiver of out-events (called in order, one at a time)."""
