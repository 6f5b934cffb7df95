"""The one response emitter: the GA order of a response's events, for text and audio alike;
and which words of a spoken reply were heard before a point of its audio."""

from __future__ import annotations

from vocalis.realtime.emitter import ResponseEmitter
from vocalis.realtime.items import Playback
from vocalis.realtime.protocol import Response, ServerEvent, VocalisResponse


class Sink:
    """Keeps the events it is given."""

    def __init__(self) -> None:
        self.events: list[ServerEvent] = []

    async def send(self, event: ServerEvent) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [str(getattr(e, "type", "")) for e in self.events]


def _emitter(sink: Sink) -> ResponseEmitter:
    response = Response(id="resp_1", status="in_progress", conversation_id="cnv_1")
    return ResponseEmitter(sink, response, previous_item_id="msg_user")


async def test_a_text_reply_then_a_tool_call_come_in_the_ga_order() -> None:
    sink = Sink()
    emitter = _emitter(sink)
    await emitter.created()
    await emitter.text("One moment.")
    await emitter.function_call(call_id="call_1", name="lookup", arguments='{"n": "7"}')
    await emitter.done("completed", VocalisResponse(conversation_id="cnv_1"))
    assert sink.types() == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    added = [e for e in sink.events if getattr(e, "type", "") == "conversation.item.added"]
    assert [getattr(e, "previous_item_id", None) for e in added] == [
        "msg_user",
        emitter.response.output[0].id,
    ]
    assert [item.type for item in emitter.response.output] == ["message", "function_call"]


async def test_a_tool_call_leaves_a_spoken_message_open_while_it_plays() -> None:
    sink = Sink()
    emitter = _emitter(sink)
    await emitter.transcript("Let me check.")
    await emitter.audio("AAAA")
    await emitter.function_call(call_id="call_1", name="lookup", arguments="{}")
    assert emitter.speaking
    await emitter.done("completed", VocalisResponse(conversation_id="cnv_1"), final="Let me")
    message = emitter.response.output[0]
    assert message.content[0].type == "output_audio"  # type: ignore[union-attr]
    assert message.content[0].transcript == "Let me"  # type: ignore[union-attr]
    assert sink.types()[-4:] == [
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]


async def test_done_is_sent_once() -> None:
    sink = Sink()
    emitter = _emitter(sink)
    await emitter.done("cancelled", VocalisResponse(conversation_id="cnv_1"))
    await emitter.done("completed", VocalisResponse(conversation_id="cnv_1"))
    assert sink.types() == ["response.done"]
    assert emitter.response.status == "cancelled"


def test_what_was_heard_stops_where_the_audio_was_cut() -> None:
    playback = Playback(
        audio_ms=3000.0, pieces=[(0.0, "Refunds take thirty days."), (1500.0, "Bring the receipt.")]
    )
    assert playback.heard(3000) == "Refunds take thirty days. Bring the receipt."
    assert playback.heard(1500) == "Refunds take thirty days."
    assert playback.heard(750) == "Refunds take"
    assert playback.heard(0) == ""
