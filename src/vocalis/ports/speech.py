"""The speech engines of a process, as one typed bundle, and the end-of-turn port.

The composition root (`vocalis.wiring`) builds a `VoiceEngines` from the settings; the voice
conversation receives it and never chooses an engine itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from vocalis.ports.stt import SpeechToText
from vocalis.ports.tts import TextToSpeech
from vocalis.ports.vad import VoiceActivityDetector


@runtime_checkable
class TurnDetector(Protocol):
    """Decides, at a pause, how likely it is that the user has finished their turn."""

    name: str
    sample_rate: int

    async def end_of_turn_probability(self, pcm16: bytes) -> float:
        """Probability in [0, 1] that the turn in `pcm16` (mono, `sample_rate`) is over."""
        ...


@dataclass(frozen=True)
class VoiceEngines:
    """The speech engines a pipeline uses (shared by every session of a process)."""

    stt: SpeechToText
    tts: TextToSpeech
    vad: VoiceActivityDetector
    turn: TurnDetector | None = None
