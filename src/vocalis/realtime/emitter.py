"""The one producer of a response's events, for text turns and spoken turns alike.

A response is a list of output items: message items (one content part, text or audio) and
function-call items. `ResponseEmitter` opens and closes them in the GA order —
`response.output_item.added` and `conversation.item.added`, `response.content_part.added`,
the deltas, the `.done` events, `response.content_part.done`, `response.output_item.done`
and `conversation.item.done` — and ends with `response.done`, so a voice turn and a text
turn that do the same things send the same events. Transports call it; it never decides
what the agent says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypedDict

from vocalis.core.ids import new_id
from vocalis.realtime.protocol import (
    AnyContentPart,
    AudioContentPart,
    ContentPart,
    ConversationItemAdded,
    ConversationItemDone,
    FinalStatus,
    FunctionCallItem,
    Item,
    ItemStatus,
    MessageItem,
    Response,
    ResponseContentPartAdded,
    ResponseContentPartDone,
    ResponseCreated,
    ResponseDone,
    ResponseFunctionCallArgumentsDelta,
    ResponseFunctionCallArgumentsDone,
    ResponseOutputAudioDelta,
    ResponseOutputAudioDone,
    ResponseOutputAudioTranscriptDelta,
    ResponseOutputAudioTranscriptDone,
    ResponseOutputItemAdded,
    ResponseOutputItemDone,
    ResponseOutputTextDelta,
    ResponseOutputTextDone,
    ResponseUsage,
    ServerEvent,
    StatusDetails,
    VocalisResponse,
    VocalisToolResult,
)


class EventSink(Protocol):
    """Where server events go (the session's sender)."""

    async def send(self, event: ServerEvent) -> None:
        """Send one server event."""


class _PartIds(TypedDict):
    response_id: str
    item_id: str
    output_index: int
    content_index: int


@dataclass
class _OpenMessage:
    item: MessageItem
    index: int
    audio: bool
    pieces: list[str] = field(default_factory=list)


class ResponseEmitter:
    """Turns what one response does into its output items and their server events."""

    def __init__(
        self, sink: EventSink, response: Response, *, previous_item_id: str | None = None
    ) -> None:
        self.sink = sink
        self.response = response
        self.previous_item_id = previous_item_id  # the conversation's item before this output
        self.finished = False
        self.last_message_id: str | None = None  # the last message item (the stored reply)
        self.function_calls: list[FunctionCallItem] = []
        self._open: _OpenMessage | None = None

    @property
    def response_id(self) -> str:
        """The response's id."""
        return self.response.id

    @property
    def open_message(self) -> MessageItem | None:
        """The message item being written, if any."""
        return self._open.item if self._open is not None else None

    @property
    def speaking(self) -> bool:
        """Whether the open message item is an audio one."""
        return self._open is not None and self._open.audio

    async def created(self) -> None:
        """`response.created` (a copy: later changes to the response are not in it)."""
        await self.sink.send(ResponseCreated(response=self.response.model_copy(deep=True)))

    async def _add(self, item: Item) -> int:
        self.response.output.append(item)
        index = len(self.response.output) - 1
        await self.sink.send(
            ResponseOutputItemAdded(response_id=self.response.id, output_index=index, item=item)
        )
        previous, self.previous_item_id = self.previous_item_id, item.id
        await self.sink.send(ConversationItemAdded(previous_item_id=previous, item=item))
        return index

    async def _done(self, item: Item, index: int) -> None:
        await self.sink.send(
            ResponseOutputItemDone(response_id=self.response.id, output_index=index, item=item)
        )
        await self.sink.send(ConversationItemDone(item=item))

    def _ids(self, message: _OpenMessage) -> _PartIds:
        return {
            "response_id": self.response.id,
            "item_id": message.item.id,
            "output_index": message.index,
            "content_index": 0,
        }

    async def begin_message(self, *, audio: bool, item_id: str | None = None) -> MessageItem:
        """Open an assistant message item with one text or audio content part."""
        await self.close_message()
        item = MessageItem(id=item_id or new_id("msg"), role="assistant", status="in_progress")
        index = await self._add(item)
        message = _OpenMessage(item=item, index=index, audio=audio)
        self._open, self.last_message_id = message, item.id
        part: AnyContentPart = (
            AudioContentPart(type="audio", transcript="") if audio else ContentPart(type="text")
        )
        await self.sink.send(ResponseContentPartAdded(**self._ids(message), part=part))
        return item

    async def _message(self, *, audio: bool) -> _OpenMessage:
        if self._open is None or self._open.audio != audio:
            await self.begin_message(audio=audio)
        assert self._open is not None
        return self._open

    async def text(self, delta: str) -> None:
        """The next piece of a text reply (`response.output_text.delta`)."""
        message = await self._message(audio=False)
        message.pieces.append(delta)
        await self.sink.send(ResponseOutputTextDelta(**self._ids(message), delta=delta))

    async def transcript(self, delta: str) -> None:
        """The text of speech about to play (`response.output_audio_transcript.delta`)."""
        message = await self._message(audio=True)
        message.pieces.append(delta)
        await self.sink.send(ResponseOutputAudioTranscriptDelta(**self._ids(message), delta=delta))

    async def audio(self, base64_audio: str) -> None:
        """A chunk of speech, base64 in the session's output format."""
        message = await self._message(audio=True)
        await self.sink.send(ResponseOutputAudioDelta(**self._ids(message), delta=base64_audio))

    async def close_message(
        self, status: ItemStatus = "completed", *, final: str | None = None
    ) -> None:
        """Finish the open message item; `final` replaces its text (guard, or what was heard)."""
        message, self._open = self._open, None
        if message is None:
            return
        ids = self._ids(message)
        text = "".join(message.pieces) if final is None else final
        part: AnyContentPart
        if message.audio:
            await self.sink.send(ResponseOutputAudioDone(**ids))
            await self.sink.send(ResponseOutputAudioTranscriptDone(**ids, transcript=text))
            part = AudioContentPart(type="audio", transcript=text)
            message.item.content = [AudioContentPart(type="output_audio", transcript=text)]
        else:
            await self.sink.send(ResponseOutputTextDone(**ids, text=text))
            part = ContentPart(type="text", text=text)
            message.item.content = [ContentPart(type="output_text", text=text)]
        await self.sink.send(ResponseContentPartDone(**ids, part=part))
        message.item.status = status
        await self._done(message.item, message.index)

    async def function_call(self, *, call_id: str, name: str, arguments: str) -> FunctionCallItem:
        """A function-call item with its complete arguments.

        An open text message is finished first (the model wrote it before the call); an
        open audio message stays open, because its speech is still playing.
        """
        if self._open is not None and not self._open.audio:
            await self.close_message()
        item = FunctionCallItem(id=new_id("item"), status="in_progress", call_id=call_id, name=name)
        index = await self._add(item)
        await self.sink.send(
            ResponseFunctionCallArgumentsDelta(
                response_id=self.response.id,
                item_id=item.id,
                output_index=index,
                call_id=call_id,
                delta=arguments,
            )
        )
        await self.sink.send(
            ResponseFunctionCallArgumentsDone(
                response_id=self.response.id,
                item_id=item.id,
                output_index=index,
                call_id=call_id,
                name=name,
                arguments=arguments,
            )
        )
        item.arguments, item.status = arguments, "completed"
        await self._done(item, index)
        self.function_calls.append(item)
        return item

    async def tool_result(self, *, call_id: str, name: str, output: str, is_error: bool) -> None:
        """A server-side tool answered (`vocalis.tool.result`)."""
        await self.sink.send(
            VocalisToolResult(
                response_id=self.response.id,
                call_id=call_id,
                name=name,
                output=output,
                is_error=is_error,
            )
        )

    async def done(
        self,
        status: FinalStatus,
        vocalis: VocalisResponse,
        *,
        details: StatusDetails | None = None,
        usage: ResponseUsage | None = None,
        final: str | None = None,
    ) -> None:
        """Close what is open and send `response.done` (once; later calls do nothing)."""
        if self.finished:
            return
        self.finished = True
        await self.close_message(
            "completed" if status == "completed" else "incomplete", final=final
        )
        self.response.status = status
        self.response.status_details = details or StatusDetails(type=status)
        self.response.usage = usage or ResponseUsage()
        await self.sink.send(ResponseDone(response=self.response, vocalis=vocalis))
