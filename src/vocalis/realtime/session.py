"""One realtime session: a handler per client event type, a sender for server events.

The receive loop never blocks on the agent: a response runs in its own task, so
`response.cancel` (and, for voice, audio) keep flowing while the agent answers. Every
refused client event gets an `error` event and the session carries on.

Extending it (the voice serializer): register handlers for more client event types with
`session.handlers[...] = …`, set `session.on_binary` for raw audio frames, add close hooks
to `session.on_close`, and start agent turns with `await session.begin_turn(text)` so they
carry the session's instructions, client tools and pending tool outputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from fastapi import WebSocket
from pydantic import ValidationError

from vocalis.agents.runtime import AgentRuntime
from vocalis.agents.schemas import AgentConfig
from vocalis.agents.tools.base import build_toolbox
from vocalis.agents.tools.client import ClientTool, ToolOutput, check_client_tools
from vocalis.conversations import service as conversations
from vocalis.core import errors, jsonguard
from vocalis.core.backends import Backends
from vocalis.core.errors import VocalisError
from vocalis.core.ids import new_id
from vocalis.core.ratelimit import RateLimiter
from vocalis.ports.document_store import Document
from vocalis.realtime import items as item_events
from vocalis.realtime import lifecycle
from vocalis.realtime.items import ItemLog
from vocalis.realtime.protocol import (
    AnyItem,
    CancelReason,
    ContentPart,
    ConversationItemAdded,
    ConversationItemDone,
    MessageItem,
    RateLimit,
    RateLimitsUpdated,
    ResponseCancelEvent,
    ResponseCreateEvent,
    ResponseDone,
    ResponseParams,
    ServerEvent,
    Session,
    SessionCreated,
    SessionUpdated,
    SessionUpdateEvent,
    VocalisConversationEnded,
    VocalisSession,
)
from vocalis.realtime.responses import TextResponses
from vocalis.realtime.sender import ClientEventError, EventSender

__all__ = [
    "ClientEventError",
    "ClientHandler",
    "EventSender",
    "RealtimeSession",
    "merge_session",
    "transcription_only",
]

log = structlog.get_logger(__name__)

ClientHandler = Callable[[dict[str, Any]], Awaitable[None]]
BinaryHandler = Callable[[bytes], Awaitable[None]]
CloseHandler = Callable[[], Awaitable[None]]

# Replaced as a whole by `session.update` (a new format or tool list is not merged into the
# old one).
_ATOMIC_FIELDS = frozenset(
    {"format", "tools", "tool_choice", "tracing", "prompt", "include", "metadata"}
)
# Client events that do not count as activity (audio streams in silence too).
_PASSIVE_EVENTS = frozenset({"input_audio_buffer.append"})


def merge_session(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`current` with `changes` applied field by field (nested objects are merged).

    A nested object whose `type` changes (e.g. `server_vad` to `semantic_vad`) replaces
    the old one rather than merging into it.
    """
    merged = dict(current)
    for key, value in changes.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and _same_kind(key, old, value):
            merged[key] = merge_session(old, value)
        else:
            merged[key] = value
    return merged


