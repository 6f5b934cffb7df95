"""The conversation's items: what a realtime session has shown its client, and the
`conversation.item.create/retrieve/delete/truncate` client events.

`ItemLog` watches the server events a session sends (whoever produced them: the text path
or the voice serializer), so `conversation.item.retrieve` can answer with the item as the
client knows it and `conversation.item.truncate` can tell which words of a spoken reply
were heard before a given point of its audio. Stored messages change only through the
conversations service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import structlog

from vocalis.agents.tools.client import ToolOutput
from vocalis.conversations import service as conversations
from vocalis.conversations import spoken
from vocalis.conversations.errors import CONVERSATION_ENDED
from vocalis.core import errors
from vocalis.core.ids import new_id
from vocalis.realtime.protocol import (
    AnyItem,
    AssistantMessageItem,
    AudioContentPart,
    AudioFormat,
    ContentPart,
    ConversationItemAdded,
    ConversationItemCreateEvent,
    ConversationItemDeleted,
    ConversationItemDeleteEvent,
    ConversationItemDone,
    ConversationItemRetrieved,
    ConversationItemRetrieveEvent,
    ConversationItemTruncated,
    ConversationItemTruncateEvent,
    FunctionCallOutputItem,
    MessageItem,
    ResponseOutputAudioDelta,
    ResponseOutputAudioTranscriptDelta,
    ResponseOutputItemDone,
    ServerEvent,
    SystemMessageItem,
    UserMessageItem,
)
from vocalis.realtime.sender import ClientEventError

log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    from vocalis.realtime.session import RealtimeSession


def bytes_per_ms(fmt: AudioFormat) -> float:
    """Encoded bytes per millisecond of audio in a wire format."""
    rate = fmt.rate or 24_000
    per_sample = 2 if fmt.type == "audio/pcm" else 1
    return rate * per_sample / 1000.0


def base64_length(encoded: str) -> int:
    """The decoded length of a base64 string (without decoding it)."""
    return len(encoded) * 3 // 4 - encoded[-2:].count("=") if encoded else 0


@dataclass
class Playback:
    """One spoken reply: its audio length and where each piece of its transcript starts."""

    audio_ms: float = 0.0
    pieces: list[tuple[float, str]] = field(default_factory=list)

    def heard(self, audio_end_ms: float) -> str:
        """The transcript up to `audio_end_ms` (the piece playing then, in proportion)."""
        words: list[str] = []
        for index, (start, text) in enumerate(self.pieces):
            if start >= audio_end_ms:
                break
            end = self.pieces[index + 1][0] if index + 1 < len(self.pieces) else self.audio_ms
            if audio_end_ms >= end:
                words.append(text)
                continue
            share = (audio_end_ms - start) / max(end - start, 1.0)
            piece = text.split()
            words.append(" ".join(piece[: round(len(piece) * share)]))
        return " ".join(" ".join(words).split())


class ItemLog:
    """The items shown to the client, by id, and the playback of spoken replies."""

    def __init__(self) -> None:
        self.items: dict[str, AnyItem] = {}
        self.playback: dict[str, Playback] = {}
        self.last_reply_id: str | None = None

    def observe(self, event: ServerEvent, output_format: AudioFormat) -> None:
        """Take note of one server event."""
        if isinstance(event, ConversationItemAdded | ConversationItemDone | ResponseOutputItemDone):
            self.items[event.item.id] = event.item
            if isinstance(event.item, MessageItem) and event.item.role == "assistant":
                self.last_reply_id = event.item.id
        elif isinstance(event, ResponseOutputAudioTranscriptDelta):
            playback = self.playback.setdefault(event.item_id, Playback())
            playback.pieces.append((playback.audio_ms, event.delta))
        elif isinstance(event, ResponseOutputAudioDelta):
            playback = self.playback.setdefault(event.item_id, Playback())
            playback.audio_ms += base64_length(event.delta) / bytes_per_ms(output_format)
        elif isinstance(event, ConversationItemDeleted):
            self.forget(event.item_id)

    def forget(self, item_id: str) -> None:
        """Drop an item."""
        self.items.pop(item_id, None)
        self.playback.pop(item_id, None)

    def truncated(self, item_id: str, heard: str, audio_end_ms: float) -> None:
        """An item now holds only what was heard."""
        item = self.items.get(item_id)
        if isinstance(item, MessageItem):
            item.content = [AudioContentPart(type="output_audio", transcript=heard)]
        playback = self.playback.get(item_id)
        if playback is not None:
            playback.pieces = [(0.0, heard)] if heard else []
            playback.audio_ms = min(playback.audio_ms, audio_end_ms)


# --- the `conversation.item.*` client events ------------------------------------------------
async def create_item(session: RealtimeSession, raw: dict[str, Any]) -> None:
    """Add a user, system or assistant message, or a function call's output."""
    event = ConversationItemCreateEvent.model_validate(raw)
    if session.conversation.get("status") == "ended":
        raise ClientEventError(CONVERSATION_ENDED, "The conversation has ended.")
    source = event.item
    if isinstance(source, UserMessageItem):
        item: AnyItem = _message(source.id, "user", "input_text", [p.text for p in source.content])
        session.pending.append((item.id, source.text()))
    elif isinstance(source, SystemMessageItem):
        item = _message(source.id, "system", "input_text", [p.text for p in source.content])
        session.notes.append((item.id, source.text()))
    elif isinstance(source, AssistantMessageItem):
        item = await _assistant_history(session, source)
    else:
        item = FunctionCallOutputItem(
            id=source.id or new_id("item"), call_id=source.call_id, output=source.output
        )
        session.tool_outputs.append((item.id, ToolOutput(source.call_id, source.output)))
    await session.announce(item)


