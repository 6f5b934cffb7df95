"""Recordings of voice turns: WAV files in the object store, linked from the messages.

Each turn's audio is stored under the `recording` key layout
(`orgs/{org}/conversations/{conversation}/recordings/{turn:06d}-{speaker}.wav`), where the
turn is the user message's sequence number and the speaker `user` or `agent`. The agent's
recording holds the audio that was actually sent, so a reply cut short by a barge-in is
cut short in its recording too. The message gets a `recording` object pointing at it.
Recording happens when the `voice_recording` setting is on and the `voice.recording` flag is
on for the organisation.
"""

from __future__ import annotations

from typing import Any, Literal

import structlog

from vocalis.conversations import spoken
from vocalis.core import object_keys
from vocalis.core.audio import duration_seconds, wav_encode
from vocalis.core.backends import Backends
from vocalis.flags.registry import VOICE_RECORDING
from vocalis.flags.service import flag_value

log = structlog.get_logger(__name__)

Speaker = Literal["user", "agent"]
WAV = "audio/wav"


def recording_enabled(backends: Backends, org_id: str) -> bool:
    """Whether this organisation's voice turns are recorded."""
    return backends.settings.voice_recording and flag_value(VOICE_RECORDING, org_id)


async def save_recording(
    backends: Backends,
    *,
    org_id: str,
    conversation_id: str,
    turn: int,
    speaker: Speaker,
    pcm16: bytes,
    sample_rate: int,
) -> dict[str, Any]:
    """Store one side of a turn as WAV; returns the link to put on its message."""
    key = object_keys.recording(org_id, conversation_id, turn, speaker)
    wav = wav_encode(pcm16, sample_rate)
    await backends.objects.put(key, wav, content_type=WAV)
    return {
        "key": key,
        "url": f"/v1/conversations/{conversation_id}/recordings/{turn:06d}-{speaker}.wav",
        "speaker": speaker,
        "content_type": WAV,
        "sample_rate": sample_rate,
        "duration_ms": round(duration_seconds(pcm16, sample_rate) * 1000.0, 1),
        "bytes": len(wav),
    }


async def record_turn(
    backends: Backends,
    *,
    org_id: str,
    conversation_id: str,
    turn: int,
    sides: list[tuple[Speaker, str | None, bytes, int]],
) -> None:
    """Store and link each (speaker, message id, PCM16, rate) side with audio; never raises."""
    for speaker, message_id, pcm16, rate in sides:
        if not pcm16:
            continue
        try:
            link = await save_recording(
                backends,
                org_id=org_id,
                conversation_id=conversation_id,
                turn=turn,
                speaker=speaker,
                pcm16=pcm16,
                sample_rate=rate,
            )
            if message_id is not None:
                await spoken.link_recording(
                    backends, org_id=org_id, message_id=message_id, link=link
                )
        except Exception:  # a lost recording must not break the conversation
            log.exception("recording_failed", speaker=speaker, turn=turn)
