"""End of turn by silence alone: every pause the VAD reports ends the user's turn.

The simplest `TurnDetector`: it never looks at the audio, so the end-of-turn silence of the
VAD (`VOCALIS_VOICE_END_OF_TURN_SILENCE_MS`, or a session's `silence_duration_ms`) is the
whole decision. Model-based detectors (which hear an unfinished sentence and wait) register
beside it.
"""

from __future__ import annotations

SAMPLE_RATE = 16000


class SilenceTurnDetector:
    """Probability 1.0 at every pause; implements `TurnDetector`."""

    name = "silence"
    sample_rate = SAMPLE_RATE

    async def end_of_turn_probability(self, pcm16: bytes) -> float:
        """Always 1.0: the pause the VAD found is taken as the end of the turn."""
        return 1.0
