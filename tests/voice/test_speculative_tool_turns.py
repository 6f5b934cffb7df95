"""A turn answered by a tool call (transfer_to_human, end_conversation) with speculative
replies on, frame by frame: the agent stage and every stage after it, on the real
conversations service and agent runtime (the extractive responder), speech engines left out.

A speculative turn's tools wait until the turn is kept. When the caller goes on, the
speculation is dropped: its task is cancelled. A cancellation can be lost on the way (on
Python 3.11 `asyncio.wait_for`, which redis-py writes commands through while `begin_turn`
takes the turn lock, returns a result that came just as its caller was cancelled), and the
turn then ran on to its tool call and waited there for a decision nobody made: the agent
stage waited on it for ever and the turn the caller did end was never answered (seen as
phone calls that got no reply at all under load). Dropping a speculation now discards its
turn first, so nothing of it waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.agents_api.harness import AgentApi, sqlite_agent_api  # noqa: F401  (fixture)
from vocalis.conversations import service as conversations
from vocalis.voice.events import (
    HandoffRequestedEvent,
    ResponseDoneEvent,
    VoiceErrorEvent,
    VoiceEvent,
)
from vocalis.voice.frames import SpeechPaused, SpeechResumed, SpeechStopped, TranscriptFinal
from vocalis.voice.output import ConversationOutput
from vocalis.voice.pipeline import (
    ConversationAgentProcessor,
    SpeculationGate,
    SpeechGate,
    UserSpeechStarted,
)
from vocalis.voice.processors import (
    AudioPlayout,
    Pipeline,
    SentenceChunkerProcessor,
    TTSProcessor,
)
from vocalis.voice.replies import AgentReplies, TurnStarter

TRANSFER = "Please transfer me to a real person."
STARTED_AT_PAUSE = "Please transfer me"  # a request for a person too: a tool call


class SilentTTS:
    """A text-to-speech engine that speaks every sentence as 100 ms of silence."""

    name = "silent"
    sample_rate = 8000

    async def synthesize_stream(self, text: str, voice: str | None = None) -> AsyncIterator[bytes]:
        await asyncio.sleep(0)
        yield b"\x00\x00" * 800


@dataclass
class Call:
    """A conversation's voice side without speech engines: frames in, events out."""

    api: AgentApi
    org_id: str
    conversation_id: str
    events: list[VoiceEvent] = field(default_factory=list)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def sink(self, event: VoiceEvent) -> None:
        self.events.append(event)

    def replies(self, begin_turn: TurnStarter | None = None) -> AgentReplies:
        return AgentReplies(
            backends=self.api.backends,
            runtime=self.api.runtime,
            org_id=self.org_id,
            conversation_id=self.conversation_id,
            emit=self.sink,
            begin_turn=begin_turn,
        )

    def pipeline(self, replies: AgentReplies) -> Pipeline:
        """The stages from the agent to the conversation's output, as a call assembles them."""
        output = ConversationOutput(self.sink, replies)
        agent = ConversationAgentProcessor(
            replies.run,
            auto_respond=lambda: True,
            modalities=lambda: ("audio",),
            commit=replies.commit,
            discard=replies.discard,
            busy=lambda: bool(replies.records) or output.has_open_replies(),
        )
        return Pipeline(
            [
                agent,
                SentenceChunkerProcessor(),
                SpeechGate(),
                TTSProcessor(SilentTTS(), sample_rate=8000),  # type: ignore[arg-type]
                SpeculationGate(),
                AudioPlayout(lead_ms=200, realtime=False),
                output,
            ]
        )

    async def answered(self, timeout: float = 20.0) -> ResponseDoneEvent:
        """The reply to the turn (the test fails when none comes)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.of(ResponseDoneEvent):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the turn got no reply; events: {self.events}")
            await asyncio.sleep(0.01)
        return self.of(ResponseDoneEvent)[0]


@pytest.fixture
async def call(sqlite_agent_api: AgentApi) -> Call:  # noqa: F811
    """A conversation with an agent that transfers to a person and ends conversations."""
    api = sqlite_agent_api
    tenant = await api.tenant("Acme")
    agent = await api.agent(
        tenant,
        tools=[
            {"type": "transfer_to_human", "destination": "+15550100999"},
            {"type": "end_conversation"},
        ],
    )
    conversation = await api.conversation(tenant, agent["id"])
    return Call(api, tenant.org_id, conversation["id"])


async def went_on_then_ended(pipeline: Pipeline, *, went_on: asyncio.Event | None = None) -> None:
    """A turn with two pauses: at the first the caller has said STARTED_AT_PAUSE (a reply
    is prepared, then dropped: the caller goes on), at the second TRANSFER, where it ends."""
    queue = pipeline.queue_frame
    await queue(UserSpeechStarted(audio_start_ms=0.0, preroll=b"", sample_rate=8000))
    await queue(SpeechPaused(audio_end_ms=500.0, silence_ms=200.0))
    await queue(TranscriptFinal(text=STARTED_AT_PAUSE, sample_rate=8000, speculative=True))
    if went_on is not None:
        await went_on.wait()
    await queue(SpeechResumed())
    await queue(SpeechPaused(audio_end_ms=1000.0, silence_ms=200.0))
    await queue(TranscriptFinal(text=TRANSFER, sample_rate=8000, speculative=True))
    await queue(SpeechStopped(audio_end_ms=1000.0, speech_ms=1000.0, silence_ms=500.0))
    await queue(TranscriptFinal(text=TRANSFER, sample_rate=8000, confirms_speculation=True))


async def test_a_turn_is_answered_after_a_dropped_speculation_lost_its_cancellation(
    call: Call,
) -> None:
    # The first speculation's turn begins inside a task that absorbs a cancellation (as
    # `asyncio.wait_for` does on Python 3.11): the caller goes on (a drop) right then.
    api = call.api
    went_on = asyncio.Event()
    begun = 0

    async def begin_turn(
        text: str, message_id: str | None, *, speculative: bool = False
    ) -> conversations.Turn:
        nonlocal begun
        begun += 1
        first = begun == 1

        async def absorbing() -> conversations.Turn:
            if first:
                try:
                    went_on.set()
                    await asyncio.sleep(5.0)  # the drop's cancellation lands here
                except asyncio.CancelledError:
                    pass  # ... and is absorbed: the turn begins all the same
            return await conversations.begin_turn(
                backends=api.backends,
                runtime=api.runtime,
                org_id=call.org_id,
                conversation_id=call.conversation_id,
                content=text,
                message_id=message_id,
                speculative=speculative,
            )

        return await asyncio.ensure_future(absorbing())

    replies = call.replies(begin_turn)
    async with call.pipeline(replies) as pipeline:
        await went_on_then_ended(pipeline, went_on=went_on)
        done = await call.answered()
        assert done.status == "completed", done
        assert done.speculated and done.speculations_dropped == 1
        assert call.of(HandoffRequestedEvent), "the transfer was asked for"
        assert len(call.of(ResponseDoneEvent)) == 1  # nothing of the dropped one
        assert not call.of(VoiceErrorEvent)
    assert not replies.speculations and not replies.records


@pytest.mark.parametrize("went_on_after_s", [0.0, 0.001, 0.003, 0.005, 0.01, 0.03, 0.1])
async def test_a_transfer_is_answered_however_late_the_speculation_before_it_is_dropped(
    call: Call, went_on_after_s: float
) -> None:
    # The same turn on the real path: the drop lands wherever the first speculation is
    # (beginning its turn, running the agent, its tool call waiting to be kept).
    went_on = asyncio.Event()
    asyncio.get_running_loop().call_later(went_on_after_s, went_on.set)
    replies = call.replies()
    async with call.pipeline(replies) as pipeline:
        await went_on_then_ended(pipeline, went_on=went_on)
        done = await call.answered()
        assert done.status == "completed", done
        assert call.of(HandoffRequestedEvent)
        assert len(call.of(ResponseDoneEvent)) == 1
        assert not call.of(VoiceErrorEvent)
