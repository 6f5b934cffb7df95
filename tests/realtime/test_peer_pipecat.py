"""Pipecat's OpenAI Realtime service, unpatched, pointed at our realtime WebSocket.

A minimal pipeline drives it, as a Pipecat bot would without a transport: frames are queued
into the service and a sink after it collects what it pushes downstream. Pipecat treats
every `error` event as fatal, so a turn only completes if the server never answers a valid
event with one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.realtime.events import SessionProperties
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.workers.runner import WorkerRunner

from tests.voice.helpers import VoiceServer, chunks, loudness, silence_in, speech, wire_format
from vocalis.adapters.espeak_tts import EspeakTTS

TURN_TIMEOUT_S = 60
PCM24 = wire_format("pcm24")


@dataclass
class Collected:
    """What the service pushed downstream, and the errors the pipeline reported."""

    text: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    errors: list[str] = field(default_factory=list)
    responses_ended: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, done: Any, timeout: float = TURN_TIMEOUT_S) -> None:
        """Wait until `done()` holds; fail at once on a pipeline error."""
        async with asyncio.timeout(timeout):
            while not done():
                assert not self.errors, self.errors
                self.changed.clear()
                await self.changed.wait()
        assert not self.errors, self.errors


class Sink(FrameProcessor):
    """The end of the pipeline: records the frames that matter to the tests."""

    def __init__(self, into: Collected) -> None:
        super().__init__()
        self.into = into

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMTextFrame):
            self.into.text.append(frame.text)
        elif isinstance(frame, TTSAudioRawFrame):
            self.into.audio.extend(frame.audio)
        elif isinstance(frame, LLMFullResponseEndFrame):
            self.into.responses_ended += 1
        self.into.changed.set()
        await self.push_frame(frame, direction)


@dataclass
class Bot:
    """A running pipeline around the realtime service."""

    worker: PipelineWorker
    collected: Collected

    async def queue(self, frame: Frame) -> None:
        """Put a frame into the pipeline."""
        await self.worker.queue_frame(frame)


@contextlib.asynccontextmanager
async def pipecat_bot(
    server: VoiceServer, session: SessionProperties | None = None
) -> AsyncIterator[Bot]:
    """The realtime service, connected to our server, in a running pipeline."""
    ws_base = server.live.base_url.replace("http://", "ws://") + "/v1/realtime"
    llm = OpenAIRealtimeLLMService(
        api_key=server.live.tenant.key,
        base_url=ws_base,
        settings=OpenAIRealtimeLLMService.Settings(
            model=server.agent_id, session_properties=session or SessionProperties()
        ),
    )
    collected = Collected()
    worker = PipelineWorker(
        Pipeline([llm, Sink(collected)]),
        enable_rtvi=False,
        idle_timeout_secs=None,
        check_dangling_tasks=False,
    )

    @worker.event_handler("on_pipeline_error")
    async def on_error(_: Any, frame: ErrorFrame) -> None:
        collected.errors.append(frame.error)
        collected.changed.set()

    runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    try:
        yield Bot(worker, collected)
    finally:
        await worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, 30)


async def test_pipecat_completes_a_text_turn(voice_server: VoiceServer) -> None:
    session = SessionProperties(output_modalities=["text"])
    async with pipecat_bot(voice_server, session) as bot:
        context = LLMContext(messages=[{"role": "user", "content": "What is the refund policy?"}])
        await bot.queue(LLMContextFrame(context))
        got = bot.collected
        await got.until(lambda: got.responses_ended >= 1 and got.text)
        reply = "".join(got.text).lower()
        assert "thirty days" in reply, reply


async def test_pipecat_completes_an_audio_turn(
    voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    question = await speech(espeak, "How long does shipping to Canada take?", PCM24)
    async with pipecat_bot(voice_server) as bot:
        got = bot.collected
        for chunk in chunks(question + silence_in(PCM24, 1.5), PCM24, 20):
            await bot.queue(InputAudioRawFrame(audio=chunk, sample_rate=24000, num_channels=1))
            await asyncio.sleep(0.02)  # a caller speaks in real time
        await got.until(lambda: got.responses_ended >= 1 and len(got.audio) > 24000)
        assert loudness(bytes(got.audio)) > 300, "the reply is speech, not silence"