Role = Literal["user", "assistant", "system"]
TextKind = Literal["input_text", "output_text"]


def _message(item_id: str | None, role: Role, kind: TextKind, texts: list[str]) -> MessageItem:
    parts = [ContentPart(type=kind, text=text) for text in texts]
    return MessageItem(id=item_id or new_id("msg"), role=role, content=list(parts))


async def _assistant_history(session: RealtimeSession, source: AssistantMessageItem) -> MessageItem:
    """An assistant message joins the agent's memory of the conversation."""
    if session.responding():
        raise ClientEventError(
            errors.REALTIME_RESPONSE_ACTIVE,
            "Add assistant messages between responses, not during one.",
        )
    await session.runtime.seed_history(session.conversation_id, [("assistant", source.text())])
    return _message(source.id, "assistant", "output_text", [source.text()])


async def retrieve_item(session: RealtimeSession, raw: dict[str, Any]) -> None:
    """`conversation.item.retrieved` with the item as the conversation holds it."""
    event = ConversationItemRetrieveEvent.model_validate(raw)
    item = session.items.items.get(event.item_id) or await _stored_item(session, event.item_id)
    if item is None:
        raise _no_item(errors.REALTIME_RETRIEVE_UNKNOWN_ITEM, event.item_id)
    await session.sender.send(ConversationItemRetrieved(item=item))


async def _stored_item(session: RealtimeSession, item_id: str) -> MessageItem | None:
    """A message stored before this session (a resumed conversation)."""
    messages = await conversations.transcript(
        session.backends, org_id=session.org_id, conversation_id=session.conversation_id
    )
    for message in messages:
        role = message["role"]
        if message["_id"] == item_id and role in ("user", "assistant"):
            kind: TextKind = "input_text" if role == "user" else "output_text"
            return _message(item_id, role, kind, [str(message.get("content") or "")])
    return None


async def delete_item(session: RealtimeSession, raw: dict[str, Any]) -> None:
    """Remove input the agent has not answered yet (answered items stay)."""
    item_id = ConversationItemDeleteEvent.model_validate(raw).item_id
    queues: tuple[list[Any], ...] = (session.pending, session.tool_outputs, session.notes)
    for queue in queues:
        kept = [entry for entry in queue if entry[0] != item_id]
        if len(kept) != len(queue):
            queue[:] = kept
            await session.sender.send(ConversationItemDeleted(item_id=item_id))
            return
    if item_id in session.items.items:
        raise ClientEventError(
            errors.REALTIME_ITEM_NOT_DELETABLE,
            f"Item {item_id!r} is already part of the conversation's history.",
            param="item_id",
        )
    raise _no_item(errors.REALTIME_DELETE_UNKNOWN_ITEM, item_id)


async def truncate_item(session: RealtimeSession, raw: dict[str, Any]) -> None:
    """Keep only what the listener heard of a spoken reply (client-side barge-in)."""
    event = ConversationItemTruncateEvent.model_validate(raw)
    seen = session.items
    item = seen.items.get(event.item_id)
    if item is None:
        raise _no_item(errors.REALTIME_TRUNCATE_UNKNOWN_ITEM, event.item_id)
    playback = seen.playback.get(event.item_id)
    if not isinstance(item, MessageItem) or item.role != "assistant" or playback is None:
        raise ClientEventError(
            errors.REALTIME_ITEM_NOT_TRUNCATABLE,
            "Only a spoken assistant reply can be truncated.",
            param="item_id",
        )
    if event.content_index != 0:
        raise ClientEventError(
            errors.REALTIME_ITEM_NOT_TRUNCATABLE,
            "A spoken reply has one content part: content_index must be 0.",
            param="content_index",
        )
    # A client's playback clock may run past the audio it was sent: all of it was heard.
    audio_end_ms = min(event.audio_end_ms, int(playback.audio_ms))
    heard = playback.heard(audio_end_ms)
    if not await _voice_truncated(session, item.id, audio_end_ms):
        await spoken.keep_heard_reply(
            backends=session.backends,
            runtime=session.runtime,
            org_id=session.org_id,
            conversation_id=session.conversation_id,
            message_id=item.id,
            heard=heard,
            user_sequence=None,
            in_history=item.id == seen.last_reply_id,
        )
    seen.truncated(item.id, heard, audio_end_ms)
    await session.sender.send(
        ConversationItemTruncated(item_id=item.id, content_index=0, audio_end_ms=event.audio_end_ms)
    )


async def _voice_truncated(session: RealtimeSession, item_id: str, audio_end_ms: int) -> bool:
    """Let the voice conversation stop the reply and store what was heard, if it holds it."""
    if session.spoken_truncate is None:
        return False
    try:
        await session.spoken_truncate(item_id, audio_end_ms)
    except ClientEventError as exc:
        # A finished reply it no longer tracks: what was heard follows from the playback log.
        log.info("realtime_truncate_from_playback_log", item_id=item_id, reason=exc.message)
        return False
    return True


def _no_item(code: str, item_id: str) -> ClientEventError:
    return ClientEventError(code, f"No item {item_id!r} in this conversation.", "item_id")
