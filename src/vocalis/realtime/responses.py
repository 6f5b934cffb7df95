"""Text responses of a realtime session: one agent turn streamed through the response emitter.

A response runs in its own task, so the receive loop keeps reading while the agent answers.
A cancel at any moment — even one that lands before the task ran — ends the response with
`response.done` (status `cancelled`) and gives the conversation's turn lock back.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import structlog

from vocalis.agents.events import HandoffEvent, TextDelta, ToolCallEvent, ToolResultEvent
from vocalis.conversations import service as conversations
from vocalis.core import errors
from vocalis.core.errors import VocalisError
from vocalis.core.ids import new_id
from vocalis.realtime.emitter import ResponseEmitter
from vocalis.realtime.protocol import (
    CancelReason,
    InputTokenDetails,
    OutputTokenDetails,
    Response,
    ResponseParams,
    ResponseUsage,
    StatusDetails,
    StatusError,
    VocalisCitation,
    VocalisHandoffRequested,
    VocalisResponse,
)
from vocalis.realtime.sender import ClientEventError

if TYPE_CHECKING:
    from vocalis.realtime.session import RealtimeSession

log = structlog.get_logger(__name__)


@dataclass
class ActiveResponse:
    """The text response in progress: its events, its turn and the task running it."""

    emitter: ResponseEmitter
    turn: conversations.Turn
    task: asyncio.Task[None]


class TextResponses:
    """The text responses of one session (one at a time)."""

    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.active: ActiveResponse | None = None

    def responding(self) -> bool:
        """Whether a response is in progress."""
        return self.active is not None and not self.active.emitter.finished

    async def create(
        self, text: str, *, message_id: str | None = None, params: ResponseParams | None = None
    ) -> None:
        """Start the agent's answer to `text` in its own task."""
        if self.responding():
            raise ClientEventError(
                errors.REALTIME_RESPONSE_ACTIVE,
                "A response is already in progress; cancel it or wait for `response.done`.",
            )
        session = self.session
        turn = await session.begin_turn(text, message_id=message_id, params=params)
        response = Response(
            id=new_id("resp"),
            status="in_progress",
            conversation_id=session.conversation_id,
            output_modalities=["text"],  # spoken responses are the voice serializer's
            max_output_tokens=session.session.max_output_tokens,
            metadata=params.metadata if params else None,
        )
        emitter = ResponseEmitter(session.sender, response, previous_item_id=session.last_item_id)
        # Announced before the task starts: a cancel that comes at once has a response to end.
        await emitter.created()
        task = asyncio.create_task(self._respond(turn, emitter))
        self.active = ActiveResponse(emitter=emitter, turn=turn, task=task)

    async def cancel(self, reason: CancelReason = "client_cancelled") -> None:
        """Stop the running response, if any: it ends with `response.done` and frees the turn."""
        active = self.active
        if active is None:
            return
        if not active.task.done():
            active.task.cancel()
            await asyncio.gather(active.task, return_exceptions=True)
        # A task cancelled before it ran never entered `_respond`: finish for it.
        await active.turn.release()
        details = StatusDetails(type="cancelled", reason=reason)
        await active.emitter.done("cancelled", self._vocalis(), details=details)

    def _vocalis(self) -> VocalisResponse:
        return VocalisResponse(conversation_id=self.session.conversation_id)

    async def _respond(self, turn: conversations.Turn, emitter: ResponseEmitter) -> None:
        try:
            await self._stream(turn, emitter)
        except asyncio.CancelledError:
            details = StatusDetails(type="cancelled", reason="client_cancelled")
            await emitter.done("cancelled", self._vocalis(), details=details)
        except VocalisError as exc:
            log.warning("realtime_response_failed", code=exc.code, detail=exc.detail)
            await self.session.sender.error(exc.code, exc.detail, server=exc.status >= 500)
            await self._failed(emitter, exc.code, exc.detail)
        except Exception:
            log.exception("realtime_response_failed")
            await self._failed(emitter, errors.INTERNAL_ERROR, "failed")
        finally:
            await turn.release()

    async def _failed(self, emitter: ResponseEmitter, code: str, message: str) -> None:
        error = StatusError(type="server_error", code=code, message=message)
        details = StatusDetails(type="failed", error=error)
        await emitter.done("failed", self._vocalis(), details=details)

    async def _stream(self, turn: conversations.Turn, emitter: ResponseEmitter) -> None:
        result: conversations.TurnResult | None = None
        events = turn.events()
        try:
            async for event in events:
                if isinstance(event, conversations.TurnResult):
                    result = event
                else:
                    await self._emit(turn, emitter, event)
        finally:
            # Closing the turn stops the agent and releases the conversation's lock.
            await events.aclose()  # type: ignore[attr-defined]
        # Only now has the turn released the conversation's lock: a client that sends
        # its next message on `response.done` must not find the conversation busy.
        if result is not None:
            await self._completed(emitter, result)

    async def _emit(self, turn: conversations.Turn, emitter: ResponseEmitter, event: Any) -> None:
        """One agent event as protocol events."""
        if isinstance(event, TextDelta):
            await emitter.text(event.text)
            turn.reply_id = emitter.last_message_id or turn.reply_id
        elif isinstance(event, ToolCallEvent):
            await emitter.function_call(
                call_id=event.id, name=event.name, arguments=event.arguments
            )
        elif isinstance(event, ToolResultEvent):
            await emitter.tool_result(
                call_id=event.id, name=event.name, output=event.content, is_error=event.is_error
            )
        elif isinstance(event, HandoffEvent):
            await self.session.sender.send(
                VocalisHandoffRequested(
                    conversation_id=self.session.conversation_id, reason=event.reason
                )
            )

    async def _completed(self, emitter: ResponseEmitter, result: conversations.TurnResult) -> None:
        final = result.final
        usage = final.usage
        vocalis = VocalisResponse(
            conversation_id=self.session.conversation_id,
            message_id=result.message["_id"],
            citations=[VocalisCitation(**asdict(c)) for c in final.citations],
            latency_ms=dict(final.latency_ms),
            cost_usd=usage.cost_usd,
            provider=usage.provider,
            model=usage.model,
            flags=list(final.flags),
            handoff=final.handoff,
            conversation_ended=result.conversation_ended,
        )
        await emitter.done(
            "completed",
            vocalis,
            final=final.content if final.replaced else None,
            usage=ResponseUsage(
                total_tokens=usage.prompt_tokens + usage.completion_tokens,
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                input_token_details=InputTokenDetails(text_tokens=usage.prompt_tokens),
                output_token_details=OutputTokenDetails(text_tokens=usage.completion_tokens),
            ),
        )
        if result.conversation_ended:
            await self.session.conversation_ended()
