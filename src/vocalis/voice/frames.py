"""The frame vocabulary of the voice pipeline.

Everything that moves between processors is a frame. Three kinds:
- `SystemFrame`s (interruptions, cancellation) overtake whatever is queued and are handled
  by every processor at once;
- `ControlFrame`s and `DataFrame`s are processed in order.
Frames that belong to an agent reply being spoken set `drop_on_interruption`: a barge-in
discards them wherever they are queued; user-side frames (audio, transcripts) survive it.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import ClassVar

from vocalis.core.errors import VocalisError
from vocalis.voice.completeness import Words
from vocalis.voice.turns import VoiceTurn

_frame_ids = itertools.count(1)


@dataclass(kw_only=True)
class Frame:
    """Base of every frame: a process-unique id and a monotonic creation time."""

    drop_on_interruption: ClassVar[bool] = False

    id: int = field(default_factory=lambda: next(_frame_ids))
    ts: float = field(default_factory=time.monotonic)


@dataclass(kw_only=True)
class SystemFrame(Frame):
    """Handled immediately by every processor, ahead of anything queued."""


@dataclass(kw_only=True)
class ControlFrame(Frame):
    """In-order signal about the state of the conversation."""


@dataclass(kw_only=True)
class DataFrame(Frame):
    """In-order payload: audio, text, transcripts."""


# --- system -----------------------------------------------------------------------------
@dataclass(kw_only=True)
class Interruption(SystemFrame):
    """Stop the agent's reply now: generation, synthesis and playout are cancelled."""

    reason: str = "interrupted"


@dataclass(kw_only=True)
class BargeIn(Interruption):
    """The user started speaking while the agent might be talking."""

    reason: str = "barge_in"


@dataclass(kw_only=True)
class SpeculationDropped(Interruption):
    """The user went on speaking: the reply prepared at the pause is thrown away unheard.

    Only that reply's frames are queued when it comes (a speculation never overlaps
    another reply); the speculation gate before playout absorbs it.
    """

    reason: str = "speculation_dropped"
    response_id: str = ""


@dataclass(kw_only=True)
class SpeechOnset(SystemFrame):
    """VAD: speech may be starting (or, with `cancelled`, the onset died away unconfirmed;
    with `long`, the turn's voiced speech is already longer than a backchannel).

    It overtakes queued frames so that an answer being spoken can be paused at once.
    """

    cancelled: bool = False
    long: bool = False


@dataclass(kw_only=True)
class PausePlayback(SystemFrame):
    """Hold the agent's audio where it is (the user may be interrupting)."""


@dataclass(kw_only=True)
class ResumePlayback(SystemFrame):
    """Go on with the agent's audio from where it was held (a false interruption)."""


@dataclass(kw_only=True)
class CancelFrame(SystemFrame):
    """Abort the whole pipeline without flushing (the connection is gone)."""


# --- control ----------------------------------------------------------------------------
@dataclass(kw_only=True)
class EndFrame(ControlFrame):
    """No more input: each processor finishes what is queued, passes this on and stops."""


@dataclass
class SpeechStarted(ControlFrame):
    """VAD: the user started speaking. `preroll` is the turn's audio received so far.

    `audio_start_ms` is where the turn's audio begins in the input stream (onset minus the
    prefix padding); `preroll` covers it up to the end of the last `AudioIn` forwarded.
    """

    audio_start_ms: float
    preroll: bytes
    sample_rate: int


@dataclass
class SpeechPaused(ControlFrame):
    """VAD: the user paused (`audio_end_ms` is where the speech stopped, `silence_ms` ago);
    the turn may be over, so the reply can be prepared speculatively. `turn` is the
    candidate turn begun there (its span parents the speculative work)."""

    audio_end_ms: float
    silence_ms: float = 0.0
    turn: VoiceTurn | None = None


@dataclass
class TurnTextHint(ControlFrame):
    """STT, upstream to the VAD: what the words up to the pause at `audio_end_ms` say about
    the turn (`voice.completeness.words_verdict`). Sent once per pause transcribed for
    speculation."""

    audio_end_ms: float
    words: Words


@dataclass
class SpeechResumed(ControlFrame):
    """VAD: the user went on speaking after a pause: the turn was not over."""


@dataclass
class SpeculationCommitted(ControlFrame):
    """The turn ended at the pause its speculative reply answers: the reply may be heard."""

    response_id: str


