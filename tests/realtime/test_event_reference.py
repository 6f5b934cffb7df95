"""The realtime event reference (`docs/reference/realtime.md`) is true:

- every client and server event has an example, and each example validates against the
  event's model and against its JSON schema (the one printed in the docs);
- what each client event produces, in a live text session, is among the server events the
  reference says it produces (or `error`)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import jsonschema
import pytest
from websockets.asyncio.client import ClientConnection

from tests.agents_api.harness import LiveServer
from tests.realtime.client import connect, create_agent, recv, send, until
from vocalis.core import errors
from vocalis.realtime.protocol import CLIENT_EVENTS, SERVER_EVENTS
from vocalis.realtime.reference import CLIENT_EXAMPLES, PRODUCES, SERVER_EXAMPLES


def test_every_event_has_an_example_and_every_client_event_its_products() -> None:
    assert set(CLIENT_EXAMPLES) == set(CLIENT_EVENTS)
    assert set(SERVER_EXAMPLES) == set(SERVER_EVENTS)
    assert set(PRODUCES) == set(CLIENT_EVENTS)
    for name, produced in PRODUCES.items():
        assert produced, name
        assert set(produced) <= set(SERVER_EVENTS), (name, set(produced) - set(SERVER_EVENTS))


@pytest.mark.parametrize(
    ("name", "model", "example"),
    [(n, m, CLIENT_EXAMPLES[n]) for n, m in CLIENT_EVENTS.items()]
    + [(n, m, SERVER_EXAMPLES[n]) for n, m in SERVER_EVENTS.items()],
    ids=[*CLIENT_EVENTS, *SERVER_EVENTS],
)
def test_each_example_validates_against_its_event_schema(
    name: str, model: Any, example: dict[str, Any]
) -> None:
    assert example["type"] == name
    model.model_validate(example)  # the model the server parses or builds it with
    schema = model.model_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(example, schema, cls=jsonschema.Draft202012Validator)
    # An example must not lean on fields the schema does not know.
    assert set(example) <= set(schema["properties"]), set(example) - set(schema["properties"])


def test_error_examples_use_catalogued_codes() -> None:
    assert SERVER_EXAMPLES["error"]["error"]["code"] in errors.CATALOGUE


def test_an_example_that_breaks_its_schema_is_caught() -> None:
    """The check above can fail: a wrong field type is refused."""
    broken = json.loads(json.dumps(SERVER_EXAMPLES["response.output_text.delta"]))
    broken["output_index"] = "first"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SERVER_EVENTS["response.output_text.delta"].model_json_schema())


async def _drain(ws: ClientConnection, quiet: float = 0.4) -> list[dict[str, Any]]:
    """Every event that arrives until none has for `quiet` seconds."""
    seen: list[dict[str, Any]] = []
    while True:
        try:
            seen.append(await recv(ws, timeout=quiet))
        except TimeoutError:
            return seen


async def _produced(
    ws: ClientConnection, event: dict[str, Any], until_type: str | None = None
) -> list[str]:
    await ws.send(json.dumps(event))
    seen: list[dict[str, Any]] = []
    while until_type and (not seen or seen[-1]["type"] not in (until_type, "error")):
        seen.append(await recv(ws, timeout=30))
    types = [e["type"] for e in seen + await _drain(ws)]
    if until_type:
        assert until_type in types, (event["type"], seen)
    return types


async def test_what_each_client_event_produces_is_documented(live_server: LiveServer) -> None:
    agent_id = await create_agent(live_server)
    observed: dict[str, list[str]] = {}

    def record(name: str, types: list[str]) -> list[str]:
        observed.setdefault(name, []).extend(types)
        return types

    async with connect(live_server, f"model={agent_id}") as ws:
        assert (await recv(ws))["type"] == "session.created"
        session = {"output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}
        types = record(
            "session.update",
            await _produced(ws, {"type": "session.update", "session": session}, "session.updated"),
        )
        assert "session.updated" in types
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Hi"}],
        }
        await send(ws, "conversation.item.create", item=item)
        created = await until(ws, "conversation.item.done")
        record("conversation.item.create", [e["type"] for e in created + await _drain(ws)])
        user_item = created[-1]["item"]["id"]
        types = record(
            "conversation.item.retrieve",
            await _produced(
                ws,
                {"type": "conversation.item.retrieve", "item_id": user_item},
                "conversation.item.retrieved",
            ),
        )
        await send(ws, "response.create")
        response = await until(ws, "response.done", timeout=30)
        types = record("response.create", [e["type"] for e in response + await _drain(ws)])
        assert {"response.created", "response.output_text.delta", "response.done"} <= set(types)
        reply_item = response[-1]["response"]["output"][0]["id"]
        record(
            "conversation.item.truncate",
            await _produced(
                ws,
                {"type": "conversation.item.truncate", "item_id": reply_item, "audio_end_ms": 0},
            ),
        )
        await send(ws, "conversation.item.create", item=item | {"id": "msg_pending"})
        pending_item = (await until(ws, "conversation.item.done"))[-1]["item"]["id"]
        types = record(
            "conversation.item.delete",
            await _produced(
                ws,
                {"type": "conversation.item.delete", "item_id": pending_item},
                "conversation.item.deleted",
            ),
        )
        record("response.cancel", await _produced(ws, {"type": "response.cancel"}))
        silence = base64.b64encode(bytes(4_800)).decode()  # 100 ms of PCM16 at 24 kHz
        record(
            "input_audio_buffer.append",
            await _produced(ws, {"type": "input_audio_buffer.append", "audio": silence}),
        )
        types = record(
            "input_audio_buffer.clear",
            await _produced(ws, {"type": "input_audio_buffer.clear"}, "input_audio_buffer.cleared"),
        )
        record(
            "input_audio_buffer.commit", await _produced(ws, {"type": "input_audio_buffer.commit"})
        )
        await asyncio.sleep(0)
    assert set(observed) == set(CLIENT_EVENTS)
    for name, types in observed.items():
        undocumented = set(types) - set(PRODUCES[name]) - {"error"}
        assert not undocumented, (name, undocumented)
