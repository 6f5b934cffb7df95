"""Voice-activity detection port: a speech probability for each fixed-size window.

The detector holds the model; each audio stream gets its own `VADStream` because models
such as Silero carry recurrent state from one window to the next.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class VADStream(Protocol):
    """Per-stream state of a detector."""

    def process(self, pcm16: bytes) -> list[float]:
        """Feed PCM16 at the detector's rate; one probability per window completed.

        Bytes that do not fill a window are kept for the next call. Cheap enough to call
        inline for a few windows; batch larger inputs in a worker thread.
        """
        ...

    def reset(self) -> None:
        """Forget the recurrent state and any buffered samples."""
        ...


@runtime_checkable
class VoiceActivityDetector(Protocol):
    """A speech/non-speech classifier over windows of `window_samples` at `sample_rate`."""

    name: str
    sample_rate: int
    window_samples: int

    def new_stream(self) -> VADStream:
        """Fresh state for one audio stream."""
        ...