@dataclass
class SpeechStopped(ControlFrame):
    """VAD: end of the user's turn after `silence_ms` of silence.

    `accepted` is False when the turn held less voiced audio than the minimum (a click,
    a cough): such a turn is not transcribed. `turn` is set on accepted turns once the
    turn has begun (its span and latency). When an end-of-turn model decided, its
    probability and decision time come along (`None` when silence alone ended the turn).
    """

    audio_end_ms: float
    speech_ms: float
    silence_ms: float
    accepted: bool = True
    turn: VoiceTurn | None = None
    turn_probability: float | None = None
    turn_decision_ms: float | None = None


@dataclass
class ResponseStarted(ControlFrame):
    """The agent began a reply to `transcript`."""

    drop_on_interruption: ClassVar[bool] = True

    response_id: str
    transcript: str
    turn: VoiceTurn | None = None  # the spoken turn answered, if any
    speculative: bool = False  # prepared before the turn was confirmed: held until committed


@dataclass
class EndOfResponse(ControlFrame):
    """The agent finished generating reply `response_id` (its audio may still be playing)."""

    drop_on_interruption: ClassVar[bool] = True

    response_id: str


@dataclass
class TTSSentenceStart(ControlFrame):
    """The audio frames that follow speak `text`."""

    drop_on_interruption: ClassVar[bool] = True

    text: str
    response_id: str


@dataclass
class TTSSentenceEnd(ControlFrame):
    """All audio for `text` has been sent: `audio_ms` of it."""

    drop_on_interruption: ClassVar[bool] = True

    text: str
    audio_ms: float
    response_id: str


@dataclass
class ResponseSpoken(ControlFrame):
    """What the user actually heard of reply `response_id`: store this as the message."""

    response_id: str
    text: str
    audio_ms: float
    interrupted: bool


# --- data -------------------------------------------------------------------------------
@dataclass
class AudioIn(DataFrame):
    """User audio: mono PCM16 at `sample_rate`."""

    pcm: bytes
    sample_rate: int


@dataclass
class TranscriptPartial(DataFrame):
    """A provisional transcript of the turn in progress."""

    text: str


@dataclass
class TranscriptFinal(DataFrame):
    """The transcript of a finished user turn, with the audio it was made from."""

    text: str
    language: str | None = None
    audio: bytes = b""
    sample_rate: int = 16000
    stt_seconds: float = 0.0
    turn: VoiceTurn | None = None
    # At a pause: the turn so far, to prepare a reply speculatively (never shown or kept).
    speculative: bool = False
    # The final transcript of a turn that ended at its last pause: the speculation made
    # there answers it.
    confirms_speculation: bool = False
    backchannel: bool = False  # only a backchannel ("uh-huh") or nothing over a reply


@dataclass
class LLMTextDelta(DataFrame):
    """A piece of the agent's reply text as it is generated."""

    drop_on_interruption: ClassVar[bool] = True

    text: str
    response_id: str


@dataclass
class AgentToolCall(DataFrame):
    """The agent called a tool while answering reply `response_id`."""

    response_id: str
    call_id: str
    name: str
    arguments: str


@dataclass
class AgentToolResult(DataFrame):
    """A server-side tool answered a call of reply `response_id`."""

    response_id: str
    call_id: str
    name: str
    output: str
    is_error: bool = False


@dataclass
class SpeakableText(DataFrame):
    """A sentence (or early clause) of the reply, ready for synthesis."""

    drop_on_interruption: ClassVar[bool] = True

    text: str
    response_id: str


@dataclass
class TTSAudio(DataFrame):
    """Agent audio: mono PCM16 at `sample_rate`."""

    drop_on_interruption: ClassVar[bool] = True

    pcm: bytes
    sample_rate: int
    response_id: str

    @property
    def duration_ms(self) -> float:
        """Milliseconds of audio in this frame."""
        return len(self.pcm) / 2 / self.sample_rate * 1000.0


@dataclass
class MetricFrame(DataFrame):
    """A measurement from a processor (latency breakdown for `response.done`)."""

    processor: str
    name: str
    value: float


@dataclass
class ErrorFrame(DataFrame):
    """A processor failed on a frame; the pipeline keeps running unless `fatal`."""

    message: str
    code: str = "internal_error"
    processor: str = ""
    fatal: bool = False

    @classmethod
    def from_exception(cls, exc: BaseException, processor: str) -> ErrorFrame:
        """An error frame carrying the catalogued code of a `VocalisError`."""
        if isinstance(exc, VocalisError):
            return cls(message=exc.detail, code=exc.code, processor=processor)
        return cls(message=f"{type(exc).__name__}: {exc}", processor=processor)
