"""The stereo recording of a phone call: the caller on the left, the agent on the right.

Both sides are laid on the caller's timeline (8 kHz): caller audio as it arrives, agent
audio at the moment it is sent; a barge-in's `clear` cuts the agent side where the caller
stopped hearing it. Stored as one WAV under the `call_recording` key layout when voice
recording is on for the organisation.
"""

from __future__ import annotations

import io
import wave
from typing import Any

import numpy as np
import structlog

from vocalis.core import object_keys
from vocalis.core.backends import Backends

log = structlog.get_logger(__name__)

RATE = 8000
CALL_RECORDING = object_keys.declare(
    "call_recording",
    "orgs/{org_id}/conversations/{conversation_id}/recordings/call.wav",
    "The whole phone call as one stereo WAV, 8 kHz: the caller on the left channel, the "
    "agent on the right, on one timeline.",
)


class StereoRecorder:
    """Both sides of a call, aligned, up to `max_seconds`."""

    def __init__(self, max_seconds: float) -> None:
        self._limit = int(max_seconds * RATE) * 2
        self.caller = bytearray()
        self.agent = bytearray()

    @property
    def now_bytes(self) -> int:
        """The caller timeline's current position (bytes of PCM16)."""
        return len(self.caller)

    def add_caller(self, pcm16: bytes) -> None:
        """Caller audio (8 kHz PCM16), in arrival order."""
        room = self._limit - len(self.caller)
        if room > 0:
            self.caller += pcm16[:room]

    def add_agent(self, pcm16: bytes) -> None:
        """Agent audio (8 kHz PCM16) sent now: it plays after what was queued before."""
        if len(self.agent) < self.now_bytes:
            self.agent += bytes(self.now_bytes - len(self.agent))
        room = self._limit - len(self.agent)
        if room > 0:
            self.agent += pcm16[:room]

    def cut_agent(self) -> None:
        """The caller stopped hearing the agent now (a `clear`)."""
        del self.agent[self.now_bytes :]

    def wav(self) -> bytes:
        """The two sides interleaved as a stereo 16-bit WAV."""
        length = max(len(self.caller), len(self.agent)) // 2
        frames = np.zeros((length, 2), dtype="<i2")
        left = np.frombuffer(bytes(self.caller[: len(self.caller) // 2 * 2]), dtype="<i2")
        right = np.frombuffer(bytes(self.agent[: len(self.agent) // 2 * 2]), dtype="<i2")
        frames[: len(left), 0] = left
        frames[: len(right), 1] = right
        out = io.BytesIO()
        with wave.open(out, "wb") as handle:
            handle.setnchannels(2)
            handle.setsampwidth(2)
            handle.setframerate(RATE)
            handle.writeframes(frames.tobytes())
        return out.getvalue()


def recording_key(org_id: str, conversation_id: str) -> str:
    """Key of a call's stereo recording."""
    return CALL_RECORDING.format(org_id=org_id, conversation_id=conversation_id)


async def save_call_recording(
    backends: Backends, *, org_id: str, conversation_id: str, recorder: StereoRecorder
) -> dict[str, Any] | None:
    """Store the call's recording; its link (None when nothing was recorded or it failed)."""
    if not recorder.caller and not recorder.agent:
        return None
    key = recording_key(org_id, conversation_id)
    try:
        wav = recorder.wav()
        await backends.objects.put(key, wav, content_type="audio/wav")
    except Exception:  # a lost recording must not break the call's ending
        log.exception("call_recording_failed")
        return None
    return {
        "key": key,
        "url": f"/v1/conversations/{conversation_id}/call-recording",
        "channels": {"left": "caller", "right": "agent"},
        "sample_rate": RATE,
        "duration_ms": round(max(len(recorder.caller), len(recorder.agent)) / 2 / RATE * 1000, 1),
        "bytes": len(wav),
    }
