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
class SpeechStopped(ControlFrame):
    """VAD: end of the user's turn after `silence_ms` of silence.

    `accepted` is False when the turn held less voiced audio than the minimum (a click,
    a cough): such a turn is not transcribed.
    """

    audio_end_ms: float
    speech_ms: float
    silence_ms: float
    accepted: bool = True


@dataclass
class ResponseStarted(ControlFrame):
    """The agent began a reply to `transcript`."""

    drop_on_interruption: ClassVar[bool] = True

    response_id: str
    transcript: str


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


@dataclass
class LLMTextDelta(DataFrame):
    """A piece of the agent's reply text as it is generated."""

    drop_on_interruption: ClassVar[bool] = True

    text: str
    response_id: str


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
