"""Feeding frames into a pipeline and reading what comes out."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TypeVar

from vocalis.voice.frames import AudioIn, EndFrame, Frame
from vocalis.voice.processors import Pipeline

F = TypeVar("F", bound=Frame)


def audio_frames(pcm: bytes, sample_rate: int = 16000, chunk_ms: int = 20) -> list[AudioIn]:
    """PCM cut into `AudioIn` frames of `chunk_ms`, as a client would stream it."""
    step = sample_rate * chunk_ms // 1000 * 2
    return [
        AudioIn(pcm=pcm[i : i + step], sample_rate=sample_rate) for i in range(0, len(pcm), step)
    ]


async def run_to_end(
    pipeline: Pipeline, frames: Iterable[Frame], timeout: float = 30.0
) -> list[Frame]:
    """Feed `frames` and an EndFrame; return everything that came out before the EndFrame."""
    for frame in frames:
        await pipeline.queue_frame(frame)
    await pipeline.queue_frame(EndFrame())
    out: list[Frame] = []
    while not isinstance(frame := await asyncio.wait_for(pipeline.output.get(), timeout), EndFrame):
        out.append(frame)
    return out


async def next_of(pipeline: Pipeline, kind: type[F], seen: list[Frame], timeout: float = 10.0) -> F:
    """Read output until a frame of `kind` arrives; everything read is appended to `seen`."""
    while True:
        frame = await asyncio.wait_for(pipeline.output.get(), timeout)
        seen.append(frame)
        if isinstance(frame, kind):
            return frame


def of_type(frames: Sequence[Frame], kind: type[F]) -> list[F]:
    """The frames of one type, in order."""
    return [frame for frame in frames if isinstance(frame, kind)]


def events(frames: Sequence[Frame]) -> list[str]:
    """Names of the non-audio frames, in order."""
    return [type(f).__name__ for f in frames if not isinstance(f, AudioIn)]
