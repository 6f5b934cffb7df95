"""One realtime session: a handler per client event type, a sender for server events.

The receive loop never blocks on the agent: a response runs in its own task, so
`response.cancel` (and, for voice, audio) keep flowing while the agent answers. Every
refused client event gets an `error` event and the session carries on.

Extending it (the voice channel): register handlers for more client event types with
`session.handlers[...] = …` and set `session.on_binary` for raw PCM frames; start a
response for a finished spoken turn with `await session.create_response(text)`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from fastapi import WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from vocalis.agents.events import HandoffEvent, TextDelta, ToolCallEvent, ToolResultEvent
from vocalis.agents.runtime import AgentRuntime
from vocalis.conversations import service as conversations
from vocalis.core.backends import Backends
from vocalis.core.errors import VocalisError
from vocalis.core.ids import new_id
from vocalis.ports.document_store import Document
from vocalis.realtime.protocol import (
    ContentPart,
    ConversationItemAdded,
    ConversationItemCreateEvent,
    ConversationItemDone,
    ErrorDetail,
    ErrorEvent,
    FinalStatus,
    FunctionCallItem,
    InputTokenDetails,
    Item,
    ItemStatus,
    MessageItem,
    OutputTokenDetails,
    Response,
    ResponseCancelEvent,
    ResponseContentPartAdded,
    ResponseContentPartDone,
    ResponseCreated,
    ResponseCreateEvent,
    ResponseDone,
    ResponseFunctionCallArgumentsDone,
    ResponseOutputItemAdded,
    ResponseOutputItemDone,
    ResponseOutputTextDelta,
    ResponseOutputTextDone,
    ResponseUsage,
    ServerEvent,
    Session,
    SessionCreated,
    SessionUpdated,
    SessionUpdateEvent,
    StatusDetails,
    StatusError,
    VocalisCitation,
    VocalisConversationEnded,
    VocalisHandoffRequested,
    VocalisResponse,
    VocalisSession,
    VocalisToolResult,
)

log = structlog.get_logger(__name__)

ClientHandler = Callable[[dict[str, Any]], Awaitable[None]]
BinaryHandler = Callable[[bytes], Awaitable[None]]
CloseHandler = Callable[[], Awaitable[None]]

# Merged as a whole by `session.update`: a new format replaces the old one entirely.
_ATOMIC_FIELDS = frozenset({"format"})


def merge_session(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`current` with `changes` applied field by field (nested objects are merged)."""
    merged = dict(current)
    for key, value in changes.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and key not in _ATOMIC_FIELDS:
            merged[key] = merge_session(old, value)
        else:
            merged[key] = value
    return merged


class ClientEventError(Exception):
    """A client event that cannot be honoured; becomes an `error` event."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


class EventSender:
    """Sends server events one at a time; after the socket closed, sends are dropped."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._lock = asyncio.Lock()
        self.closed = False

    async def send(self, event: ServerEvent) -> None:
        """Send one event as a JSON text frame."""
        if self.closed:
            return
        text = event.model_dump_json()
        async with self._lock:
            if self._websocket.application_state != WebSocketState.CONNECTED:
                self.closed = True
                return
            try:
                await self._websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):  # the client went away
                self.closed = True

    async def error(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        client_event_id: str | None = None,
        server: bool = False,
    ) -> None:
        """Send an `error` event."""
        detail = ErrorDetail(
            type="server_error" if server else "invalid_request_error",
            code=code,
            message=message,
            param=param,
            event_id=client_event_id,
        )
        await self.send(ErrorEvent(error=detail))


