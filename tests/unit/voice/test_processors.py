"""The processor base class and pipeline: ordering, errors, interruption, metrics."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.voice.pipeline_helpers import of_type, run_to_end
from vocalis.voice.frames import (
    BargeIn,
    EndFrame,
    ErrorFrame,
    Frame,
    Interruption,
    LLMTextDelta,
    MetricFrame,
    TranscriptFinal,
)
from vocalis.voice.processors import Direction, FrameProcessor, Pipeline


def delta(text: str) -> LLMTextDelta:
    return LLMTextDelta(text=text, response_id="resp_1")


class Upper(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, LLMTextDelta):
            frame = delta(frame.text.upper())
        await self.push_frame(frame, direction)


class FailsOnBoom(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, LLMTextDelta) and frame.text == "boom":
            raise RuntimeError("exploded")
        await self.push_frame(frame, direction)


class Slow(FrameProcessor):
    """Takes a long time per text frame; records what it finished and what it was told."""

    def __init__(self, *, interruptible: bool = True) -> None:
        super().__init__()
        self.interruptible = interruptible  # type: ignore[misc]
        self.started = asyncio.Event()
        self.finished: list[str] = []
        self.interruptions: list[tuple[str, list[Frame]]] = []

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, LLMTextDelta | TranscriptFinal):
            self.started.set()
            await asyncio.sleep(0.5)
            self.finished.append(frame.text)
        await self.push_frame(frame, direction)

    async def on_interruption(self, frame: Interruption, dropped: list[Frame]) -> None:
        self.interruptions.append((frame.reason, dropped))


async def test_frames_pass_through_every_processor_in_order() -> None:
    async with Pipeline([Upper(), FrameProcessor()]) as pipeline:
        out = await run_to_end(pipeline, [delta("a"), delta("b"), delta("c")])
    assert [f.text for f in of_type(out, LLMTextDelta)] == ["A", "B", "C"]


async def test_a_failure_becomes_an_error_frame_and_later_frames_still_flow() -> None:
    async with Pipeline([FailsOnBoom()]) as pipeline:
        out = await run_to_end(pipeline, [delta("a"), delta("boom"), delta("b")])
    assert [type(f).__name__ for f in out] == ["LLMTextDelta", "ErrorFrame", "LLMTextDelta"]
    error = of_type(out, ErrorFrame)[0]
    assert (error.processor, error.code) == ("FailsOnBoom", "internal_error")
    assert "exploded" in error.message


async def test_an_interruption_overtakes_queued_frames_and_cancels_the_current_one() -> None:
    slow = Slow()
    async with Pipeline([slow]) as pipeline:
        for text in ("one", "two", "three"):
            await pipeline.queue_frame(delta(text))
        await slow.started.wait()
        await pipeline.queue_frame(BargeIn())
        first_out = await asyncio.wait_for(pipeline.output.get(), 0.2)  # not after 0.5 s of work
        out = await run_to_end(pipeline, [])
    assert isinstance(first_out, BargeIn)
    assert slow.finished == [] and of_type(out, LLMTextDelta) == []
    reason, dropped = slow.interruptions[0]
    assert reason == "barge_in" and [f.text for f in of_type(dropped, LLMTextDelta)] == [
        "two",
        "three",
    ]


async def test_an_interruption_keeps_user_frames_queued() -> None:
    slow = Slow()
    async with Pipeline([slow]) as pipeline:
        await pipeline.queue_frame(delta("reply"))
        await pipeline.queue_frame(TranscriptFinal(text="what the user said"))
        await slow.started.wait()
        await pipeline.queue_frame(Interruption())
        out = await run_to_end(pipeline, [])
    assert [f.text for f in of_type(out, TranscriptFinal)] == ["what the user said"]
    assert slow.finished == ["what the user said"]


async def test_a_non_interruptible_processor_finishes_its_work() -> None:
    slow = Slow(interruptible=False)
    async with Pipeline([slow]) as pipeline:
        await pipeline.queue_frame(delta("keep me"))
        await slow.started.wait()
        await pipeline.queue_frame(BargeIn())
        out = await run_to_end(pipeline, [])
    assert [type(f).__name__ for f in out] == ["BargeIn", "LLMTextDelta"]
    assert slow.interruptions == []


async def test_metrics_reach_the_observer_and_travel_downstream() -> None:
    seen: list[tuple[str, str, float]] = []

    class Measures(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: Direction) -> None:
            if isinstance(frame, LLMTextDelta):
                await self.report_metric("ttfb_seconds", 0.25)
            await self.push_frame(frame, direction)

    async with Pipeline([Measures()], metrics_observer=lambda *m: seen.append(m)) as pipeline:
        out = await run_to_end(pipeline, [delta("x")])
    assert ("Measures", "ttfb_seconds", 0.25) in seen
    assert any(name == "process_seconds" for _, name, _ in seen)
    assert of_type(out, MetricFrame)[0].value == 0.25


async def test_an_end_frame_stops_each_worker_after_queued_work() -> None:
    upper = Upper()
    async with Pipeline([upper]) as pipeline:
        out = await run_to_end(pipeline, [delta("last")])
        await asyncio.sleep(0)
        assert upper._worker is not None and upper._worker.done()
    assert [f.text for f in of_type(out, LLMTextDelta)] == ["LAST"]


async def test_upstream_frames_leave_at_the_head() -> None:
    class Complains(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: Direction) -> None:
            await self.push_frame(ErrorFrame(message="upstream"), Direction.UPSTREAM)

    async with Pipeline([FrameProcessor(), Complains()]) as pipeline:
        await pipeline.queue_frame(delta("x"))
        frame = await asyncio.wait_for(pipeline.upstream.get(), 1)
    assert isinstance(frame, ErrorFrame) and frame.message == "upstream"


def test_a_pipeline_needs_processors() -> None:
    with pytest.raises(ValueError):
        Pipeline([])


async def test_end_frame_is_not_dropped_by_an_interruption() -> None:
    slow = Slow()
    async with Pipeline([slow]) as pipeline:
        await pipeline.queue_frame(delta("a"))
        await pipeline.queue_frame(EndFrame())
        await slow.started.wait()
        await pipeline.queue_frame(BargeIn())
        frames = [await asyncio.wait_for(pipeline.output.get(), 1) for _ in range(2)]
    assert [type(f).__name__ for f in frames] == ["BargeIn", "EndFrame"]
