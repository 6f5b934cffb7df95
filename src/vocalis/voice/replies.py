"""The agent's replies in a voice conversation, through the conversations service.

`AgentReplies.run` is the pipeline's `ReplyRunner`: it begins a turn (storing the user's
message), runs the agent inside the spoken turn's `voice.turn` span and yields its text
deltas and tool calls. `settle` stores what the listener heard once the reply is over, and
the turn's recordings.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from opentelemetry import trace

from vocalis.agents.events import HandoffEvent, TextDelta, ToolCallEvent, ToolResultEvent
from vocalis.agents.runtime import AgentRuntime
from vocalis.conversations import service as conversations
from vocalis.conversations import spoken
from vocalis.core.backends import Backends
from vocalis.voice.events import ConversationEndedEvent, HandoffRequestedEvent, VoiceEventSink
from vocalis.voice.frames import AgentToolCall, AgentToolResult, Frame
from vocalis.voice.pipeline import ReplyRequest
from vocalis.voice.recordings import Speaker, record_turn, recording_enabled

log = structlog.get_logger(__name__)


class TurnStarter(Protocol):
    """Begins an agent turn answering (text, user message id); a transport may add to the
    turn (its session's instructions, client tools, tool outputs). With `speculative` the
    turn stores nothing until committed (`conversations.begin_turn`); a starter that cannot
    do that raises `SpeculationRefused`."""

    def __call__(
        self, text: str, message_id: str | None, *, speculative: bool = False
    ) -> Awaitable[conversations.Turn]: ...


@dataclass
class ReplyRecord:
    """What the conversation knows about one reply (filled while it runs)."""

    request: ReplyRequest
    user_sequence: int | None = None
    turn: conversations.Turn | None = None
    begun: asyncio.Event = field(default_factory=asyncio.Event)  # the turn began (or failed)
    result: conversations.TurnResult | None = None
    error: BaseException | None = None
    settled: bool = False
    discarded: bool = False  # a speculation thrown away (it keeps nothing, stops at once)


@dataclass(frozen=True)
class HeardReply:
    """How a reply ended for the listener."""

    heard: str
    cut_short: bool
    agent_audio: bytes = b""
    agent_rate: int | None = None


class AgentReplies:
    """Runs a conversation's replies and keeps what was heard of them."""

    def __init__(
        self,
        *,
        backends: Backends,
        runtime: AgentRuntime,
        org_id: str,
        conversation_id: str,
        emit: VoiceEventSink,
        begin_turn: TurnStarter | None = None,
    ) -> None:
        self.backends = backends
        self.runtime = runtime
        self.org_id = org_id
        self.conversation_id = conversation_id
        self._emit = emit
        self._begin_turn = begin_turn or self._conversation_turn
        self.records: dict[str, ReplyRecord] = {}
        self.speculations: dict[str, ReplyRecord] = {}  # prepared, not committed
        self.idle = asyncio.Event()  # set while no reply is in progress
        self.idle.set()

    def run(self, request: ReplyRequest) -> AsyncIterator[str | Frame]:
        """One agent turn: its text deltas and tool frames; results land on the record.

        A speculative request (`request.speculative`) runs a turn that keeps nothing until
        `commit`; closing the iterator before that leaves no trace. The reply is known
        (and can be committed) from this call on.
        """
        record = ReplyRecord(request)
        if request.speculative:
            for stale in self.speculations.values():  # one speculation at a time
                stale.discarded = True
                if stale.turn is not None:
                    stale.turn.discard()
            self.speculations = {request.response_id: record}
        else:
            self.records[request.response_id] = record
            self.idle.clear()
        return self._run(record)

    async def _run(self, record: ReplyRecord) -> AsyncIterator[str | Frame]:
        request = record.request
        span = request.turn.span if request.turn is not None else trace.INVALID_SPAN
        try:
            with trace.use_span(span, end_on_exit=False):
                turn = await self._begin_turn(
                    request.text,
                    request.user_item_id or None,
                    speculative=request.speculative,
                )
                record.turn = turn
                record.begun.set()
                if record.discarded:  # dropped while its turn was being begun
                    turn.discard()
                    await turn.release()
                    return
                turn.reply_id = request.reply_item_id
                record.user_sequence = int(turn.user_message["sequence"])
                events = turn.events()
                try:
                    async for event in events:
                        item = await self._event(record, event)
                        if item is not None:
                            yield item
                finally:
                    # Closing the turn cancels the agent and releases the conversation's lock.
                    await events.aclose()  # type: ignore[attr-defined]
        except Exception as exc:
            record.error = exc
            record.begun.set()
            if not (isinstance(exc, conversations.SpeculationRefused) or record.discarded):
                log.warning("voice_reply_failed", error=str(exc))
            raise
        finally:
            record.begun.set()
            if self.speculations.get(request.response_id) is record:
                # Closed before it was committed: dropped, it leaves nothing behind.
                del self.speculations[request.response_id]
                if record.turn is not None:
                    record.turn.discard()
                    await record.turn.release()  # also when its events never started

    def discard(self, response_id: str) -> None:
        """Throw a speculative reply away: its turn is discarded now, so that what waits
        for the turn to be kept (its tools, its stored reply) gives up at once, and a turn
        still being begun is discarded as soon as it is.

        Cancelling the reply's task alone is not enough: a cancellation can be lost on its
        way (on Python 3.11 `asyncio.wait_for`, which redis-py writes commands through,
        returns a result that came just as its caller was cancelled), and the turn then runs
        on to wait for ever for a decision nobody makes."""
        record = self.speculations.get(response_id)
        if record is None:
            return
        record.discarded = True
        if record.turn is not None:
            record.turn.discard()

    async def commit(self, response_id: str) -> bool:
        """Keep a speculative reply (the turn ended where it was prepared): its user message
        is stored now, the rest as it completes. False when it is gone (failed, refused)."""
        record = self.speculations.get(response_id)
        if record is None:
            return False
        await record.begun.wait()
        if self.speculations.pop(response_id, None) is None or record.turn is None:
            return False  # it failed, was refused or was dropped meanwhile
        if record.error is not None or record.discarded:
            return False
        self.records[response_id] = record
        self.idle.clear()
        await record.turn.commit()
        return True

    async def _conversation_turn(
        self, text: str, message_id: str | None, *, speculative: bool = False
    ) -> conversations.Turn:
        return await conversations.begin_turn(
            backends=self.backends,
            runtime=self.runtime,
            org_id=self.org_id,
            conversation_id=self.conversation_id,
            content=text,
            message_id=message_id,
            speculative=speculative,
        )

    async def _event(
        self, record: ReplyRecord, event: conversations.TurnEvent
    ) -> str | Frame | None:
        response_id = record.request.response_id
        if isinstance(event, TextDelta):
            return event.text
        if isinstance(event, ToolCallEvent):
            return AgentToolCall(
                response_id=response_id,
                call_id=event.id,
                name=event.name,
                arguments=event.arguments,
            )
        if isinstance(event, ToolResultEvent):
            return AgentToolResult(
                response_id=response_id,
                call_id=event.id,
                name=event.name,
                output=event.content,
                is_error=event.is_error,
            )
        if isinstance(event, conversations.TurnResult):
            record.result = event
        elif isinstance(event, HandoffEvent):
            await self._emit(HandoffRequestedEvent(reason=event.reason))
        return None

    async def settle(self, response_id: str, outcome: HeardReply) -> str | None:
        """Store what was heard of a finished reply and its recordings; the kept message id."""
        record = self.records.get(response_id)
        if record is None or record.settled:
            return None
        record.settled = True
        try:
            return await self._settle(record, outcome)
        finally:
            self.records.pop(response_id, None)
            if not self.records:
                self.idle.set()

    async def _settle(self, record: ReplyRecord, outcome: HeardReply) -> str | None:
        request = record.request
        message_id = request.reply_item_id if record.result is not None else None
        if outcome.cut_short:
            message_id = await spoken.keep_heard_reply(
                backends=self.backends,
                runtime=self.runtime,
                org_id=self.org_id,
                conversation_id=self.conversation_id,
                message_id=request.reply_item_id,
                heard=outcome.heard.strip(),
                user_sequence=record.user_sequence,
                in_history=record.result is not None,
            )
        if record.user_sequence is not None:
            await self._record(record, record.user_sequence, message_id, outcome)
        return message_id

    async def _record(
        self, record: ReplyRecord, turn: int, message_id: str | None, outcome: HeardReply
    ) -> None:
        if not recording_enabled(self.backends, self.org_id):
            return
        sides: list[tuple[Speaker, str | None, bytes, int]] = []
        transcript = record.request.transcript
        if transcript is not None and transcript.audio:
            sides.append(
                ("user", record.request.user_item_id, transcript.audio, transcript.sample_rate)
            )
        if outcome.agent_audio and outcome.agent_rate:
            sides.append(("agent", message_id, outcome.agent_audio, outcome.agent_rate))
        await record_turn(
            self.backends,
            org_id=self.org_id,
            conversation_id=self.conversation_id,
            turn=turn,
            sides=sides,
        )

    async def store_latency(self, message_id: str, latency_ms: dict[str, float]) -> None:
        """Keep the spoken turn's latency breakdown on its stored message."""
        await spoken.store_turn_latency(
            self.backends, org_id=self.org_id, message_id=message_id, latency_ms=latency_ms
        )

    async def ended(self) -> None:
        """The agent's reply ended the conversation: say so, with the stored reason."""
        ended = await conversations.get_conversation(
            self.backends, org_id=self.org_id, conversation_id=self.conversation_id
        )
        await self._emit(ConversationEndedEvent(reason=str(ended.get("ended_reason") or "")))

    async def settle_unfinished(self) -> None:
        """Replies that never reached the listener: nothing of them was heard."""
        for response_id in list(self.records):
            await self.settle(response_id, HeardReply(heard="", cut_short=True))