@dataclass
class ResponseWriter:
    """Turns one agent turn's events into the response's output items and their events."""

    sender: EventSender
    response: Response
    turn: conversations.Turn
    _text_item: MessageItem | None = None
    _text: list[str] = field(default_factory=list)

    @property
    def _index(self) -> int:
        return len(self.response.output) - 1

    async def _add(self, item: Item) -> None:
        self.response.output.append(item)
        await self.sender.send(
            ResponseOutputItemAdded(
                response_id=self.response.id, output_index=self._index, item=item
            )
        )

    async def text(self, delta: str) -> None:
        """The next piece of text (opens a message item if none is open)."""
        if self._text_item is None:
            item = MessageItem(id=new_id("msg"), role="assistant", status="in_progress")
            self._text_item, self._text = item, []
            self.turn.reply_id = item.id  # the last text item is the stored reply
            await self._add(item)
            await self.sender.send(
                ResponseContentPartAdded(
                    response_id=self.response.id,
                    item_id=item.id,
                    output_index=self._index,
                    content_index=0,
                    part=ContentPart(type="text", text=""),
                )
            )
        self._text.append(delta)
        await self.sender.send(
            ResponseOutputTextDelta(
                response_id=self.response.id,
                item_id=self._text_item.id,
                output_index=self._index,
                content_index=0,
                delta=delta,
            )
        )

    async def close_text(self, status: ItemStatus = "completed", text: str | None = None) -> None:
        """Finish the open message item (with `text` when the guard replaced the deltas)."""
        item = self._text_item
        if item is None:
            return
        self._text_item = None
        final = "".join(self._text) if text is None else text
        common = {"response_id": self.response.id, "item_id": item.id, "output_index": self._index}
        await self.sender.send(ResponseOutputTextDone(**common, content_index=0, text=final))
        await self.sender.send(
            ResponseContentPartDone(
                **common, content_index=0, part=ContentPart(type="text", text=final)
            )
        )
        item.status = status
        item.content = [ContentPart(type="output_text", text=final)]
        await self.sender.send(
            ResponseOutputItemDone(
                response_id=self.response.id, output_index=self._index, item=item
            )
        )

    async def tool_call(self, event: ToolCallEvent) -> None:
        """A tool call: a function_call item with its complete arguments."""
        await self.close_text()
        item = FunctionCallItem(
            id=new_id("item"),
            status="in_progress",
            call_id=event.id,
            name=event.name,
        )
        await self._add(item)
        await self.sender.send(
            ResponseFunctionCallArgumentsDone(
                response_id=self.response.id,
                item_id=item.id,
                output_index=self._index,
                call_id=event.id,
                name=event.name,
                arguments=event.arguments,
            )
        )
        item.arguments, item.status = event.arguments, "completed"
        await self.sender.send(
            ResponseOutputItemDone(
                response_id=self.response.id, output_index=self._index, item=item
            )
        )

    async def tool_result(self, event: ToolResultEvent) -> None:
        """A server-side tool answered."""
        await self.sender.send(
            VocalisToolResult(
                response_id=self.response.id,
                call_id=event.id,
                name=event.name,
                output=event.content,
                is_error=event.is_error,
            )
        )

    async def done(
        self,
        status: FinalStatus,
        vocalis: VocalisResponse,
        *,
        details: StatusDetails | None = None,
        usage: ResponseUsage | None = None,
    ) -> None:
        """Close what is open and send `response.done`."""
        await self.close_text("completed" if status == "completed" else "incomplete")
        self.response.status = status
        self.response.status_details = details or StatusDetails(type=status)
        self.response.usage = usage or ResponseUsage()
        await self.sender.send(ResponseDone(response=self.response, vocalis=vocalis))