def _same_kind(key: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
    return key not in _ATOMIC_FIELDS and new.get("type", old.get("type")) == old.get("type")


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
    config: AgentConfig
    key_id: str | None = None
    limiter: RateLimiter | None = None
    pending: list[tuple[str, str]] = field(default_factory=list)  # (item id, user text)
    tool_outputs: list[tuple[str, ToolOutput]] = field(default_factory=list)  # (item id, …)
    notes: list[tuple[str, str]] = field(default_factory=list)  # system items (id, text)
    items: ItemLog = field(default_factory=ItemLog)
    responses: TextResponses = field(init=False)
    watchdog: lifecycle.Watchdog = field(init=False)
    last_item_id: str | None = None
    handlers: dict[str, ClientHandler] = field(default_factory=dict)
    on_binary: BinaryHandler | None = None
    on_close: list[CloseHandler] = field(default_factory=list)
    # Set by the voice serializer: stop a spoken reply and keep what was heard (item, ms).
    spoken_truncate: Callable[[str, int], Awaitable[None]] | None = None
    ended_reason: str | None = None
    # Unique per connection (the session id is the same for every session of a conversation).
    connection_id: str = field(default_factory=lambda: new_id("conn"))

    def __post_init__(self) -> None:
        self.responses = TextResponses(self)
        self.watchdog = lifecycle.Watchdog(self)
        self.handlers.update(
            {
                "session.update": self.on_session_update,
                "conversation.item.create": partial(item_events.create_item, self),
                "conversation.item.retrieve": partial(item_events.retrieve_item, self),
                "conversation.item.delete": partial(item_events.delete_item, self),
                "conversation.item.truncate": partial(item_events.truncate_item, self),
                "response.create": self.on_response_create,
                "response.cancel": self.on_response_cancel,
            }
        )
        self.sender.observers.append(self._observe)
        self.sender.after_send.append(self._after_send)

    @property
    def conversation_id(self) -> str:
        """The conversation this session talks in."""
        return str(self.conversation["_id"])

    @property
    def limits(self) -> lifecycle.Limits:
        """This conversation's idle timeout, maximum duration and disconnect grace."""
        return lifecycle.Limits.of(self.backends.settings, self.config)

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self, *, resumed: bool, greeting: Document | None = None) -> None:
        """Send `session.created` (and the agent's first message), start the watchdog."""
        await lifecycle.attach(self.backends, self.conversation_id, self.connection_id, self.limits)
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
            await self.announce(item)
        self.watchdog.start()

    async def run(self) -> None:
        """Receive client frames until the client disconnects (or the conversation ends)."""
        failed = False
        try:
            await self._receive()
        except Exception:
            failed = True
            log.exception("realtime_session_failed")
            raise
        finally:
            await self._close(failed)

    async def _receive(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await self.dispatch(message["text"])
            elif message.get("bytes") is not None:
                await self._binary(message["bytes"])

    async def _close(self, failed: bool) -> None:
        self.sender.closed = True
        await self.watchdog.stop()
        await self.cancel_response()
        for close in self.on_close:
            try:
                await close()
            except Exception:
                log.exception("realtime_close_hook_failed")
        if failed:
            await self._end_conversation("error")
        elif self.ended_reason is None and self.conversation.get("status") == "active":
            lifecycle.end_after_grace(
                self.backends,
                self.runtime,
                org_id=self.org_id,
                conversation_id=self.conversation_id,
                session_id=self.connection_id,
                grace_s=self.limits.grace_s,
            )

    async def end(self, reason: str) -> None:
        """End the conversation: `vocalis.conversation.ended`, then the socket closes."""
        if self.ended_reason is not None:
            return
        await self.cancel_response()
        await self._end_conversation(reason)
        await self.sender.send(
            VocalisConversationEnded(conversation_id=self.conversation_id, reason=reason)
        )
        with contextlib.suppress(RuntimeError, OSError):
            await self.websocket.close(code=1000, reason=f"conversation ended: {reason}")

    async def _end_conversation(self, reason: str) -> None:
        self.ended_reason = reason
        self.conversation = {**self.conversation, "status": "ended"}
        try:
            await lifecycle.end(
                self.backends,
                self.runtime,
                org_id=self.org_id,
                conversation_id=self.conversation_id,
                reason=reason,
            )
        except Exception:
            log.exception("realtime_conversation_not_ended", reason=reason)

    async def ended_elsewhere(self, doc: Document) -> None:
        """The conversation was ended by someone else (the REST API): close the session."""
        if self.ended_reason is not None:
            return
        self.ended_reason = str(doc.get("ended_reason") or "ended")
        self.conversation = doc
        await self.cancel_response()
        await self.sender.send(
            VocalisConversationEnded(conversation_id=self.conversation_id, reason=self.ended_reason)
        )
        with contextlib.suppress(RuntimeError, OSError):
            await self.websocket.close(code=1000)

    # --- server events watched ------------------------------------------------------------
    def _observe(self, event: ServerEvent) -> None:
        self.items.observe(event, self.session.audio.output.format)
        self.watchdog.observe(event)
        if isinstance(event, ConversationItemAdded):
            self.last_item_id = event.item.id
        elif isinstance(event, VocalisConversationEnded):  # whoever announced it
            self.ended_reason = self.ended_reason or event.reason
            self.conversation = {**self.conversation, "status": "ended"}

    async def _after_send(self, event: ServerEvent) -> None:
        if isinstance(event, ResponseDone):
            await self._report_rate_limits()

    async def _report_rate_limits(self) -> None:
        """`rate_limits.updated` with what is left of the key's request budget."""
        if not self._limited() or self.limiter is None or self.key_id is None:
            return
        decision = await self.limiter.hit(self.key_id, cost=0)
        limit = RateLimit(
            name="requests",
            limit=decision.limit,
            remaining=decision.remaining,
            reset_seconds=float(decision.reset_s),
        )
        await self.sender.send(RateLimitsUpdated(rate_limits=[limit]))

    # --- client events in -----------------------------------------------------------------
    async def _binary(self, data: bytes) -> None:
        if self.on_binary is None:
            await self.sender.error(
                errors.REALTIME_UNSUPPORTED_FRAME,
                "Binary audio frames are not accepted by this server yet.",
            )
            return
        await self.on_binary(data)

    async def dispatch(self, raw: str) -> None:
        """Parse one text frame and run its handler; failures become `error` events."""
        try:
            event = jsonguard.loads(raw)  # refuses deep nesting (RecursionError) and NUL
        except jsonguard.JsonRejected as exc:
            param = ".".join(exc.loc) or None
            await self.sender.error(errors.REALTIME_INVALID_VALUE, exc.message, param=param)
            return
        except ValueError as exc:
            await self.sender.error(
                errors.REALTIME_INVALID_JSON, f"The frame is not valid JSON: {exc}"
            )
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.sender.error(
                errors.REALTIME_INVALID_EVENT,
                "An event must be a JSON object with a string `type`.",
                param="type",
            )
            return
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = self.handlers.get(event["type"])
        if handler is None:
            await self.sender.error(
                errors.REALTIME_UNKNOWN_EVENT,
                f"Unknown or unsupported event type {event['type']!r}.",
                param="type",
                client_event_id=client_event_id,
            )
            return
        if event["type"] not in _PASSIVE_EVENTS:
            self.watchdog.clock.touch()
        await self._handle(handler, event, client_event_id)

    async def _handle(
        self, handler: ClientHandler, event: dict[str, Any], client_event_id: str | None
    ) -> None:
        try:
            if event["type"] == "response.create":
                await self._may_respond()
            await handler(event)
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            await self.sender.error(
                errors.REALTIME_INVALID_VALUE,
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
                errors.INTERNAL_ERROR,
                "The server failed to handle the event.",
                server=True,
                client_event_id=client_event_id,
            )

    def _limited(self) -> bool:
        """Whether the organisation's keys are rate-limited (the `rate_limiting` flag)."""
        return self.limiter is not None and self.limiter.applies_to(self.org_id)

    async def _may_respond(self) -> None:
        """Refuse `response.create` in transcription sessions and past the key's rate limit."""
        if self.session.transcribes_only:
            raise ClientEventError(
                errors.REALTIME_RESPONSES_UNAVAILABLE,
                "This is a transcription session: it turns speech into text and does not answer.",
            )
        if self._limited() and self.limiter is not None and self.key_id is not None:
            decision = await self.limiter.hit(self.key_id)
            if not decision.allowed:
                raise errors.RateLimited(
                    f"Too many responses; retry in {decision.retry_after_s} s."
                )

    # --- session --------------------------------------------------------------------------
    async def on_session_update(self, raw: dict[str, Any]) -> None:
        """Apply every GA field the agent's configuration allows; report the effective session."""
        event = SessionUpdateEvent.model_validate(raw)
        patch = event.session
        session = Session.model_validate(merge_session(self.session.model_dump(), patch.changes()))
        if patch.tools is not None:
            tools = [ClientTool(t.name, t.description, t.parameters) for t in session.tools]
            check_client_tools(tools, build_toolbox(self.config.tools).tools)
        self.session = transcription_only(session) if session.transcribes_only else session
        unsupported = patch.unsupported()
        if unsupported:
            await self.sender.error(
                errors.REALTIME_UNSUPPORTED_SESSION_FIELD,
                "Not part of the GA session, ignored: " + ", ".join(unsupported),
                param=f"session.{unsupported[0]}",
                client_event_id=event.event_id,
            )
        await self.sender.send(SessionUpdated(session=self.session))

    # --- responses ------------------------------------------------------------------------
    async def on_response_create(self, raw: dict[str, Any]) -> None:
        """Answer the queued user input, or go on from the client tools' outputs."""
        event = ResponseCreateEvent.model_validate(raw)
        if not self.pending and not self.tool_outputs:
            raise ClientEventError(
                errors.REALTIME_NO_INPUT,
                "Add a user message or a function call output with `conversation.item.create` "
                "first.",
            )
        item_id = self.pending[0][0] if self.pending else None
        text = "\n".join(t for _, t in self.pending)
        await self.create_response(text, message_id=item_id, params=event.response)
        self.pending.clear()

    async def on_response_cancel(self, raw: dict[str, Any]) -> None:
        """Cancel the response in progress (an error when there is none)."""
        event = ResponseCancelEvent.model_validate(raw)
        active = self.responses.active
        if active is None or not self.responding():
            raise ClientEventError(errors.REALTIME_CANCEL_NOT_ACTIVE, "No response is in progress.")
        if event.response_id and event.response_id != active.emitter.response_id:
            raise ClientEventError(
                errors.REALTIME_CANCEL_NOT_ACTIVE,
                f"Response {event.response_id!r} is not in progress.",
                param="response_id",
            )
        await self.cancel_response()

    def responding(self) -> bool:
        """Whether a text response is in progress."""
        return self.responses.responding()

    async def create_response(
        self, text: str, *, message_id: str | None = None, params: ResponseParams | None = None
    ) -> None:
        """Start the agent's answer to `text` (a text response)."""
        await self.responses.create(text, message_id=message_id, params=params)

    async def cancel_response(self, reason: CancelReason = "client_cancelled") -> None:
        """Stop the text response in progress, if any (it ends with `response.done`)."""
        await self.responses.cancel(reason)

    def client_tools(self) -> list[ClientTool]:
        """The session's function tools, as offered to the agent's model."""
        if self.session.tool_choice == "none":
            return []
        return [ClientTool(t.name, t.description, t.parameters) for t in self.session.tools]

    def instructions(self, params: ResponseParams | None = None) -> str:
        """What this session adds to the agent's instructions (and this response's, if any)."""
        parts = [self.session.instructions, *(text for _, text in self.notes)]
        if params is not None and params.instructions:
            parts.append(params.instructions)
        return "\n\n".join(p for p in parts if p.strip())

    async def begin_turn(
        self,
        text: str,
        *,
        message_id: str | None = None,
        params: ResponseParams | None = None,
        speculative: bool = False,
    ) -> conversations.Turn:
        """Start an agent turn with the session's instructions, tools and tool outputs
        (a speculative turn, which must change nothing until kept, takes no tool outputs)."""
        if speculative and self.tool_outputs:
            raise conversations.SpeculationRefused("The turn takes client tool outputs.")
        outputs = [output for _, output in self.tool_outputs]
        turn = await conversations.begin_turn(
            backends=self.backends,
            runtime=self.runtime,
            org_id=self.org_id,
            conversation_id=self.conversation_id,
            content=text,
            message_id=message_id,
            client_tools=self.client_tools(),
            tool_outputs=outputs,
            tool_choice=self._tool_choice(),
            speculative=speculative,
        )
        self.tool_outputs.clear()
        turn.config = self._turn_config(turn.config, params)
        return turn

    def _tool_choice(self) -> str | None:
        """The session's tool choice, unless the agent's configuration sets its own."""
        choice = self.session.tool_choice
        if choice == "auto" or self.config.model.tool_choice not in (None, "auto"):
            return None
        return choice if isinstance(choice, str) else choice.name

    def _turn_config(self, config: AgentConfig, params: ResponseParams | None) -> AgentConfig:
        """The agent's configuration with what this session may change applied."""
        model = config.model
        limit = params.max_output_tokens if params and params.max_output_tokens else None
        limit = limit or self.session.max_output_tokens
        if isinstance(limit, int) and (model.max_tokens is None or limit < model.max_tokens):
            model = model.model_copy(update={"max_tokens": limit})
        added = self.instructions(params)
        instructions = f"{config.instructions}\n\n{added}".strip() if added else config.instructions
        return config.model_copy(update={"model": model, "instructions": instructions})

    async def conversation_ended(self) -> None:
        """The agent's reply ended the conversation: say so, with the stored reason."""
        ended = await conversations.get_conversation(
            self.backends, org_id=self.org_id, conversation_id=self.conversation_id
        )
        self.conversation = ended
        self.ended_reason = str(ended.get("ended_reason") or "agent_ended")
        await self.sender.send(
            VocalisConversationEnded(conversation_id=self.conversation_id, reason=self.ended_reason)
        )

    async def announce(self, item: AnyItem) -> None:
        """Tell the client an item joined the conversation."""
        previous = self.last_item_id
        self.last_item_id = item.id
        await self.sender.send(ConversationItemAdded(previous_item_id=previous, item=item))
        await self.sender.send(ConversationItemDone(previous_item_id=previous, item=item))


def transcription_only(session: Session) -> Session:
    """A transcription session's effective configuration: turns never start responses."""
    detection = session.audio.input.turn_detection
    if detection is None or not detection.create_response:
        return session
    audio = session.audio.model_copy(deep=True)
    audio.input.turn_detection = detection.model_copy(update={"create_response": False})
    return session.model_copy(update={"audio": audio})
