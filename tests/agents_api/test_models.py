"""`GET /v1/models` through the official `openai` SDK: agents are the chat models."""

from __future__ import annotations

import openai
import pytest

from tests.agents_api.harness import LiveServer


async def test_the_openai_sdk_lists_and_retrieves_models(live_server: LiveServer) -> None:
    async with live_server.client() as http:
        created = await http.post("/v1/agents", json={"name": "Support"})
        assert created.status_code == 201, created.text
        agent_id = created.json()["id"]
        other = await live_server.tenant_named("Globex")
        foreign = await http.post("/v1/agents", json={"name": "Theirs"}, headers=other.headers)
        foreign_id = foreign.json()["id"]
    sdk = openai.AsyncOpenAI(api_key=live_server.tenant.key, base_url=f"{live_server.base_url}/v1")
    try:
        models = [m async for m in sdk.models.list()]
        by_id = {m.id: m for m in models}
        assert agent_id in by_id and foreign_id not in by_id  # only the caller's agents
        assert by_id[agent_id].object == "model"
        assert by_id[agent_id].owned_by == live_server.tenant.org_id
        engines = [m for m in models if m.owned_by == "vocalis"]
        settings = live_server.app.state.settings
        assert settings.voice_whisper_model in {m.id for m in engines}  # transcription model

        one = await sdk.models.retrieve(agent_id)
        assert (one.id, one.created) == (agent_id, by_id[agent_id].created)
        engine = await sdk.models.retrieve(engines[0].id)
        assert engine.owned_by == "vocalis"
        with pytest.raises(openai.NotFoundError) as missing:
            await sdk.models.retrieve(foreign_id)
        assert foreign_id in missing.value.message  # OpenAI's error object, with a message
        assert missing.value.code == "model_not_found"
    finally:
        await sdk.close()


async def test_listing_models_needs_a_key(live_server: LiveServer) -> None:
    sdk = openai.AsyncOpenAI(api_key="vk_not_a_key", base_url=f"{live_server.base_url}/v1")
    try:
        with pytest.raises(openai.AuthenticationError):
            await sdk.models.list()
    finally:
        await sdk.close()