@dataclass
class RealtimeSession:
    """A connected client talking to one conversation of one agent."""

    websocket: WebSocket
    backends: Backends
    runtime: AgentRuntime
    org_id: str
    conversation: Document
    session: Session
    sender: EventSender
    pending: list[tuple[str, str]] = field(default_factory=list)  # (item id, text)
    last_item_id: str | None = None
    response_task: asyncio.Task[None] | None = None
    current_response_id: str | None = None
    handlers: dict[str, ClientHandler] = field(default_factory=dict)
    on_binary: BinaryHandler | None = None
    on_close: list[CloseHandler] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.handlers.update(
            {
                "session.update": self.on_session_update,
                "conversation.item.create": self.on_item_create,
                "response.create": self.on_response_create,
                "response.cancel": self.on_response_cancel,
            }
        )

    @property
    def conversation_id(self) -> str:
        """The conversation this session talks in."""
        return str(self.conversation["_id"])

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self, *, resumed: bool, greeting: Document | None = None) -> None:
        """Send `session.created` (and the agent's first message, when there is one)."""
        await self.sender.send(
            SessionCreated(
                session=self.session,
                vocalis=VocalisSession(
                    conversation_id=self.conversation_id,
                    agent_id=self.conversation["agent_id"],
                    agent_version=self.conversation["agent_version"],
                    resumed=resumed,
                ),
            )
        )
        if greeting is not None:
            item = MessageItem(
                id=greeting["_id"],
                role="assistant",
                content=[ContentPart(type="output_text", text=greeting["content"])],
            )
            await self._announce(item)

    async def run(self) -> None:
        """Receive client frames until the client disconnects."""
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is not None:
                    await self.dispatch(message["text"])
                elif message.get("bytes") is not None:
                    await self._binary(message["bytes"])
        finally:
            self.sender.closed = True
            await self.cancel_response()
            for close in self.on_close:
                try:
                    await close()
                except Exception:
                    log.exception("realtime_close_hook_failed")

    async def _binary(self, data: bytes) -> None:
        if self.on_binary is None:
            await self.sender.error(
                "unsupported_frame", "Binary audio frames are not accepted by this server yet."
            )
            return
        await self.on_binary(data)

    async def dispatch(self, raw: str) -> None:
        """Parse one text frame and run its handler; failures become `error` events."""
        try:
            event = json.loads(raw)
        except ValueError as exc:
            await self.sender.error("invalid_json", f"The frame is not valid JSON: {exc}")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.sender.error(
                "invalid_event",
                "An event must be a JSON object with a string `type`.",
                param="type",
            )
            return
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = self.handlers.get(event["type"])
        if handler is None:
            await self.sender.error(
                "unknown_event",
                f"Unknown or unsupported event type {event['type']!r}.",
                param="type",
                client_event_id=client_event_id,
            )
            return
        try:
            await handler(event)
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            await self.sender.error(
                "invalid_value",
                f"{param}: {first['msg']}" if param else str(first["msg"]),
                param=param,
                client_event_id=client_event_id,
            )
        except ClientEventError as exc:
            await self.sender.error(
                exc.code, exc.message, param=exc.param, client_event_id=client_event_id
            )
        except VocalisError as exc:
            await self.sender.error(exc.code, exc.detail, client_event_id=client_event_id)
        except Exception:
            log.exception("realtime_handler_failed", event_type=event["type"])
            await self.sender.error(
                "internal_error",
                "The server failed to handle the event.",
                server=True,
                client_event_id=client_event_id,
            )

    # --- handlers -------------------------------------------------------------------------
    async def on_session_update(self, raw: dict[str, Any]) -> None:
        """Apply the supported fields; report the ones the agent's configuration governs."""
        event = SessionUpdateEvent.model_validate(raw)
        patch = event.session
        changes = patch.model_dump(exclude_unset=True, exclude={"type"})
        changes = {k: v for k, v in changes.items() if k in type(self.session).model_fields}
        self.session = Session.model_validate(merge_session(self.session.model_dump(), changes))
        unsupported = patch.unsupported()
        if unsupported:
            await self.sender.error(
                "unsupported_session_field",
                "Governed by the agent's configuration, not applied: " + ", ".join(unsupported),
                param=f"session.{unsupported[0]}",
                client_event_id=event.event_id,
            )
        await self.sender.send(SessionUpdated(session=self.session))

    async def on_item_create(self, raw: dict[str, Any]) -> None:
        """Queue a user text message for the next response."""
        event = ConversationItemCreateEvent.model_validate(raw)
        if self.conversation.get("status") == "ended":
            raise ClientEventError("conversation_ended", "The conversation has ended.")
        item = MessageItem(
            id=new_id("msg"),
            role="user",
            content=[ContentPart(type="input_text", text=p.text) for p in event.item.content],
        )
        self.pending.append((item.id, event.item.text()))
        await self._announce(item)

    async def on_response_create(self, raw: dict[str, Any]) -> None:
        """Answer the queued user input."""
        ResponseCreateEvent.model_validate(raw)
        if not self.pending:
            raise ClientEventError(
                "no_input", "Add a user message with `conversation.item.create` first."
            )
        item_id = self.pending[0][0]
        text = "\n".join(t for _, t in self.pending)
        await self.create_response(text, message_id=item_id)
        self.pending.clear()

    async def on_response_cancel(self, raw: dict[str, Any]) -> None:
        """Cancel the response in progress (an error when there is none)."""
        event = ResponseCancelEvent.model_validate(raw)
        if self.response_task is None or self.response_task.done():
            raise ClientEventError("response_cancel_not_active", "No response is in progress.")
        if event.response_id and event.response_id != self.current_response_id:
            raise ClientEventError(
                "response_cancel_not_active",
                f"Response {event.response_id!r} is not in progress.",
                param="response_id",
            )
        await self.cancel_response()

    # --- responses ------------------------------------------------------------------------
    async def create_response(self, text: str, *, message_id: str | None = None) -> None:
        """Start the agent's answer to `text` in its own task."""
        if self.response_task is not None and not self.response_task.done():
            raise ClientEventError(
                "conversation_already_has_active_response",
                "A response is already in progress; cancel it or wait for `response.done`.",
            )
        turn = await conversations.begin_turn(
            backends=self.backends,
            runtime=self.runtime,
            org_id=self.org_id,
            conversation_id=self.conversation_id,
            content=text,
            message_id=message_id,
        )
        response = Response(
            id=new_id("resp"),
            status="in_progress",
            conversation_id=self.conversation_id,
            output_modalities=list(self.session.output_modalities),
            max_output_tokens=self.session.max_output_tokens,
        )
        self.current_response_id = response.id
        self.response_task = asyncio.create_task(self._respond(turn, response))

    async def cancel_response(self) -> None:
        """Stop the running response, if any, and wait for it to wind down."""
        task = self.response_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _respond(self, turn: conversations.Turn, response: Response) -> None:
        writer = ResponseWriter(self.sender, response, turn)
        vocalis = VocalisResponse(conversation_id=self.conversation_id)
        await self.sender.send(ResponseCreated(response=response.model_copy(deep=True)))
        result: conversations.TurnResult | None = None
        try:
            async for event in turn.events():
                if isinstance(event, TextDelta):
                    await writer.text(event.text)
                elif isinstance(event, ToolCallEvent):
                    await writer.tool_call(event)
                elif isinstance(event, ToolResultEvent):
                    await writer.tool_result(event)
                elif isinstance(event, HandoffEvent):
                    await self.sender.send(
                        VocalisHandoffRequested(
                            conversation_id=self.conversation_id, reason=event.reason
                        )
                    )
                elif isinstance(event, conversations.TurnResult):
                    result = event
            # Only now has the turn released the conversation's lock: a client that sends
            # its next message on `response.done` must not find the conversation busy.
            if result is not None:
                await self._completed(writer, result)
        except asyncio.CancelledError:
            details = StatusDetails(type="cancelled", reason="client_cancelled")
            await writer.done("cancelled", vocalis, details=details)
        except VocalisError as exc:
            log.warning("realtime_response_failed", code=exc.code, detail=exc.detail)
            await self.sender.error(exc.code, exc.detail, server=exc.status >= 500)
            error = StatusError(type="server_error", code=exc.code, message=exc.detail)
            await writer.done("failed", vocalis, details=StatusDetails(type="failed", error=error))
        except Exception:
            log.exception("realtime_response_failed")
            error = StatusError(type="server_error", code="internal_error", message="failed")
            await writer.done("failed", vocalis, details=StatusDetails(type="failed", error=error))

    async def _completed(self, writer: ResponseWriter, result: conversations.TurnResult) -> None:
        final = result.final
        await writer.close_text(text=final.content if final.replaced else None)
        usage = final.usage
        vocalis = VocalisResponse(
            conversation_id=self.conversation_id,
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
        await writer.done(
            "completed",
            vocalis,
            usage=ResponseUsage(
                total_tokens=usage.prompt_tokens + usage.completion_tokens,
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                input_token_details=InputTokenDetails(text_tokens=usage.prompt_tokens),
                output_token_details=OutputTokenDetails(text_tokens=usage.completion_tokens),
            ),
        )
        self.last_item_id = result.message["_id"]
        if result.conversation_ended:
            self.conversation = {**self.conversation, "status": "ended"}
            ended = await conversations.get_conversation(
                self.backends, org_id=self.org_id, conversation_id=self.conversation_id
            )
            await self.sender.send(
                VocalisConversationEnded(
                    conversation_id=self.conversation_id,
                    reason=str(ended.get("ended_reason") or ""),
                )
            )

    async def _announce(self, item: MessageItem) -> None:
        """Tell the client an item joined the conversation."""
        previous = self.last_item_id
        self.last_item_id = item.id
        await self.sender.send(ConversationItemAdded(previous_item_id=previous, item=item))
        await self.sender.send(ConversationItemDone(previous_item_id=previous, item=item))
