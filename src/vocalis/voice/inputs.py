"""What a transport tells a voice conversation: the in-frames, transport-neutral.

Audio is mono PCM16 (the transport decodes its wire format); control frames mirror what
every voice client needs: commit or clear buffered input, ask for a reply, cancel it, say
how much of a reply was played, and change the conversation's voice settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Modality = str  # "text" | "audio"


@dataclass(frozen=True)
class TurnDetection:
    """Server turn detection: a turn ends after `silence_ms` of silence, or, with
    `eagerness`, when the end-of-turn model says so (`silence_ms` then serves when the
    deployment's detector is plain silence)."""

    threshold: float = 0.5
    silence_ms: float = 500.0
    prefix_padding_ms: float = 300.0
    create_response: bool = True  # answer each spoken turn at once
    interrupt_response: bool = True  # speech during a reply cancels it (barge-in)
    # Semantic turn detection (`semantic_vad`): the end-of-turn model decides, this eager
    # ("low", "medium", "high", "auto"); None = silence alone ends turns (`server_vad`).
    eagerness: str | None = None


@dataclass(frozen=True)
class VoiceSettings:
    """How a conversation listens and answers; `turn_detection` None = client-committed turns."""

    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    modalities: tuple[Modality, ...] = ("audio",)
    voice: str | None = None
    output_rate: int = 24000

    @property
    def speaks(self) -> bool:
        """Whether replies are spoken."""
        return "audio" in self.modalities


@dataclass(frozen=True)
class InputFrame:
    """Base of every in-frame."""


@dataclass(frozen=True)
class AudioInput(InputFrame):
    """Caller audio: mono PCM16 at `sample_rate`."""

    pcm: bytes
    sample_rate: int


@dataclass(frozen=True)
class TextInput(InputFrame):
    """A typed user message (user item `item_id`), answered by the next reply."""

    item_id: str
    text: str


@dataclass(frozen=True)
class CommitInput(InputFrame):
    """The buffered audio is the user's turn (client-committed turns)."""


@dataclass(frozen=True)
class ClearInput(InputFrame):
    """Discard the buffered audio."""


@dataclass(frozen=True)
class Respond(InputFrame):
    """Answer the user input received so far.

    `without_input`: answer even when no new user input came (the transport's turn has other
    input, such as the outputs of client tools the last reply called).
    """

    without_input: bool = False


@dataclass(frozen=True)
class Cancel(InputFrame):
    """Stop the reply in progress."""

    reason: str = "client_cancelled"


@dataclass(frozen=True)
class TruncatePlayed(InputFrame):
    """Only `audio_end_ms` of reply `item_id` was played: keep only what was heard."""

    item_id: str
    audio_end_ms: float


@dataclass(frozen=True)
class Configure(InputFrame):
    """New voice settings (turn detection, modalities, voice, output rate)."""

    settings: VoiceSettings
