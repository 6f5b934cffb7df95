"""Per-event reference of `WS /v1/realtime`: a realistic example of every client and server
event, and the server events each client event produces.

The examples validate against the protocol models (`tests/realtime/test_event_reference.py`
checks each one with the model and with its JSON schema, and drives a live session to check
that what a client event produces is among `PRODUCES`); the generated reference
(`docs/reference/realtime.md`) prints them beside each event's field table.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from vocalis.realtime.protocol import CLIENT_EVENTS, SERVER_EVENTS

_CONV = "cnv_01m8y4rdqads32sa73e2e67fga"
_AGENT = "agt_01m8y4rd0ebxwc04qkvs7zbfb7"
_SESS = "sess_01m8y4h3sse4k1b83615wzyh15"
_USER_ITEM = "msg_01m8y4h3sszdj7k3nssz0h8s4a"
_REPLY_ITEM = "msg_01m8y4h3st7k2q9w4gq1c3v5xz"
_CALL_ITEM = "item_01m8y4h3sska91rxyyfvhhfxy6"
_RESP = "resp_01m8y4h3sskpwbcfy2b4dmsvqt"
_CALL = "call_01m8y4h3sspcj7zdm7w9n88fk9"
_AUDIO = "AAAAAP7/AQD9/wIA/P8DAA=="  # eight PCM16 samples, base64


def _eid(n: int) -> str:
    return f"event_01m8y4h3ss62q1tq7qaemzh{n:03d}"


_SESSION: dict[str, Any] = {
    "type": "realtime",
    "object": "realtime.session",
    "id": _SESS,
    "model": _AGENT,
    "output_modalities": ["text"],
    "instructions": "",
    "tools": [],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
    "tracing": None,
    "include": None,
    "prompt": None,
    "truncation": "auto",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": None,
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
                "create_response": True,
                "interrupt_response": True,
                "idle_timeout_ms": None,
            },
        },
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": None},
    },
    "metadata": None,
}
_USER_MESSAGE = {
    "id": _USER_ITEM,
    "object": "realtime.item",
    "type": "message",
    "role": "user",
    "status": "completed",
    "content": [{"type": "input_text", "text": "Where is my order 4521?"}],
}
_REPLY_TEXT = "Order 4521 left our warehouse on Monday and arrives Thursday [1]."
_REPLY = {
    "id": _REPLY_ITEM,
    "object": "realtime.item",
    "type": "message",
    "role": "assistant",
    "status": "completed",
    "content": [{"type": "output_text", "text": _REPLY_TEXT}],
}
_RESPONSE_IN_PROGRESS = {
    "id": _RESP,
    "object": "realtime.response",
    "status": "in_progress",
    "status_details": None,
    "output": [],
    "conversation_id": _CONV,
    "output_modalities": ["text"],
    "max_output_tokens": "inf",
    "usage": None,
    "metadata": None,
}
_TEXT_POSITION = {"response_id": _RESP, "item_id": _REPLY_ITEM, "output_index": 0}

CLIENT_EXAMPLES: dict[str, dict[str, Any]] = {
    "session.update": {
        "type": "session.update",
        "event_id": "evt_client_1",
        "session": {
            "type": "realtime",
            "output_modalities": ["text"],
            "instructions": "Answer in one or two sentences.",
            "audio": {"input": {"turn_detection": None}},
        },
    },
    "conversation.item.create": {
        "type": "conversation.item.create",
        "event_id": "evt_client_2",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Where is my order 4521?"}],
        },
    },
    "conversation.item.retrieve": {
        "type": "conversation.item.retrieve",
        "event_id": "evt_client_3",
        "item_id": _USER_ITEM,
    },
    "conversation.item.delete": {
        "type": "conversation.item.delete",
        "event_id": "evt_client_4",
        "item_id": _USER_ITEM,
    },
    "conversation.item.truncate": {
        "type": "conversation.item.truncate",
        "event_id": "evt_client_5",
        "item_id": _REPLY_ITEM,
        "content_index": 0,
        "audio_end_ms": 1500,
    },
    "response.create": {
        "type": "response.create",
        "event_id": "evt_client_6",
        "response": {"output_modalities": ["text"], "metadata": {"ticket": "T-981"}},
    },
    "response.cancel": {"type": "response.cancel", "event_id": "evt_client_7"},
    "input_audio_buffer.append": {
        "type": "input_audio_buffer.append",
        "event_id": "evt_client_8",
        "audio": _AUDIO,
    },
    "input_audio_buffer.commit": {"type": "input_audio_buffer.commit", "event_id": "evt_client_9"},
    "input_audio_buffer.clear": {"type": "input_audio_buffer.clear", "event_id": "evt_client_10"},
}

# What each client event produces (besides `error` when it is refused, which any event can
# produce). A response's events are listed under `response.create`.
_RESPONSE_EVENTS = (
    "response.created",
    "conversation.item.added",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_audio_transcript.delta",
    "response.output_audio.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "vocalis.tool.result",
    "response.output_text.done",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "vocalis.handoff.requested",
    "response.done",
    "rate_limits.updated",
    "vocalis.conversation.ended",
)
PRODUCES: dict[str, tuple[str, ...]] = {
    "session.update": ("session.updated",),
    "conversation.item.create": ("conversation.item.added", "conversation.item.done"),
    "conversation.item.retrieve": ("conversation.item.retrieved",),
    "conversation.item.delete": ("conversation.item.deleted",),
    "conversation.item.truncate": ("conversation.item.truncated",),
    "response.create": _RESPONSE_EVENTS,
    "response.cancel": (
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
        "rate_limits.updated",
    ),
    "input_audio_buffer.append": (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.done",
        "input_audio_buffer.timeout_triggered",
        *_RESPONSE_EVENTS,
    ),
    "input_audio_buffer.commit": (
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.done",
    ),
    "input_audio_buffer.clear": ("input_audio_buffer.cleared",),
}
PRODUCES_NOTE: dict[str, str] = {
    "response.create": "the response's events, in this order (text replies skip the audio "
    "ones; spoken replies send `response.output_audio_transcript.*` and "
    "`response.output_audio.*` instead of `response.output_text.*`; tool calls add the "
    "function-call events and `vocalis.tool.result`)",
    "response.cancel": "the cancelled response's closing events (`response.done` with status "
    "`cancelled`, reason `client_cancelled`); `error` `response_cancel_not_active` when no "
    "response is in progress",
    "input_audio_buffer.append": "with server or semantic VAD: the turn's events as speech "
    "starts and stops (and, when `create_response` is on, a response's events); with "
    "turn detection off, nothing",
    "input_audio_buffer.commit": "the committed turn's user item and its transcription",
}

SERVER_EXAMPLES: dict[str, dict[str, Any]] = {
    "session.created": {
        "type": "session.created",
        "event_id": _eid(1),
        "session": _SESSION,
        "vocalis": {
            "conversation_id": _CONV,
            "agent_id": _AGENT,
            "agent_version": 3,
            "resumed": False,
        },
    },
    "session.updated": {
        "type": "session.updated",
        "event_id": _eid(2),
        "session": _SESSION | {"instructions": "Answer in one or two sentences."},
    },
    "conversation.item.added": {
        "type": "conversation.item.added",
        "event_id": _eid(3),
        "previous_item_id": None,
        "item": _USER_MESSAGE,
    },
    "conversation.item.done": {
        "type": "conversation.item.done",
        "event_id": _eid(4),
        "previous_item_id": _USER_ITEM,
        "item": _REPLY,
    },
    "conversation.item.retrieved": {
        "type": "conversation.item.retrieved",
        "event_id": _eid(5),
        "item": _USER_MESSAGE,
    },
    "conversation.item.deleted": {
        "type": "conversation.item.deleted",
        "event_id": _eid(6),
        "item_id": _USER_ITEM,
    },
    "conversation.item.truncated": {
        "type": "conversation.item.truncated",
        "event_id": _eid(7),
        "item_id": _REPLY_ITEM,
        "content_index": 0,
        "audio_end_ms": 1500,
    },
    "response.created": {
        "type": "response.created",
        "event_id": _eid(8),
        "response": _RESPONSE_IN_PROGRESS,
    },
    "response.output_item.added": {
        "type": "response.output_item.added",
        "event_id": _eid(9),
        "response_id": _RESP,
        "output_index": 0,
        "item": _REPLY | {"status": "in_progress", "content": []},
    },
    "response.content_part.added": {
        "type": "response.content_part.added",
        "event_id": _eid(10),
        **_TEXT_POSITION,
        "content_index": 0,
        "part": {"type": "output_text", "text": ""},
    },
    "response.output_text.delta": {
        "type": "response.output_text.delta",
        "event_id": _eid(11),
        **_TEXT_POSITION,
        "content_index": 0,
        "delta": "Order 4521 left our warehouse",
    },
    "response.output_text.done": {
        "type": "response.output_text.done",
        "event_id": _eid(12),
        **_TEXT_POSITION,
        "content_index": 0,
        "text": _REPLY_TEXT,
    },
    "response.content_part.done": {
        "type": "response.content_part.done",
        "event_id": _eid(13),
        **_TEXT_POSITION,
        "content_index": 0,
        "part": {"type": "output_text", "text": _REPLY_TEXT},
    },
    "response.output_item.done": {
        "type": "response.output_item.done",
        "event_id": _eid(14),
        "response_id": _RESP,
        "output_index": 0,
        "item": _REPLY,
    },
    "response.function_call_arguments.delta": {
        "type": "response.function_call_arguments.delta",
        "event_id": _eid(15),
        "response_id": _RESP,
        "item_id": _CALL_ITEM,
        "output_index": 0,
        "call_id": _CALL,
        "delta": '{"order_id": "4521"}',
    },
    "response.function_call_arguments.done": {
        "type": "response.function_call_arguments.done",
        "event_id": _eid(16),
        "response_id": _RESP,
        "item_id": _CALL_ITEM,
        "output_index": 0,
        "call_id": _CALL,
        "name": "lookup_order",
        "arguments": '{"order_id": "4521"}',
    },
    "input_audio_buffer.speech_started": {
        "type": "input_audio_buffer.speech_started",
        "event_id": _eid(17),
        "audio_start_ms": 1240,
        "item_id": _USER_ITEM,
    },
    "input_audio_buffer.speech_stopped": {
        "type": "input_audio_buffer.speech_stopped",
        "event_id": _eid(18),
        "audio_end_ms": 3180,
        "item_id": _USER_ITEM,
    },
    "input_audio_buffer.committed": {
        "type": "input_audio_buffer.committed",
        "event_id": _eid(19),
        "previous_item_id": None,
        "item_id": _USER_ITEM,
    },
    "input_audio_buffer.cleared": {"type": "input_audio_buffer.cleared", "event_id": _eid(20)},
    "input_audio_buffer.timeout_triggered": {
        "type": "input_audio_buffer.timeout_triggered",
        "event_id": _eid(21),
        "audio_start_ms": 9000,
        "audio_end_ms": 14000,
        "item_id": _USER_ITEM,
    },
    "conversation.item.input_audio_transcription.delta": {
        "type": "conversation.item.input_audio_transcription.delta",
        "event_id": _eid(22),
        "item_id": _USER_ITEM,
        "content_index": 0,
        "delta": "Where is my",
    },
    "conversation.item.input_audio_transcription.completed": {
        "type": "conversation.item.input_audio_transcription.completed",
        "event_id": _eid(23),
        "item_id": _USER_ITEM,
        "content_index": 0,
        "transcript": "Where is my order 4521?",
        "usage": {"type": "duration", "seconds": 1.94},
    },
    "conversation.item.input_audio_transcription.failed": {
        "type": "conversation.item.input_audio_transcription.failed",
        "event_id": _eid(24),
        "item_id": _USER_ITEM,
        "content_index": 0,
        "error": {
            "type": "transcription_error",
            "code": "stt_unavailable",
            "message": "The speech-to-text engine did not answer.",
            "param": None,
        },
    },
    "response.output_audio_transcript.delta": {
        "type": "response.output_audio_transcript.delta",
        "event_id": _eid(25),
        **_TEXT_POSITION,
        "content_index": 0,
        "delta": "Order 4521 left our warehouse on Monday ",
    },
    "response.output_audio.delta": {
        "type": "response.output_audio.delta",
        "event_id": _eid(26),
        **_TEXT_POSITION,
        "content_index": 0,
        "delta": _AUDIO,
    },
    "response.output_audio.done": {
        "type": "response.output_audio.done",
        "event_id": _eid(27),
        **_TEXT_POSITION,
        "content_index": 0,
    },
    "response.output_audio_transcript.done": {
        "type": "response.output_audio_transcript.done",
        "event_id": _eid(28),
        **_TEXT_POSITION,
        "content_index": 0,
        "transcript": _REPLY_TEXT,
    },
    "response.done": {
        "type": "response.done",
        "event_id": _eid(29),
        "response": _RESPONSE_IN_PROGRESS
        | {
            "status": "completed",
            "status_details": {"type": "completed", "reason": None, "error": None},
            "output": [_REPLY],
            "usage": {
                "total_tokens": 412,
                "input_tokens": 388,
                "output_tokens": 24,
                "input_token_details": {"cached_tokens": 0, "text_tokens": 388, "audio_tokens": 0},
                "output_token_details": {"text_tokens": 24, "audio_tokens": 0},
            },
        },
        "vocalis": {
            "conversation_id": _CONV,
            "message_id": _REPLY_ITEM,
            "citations": [
                {
                    "n": 1,
                    "document_id": "doc_01m8y4h3ssm7yxt53zn5v7f1vg",
                    "document_name": "shipping-policy.pdf",
                    "chunk_id": "chunk_01m8y4h3st0b2m5n8q1r4t7v9w",
                    "text": "Orders leave the warehouse within one working day.",
                    "score": 0.82,
                    "page": 2,
                    "section": "Delivery times",
                    "attributed": False,
                }
            ],
            "latency_ms": {"retrieve": 18.0, "first_token": 240.5, "total": 610.2},
            "cost_usd": 0.00041,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "flags": [],
            "handoff": False,
            "conversation_ended": False,
            "speculation": {"hit": False, "dropped": 0},
        },
    },
    "rate_limits.updated": {
        "type": "rate_limits.updated",
        "event_id": _eid(30),
        "rate_limits": [
            {"name": "requests", "limit": 600, "remaining": 597, "reset_seconds": 0.3},
            {"name": "tokens", "limit": 200000, "remaining": 199588, "reset_seconds": 0.12},
        ],
    },
    "vocalis.tool.result": {
        "type": "vocalis.tool.result",
        "event_id": _eid(31),
        "response_id": _RESP,
        "call_id": _CALL,
        "name": "lookup_order",
        "output": '{"status": "shipped", "eta": "Thursday"}',
        "is_error": False,
    },
    "vocalis.handoff.requested": {
        "type": "vocalis.handoff.requested",
        "event_id": _eid(32),
        "conversation_id": _CONV,
        "reason": "The caller asked for a refund above the agent's limit.",
    },
    "vocalis.conversation.ended": {
        "type": "vocalis.conversation.ended",
        "event_id": _eid(33),
        "conversation_id": _CONV,
        "reason": "agent_ended",
    },
    "error": {
        "type": "error",
        "event_id": _eid(34),
        "error": {
            "type": "invalid_request_error",
            "code": "item_retrieve_invalid_item_id",
            "message": "No item 'msg_01m8y4h3sszdj7k3nssz0h8s4a' in this conversation.",
            "param": "item_id",
            "event_id": "evt_client_3",
        },
    },
}


def _type_of(prop: dict[str, Any]) -> str:
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "$ref" in prop:
        return "object"
    if "anyOf" in prop or "oneOf" in prop:
        options = [_type_of(option) for option in prop.get("anyOf", prop.get("oneOf", []))]
        return " or ".join(dict.fromkeys(options))
    if prop.get("type") == "array":
        return f"array of {_type_of(prop.get('items', {}))}"
    return str(prop.get("type", "any"))


def _object_ref(prop: dict[str, Any]) -> str | None:
    """The one model a property holds (directly or nullable), if it is one model."""
    if "$ref" in prop:
        return str(prop["$ref"])
    refs = [o["$ref"] for o in prop.get("anyOf", []) if "$ref" in o]
    others = [o for o in prop.get("anyOf", []) if "$ref" not in o and o.get("type") != "null"]
    return str(refs[0]) if len(refs) == 1 and not others else None


def _rows(schema: dict[str, Any], defs: dict[str, Any], prefix: str, depth: int) -> list[str]:
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        description = (prop.get("description") or "").replace("|", "\\|").replace("\n", " ")
        rows.append(
            f"| `{prefix}{name}` | {_type_of(prop)} | {'yes' if name in required else 'no'} | "
            f"{description} |"
        )
        ref = _object_ref(prop)
        if ref is not None and depth < 3:
            rows += _rows(defs[ref.rsplit("/", 1)[-1]], defs, f"{prefix}{name}.", depth + 1)
    return rows


def _field_table(model: type[BaseModel]) -> str:
    """Fields as a table, one model's fields nested under its field's name (dotted)."""
    schema = model.model_json_schema()
    rows = _rows(schema, schema.get("$defs", {}), "", 0)
    return (
        "\n".join(["| Field | Type | Required | Description |", "|---|---|---|---|", *rows]) + "\n"
    )


def _section(name: str, model: type[BaseModel], example: dict[str, Any]) -> list[str]:
    doc = (model.__doc__ or "").strip().splitlines()[0]
    return [
        f"### `{name}`",
        "",
        doc,
        "",
        _field_table(model),
    ]


def _example_block(example: dict[str, Any]) -> list[str]:
    return ["Example:", "", "```json", json.dumps(example, indent=2), "```", ""]


def event_sections() -> str:
    """Markdown: every client event (fields, produces, example), then every server event."""
    lines = ["## Client event reference", ""]
    for name, client_model in CLIENT_EVENTS.items():
        lines += _section(name, client_model, CLIENT_EXAMPLES[name])
        produced = ", ".join(f"[`{e}`](#{e.replace('.', '')})" for e in PRODUCES[name])
        note = PRODUCES_NOTE.get(name)
        lines += [
            f"Produces: {produced}" + (f" — {note}" if note else "") + "; `error` when refused.",
            "",
        ]
        lines += _example_block(CLIENT_EXAMPLES[name])
    lines += ["## Server event reference", ""]
    for name, server_model in SERVER_EVENTS.items():
        lines += _section(name, server_model, SERVER_EXAMPLES[name])
        lines += _example_block(SERVER_EXAMPLES[name])
    return "\n".join(lines)
