"""`POST /v1/realtime/client_secrets`: short-lived secrets that open the realtime WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.voice.helpers import VoiceServer
from vocalis.realtime.client_secrets import CLIENT_SECRET, digest


async def _mint(server: VoiceServer, **body: Any) -> Any:
    return await server.openai().realtime.client_secrets.create(**body)


async def _refused(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, additional_headers=headers or {}):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body)


async def test_the_openai_sdk_mints_a_secret_that_opens_a_session_as_bearer_or_query_token(
    voice_server: VoiceServer,
) -> None:
    secret = await _mint(
        voice_server,
        expires_after={"anchor": "created_at", "seconds": 120},
        session={
            "type": "realtime",
            "model": voice_server.agent_id,
            "audio": {"input": {"format": {"type": "audio/pcmu"}}},
        },
    )
    assert secret.value.startswith("ek_")
    assert abs(secret.expires_at - (time.time() + 120)) < 5
    assert secret.session.model == voice_server.agent_id
    async with voice_server.openai(api_key=secret.value).realtime.connect(
        model=voice_server.agent_id
    ) as connection:
        created = await connection.recv()
        assert created.type == "session.created"
        assert created.session.audio.input.format.type == "audio/pcmu"  # type: ignore[union-attr]
    url = voice_server.ws_url.split("?")[0] + f"?token={secret.value}"  # the agent is pinned
    async with websockets.connect(url) as ws:
        created_raw = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert created_raw["type"] == "session.created"
        assert created_raw["session"]["model"] == voice_server.agent_id
        await ws.send(b"\xff" * 160)  # the secret declared μ-law: raw frames are accepted
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == (
            "input_audio_buffer.cleared"
        )


async def test_a_wrong_or_expired_secret_is_refused(voice_server: VoiceServer) -> None:
    secret = await _mint(voice_server, session={"type": "realtime", "model": voice_server.agent_id})
    status, body = await _refused(voice_server.ws_url, {"Authorization": "Bearer ek_not-a-secret"})
    assert (status, body["code"]) == (401, "auth_invalid")
    status, _ = await _refused(voice_server.ws_url.split("?")[0] + "?token=ek_forged")
    assert status == 401
    # Expire the secret the way time would: Redis drops it when its TTL runs out.
    redis = voice_server.live.backends.redis
    key = CLIENT_SECRET.format(digest=digest(secret.value))
    assert await redis.pexpire(key, 1)
    await asyncio.sleep(0.05)
    status, body = await _refused(voice_server.ws_url, {"Authorization": f"Bearer {secret.value}"})
    assert (status, body["code"]) == (401, "auth_invalid")


async def test_a_secret_is_only_for_its_agent_and_api_keys_never_go_in_the_url(
    voice_server: VoiceServer,
) -> None:
    secret = await _mint(voice_server, session={"type": "realtime", "model": voice_server.agent_id})
    async with voice_server.live.client() as http:
        other = (await http.post("/v1/agents", json={"name": "Other", "instructions": ""})).json()
    other_url = voice_server.ws_url.split("?")[0] + f"?model={other['id']}&token={secret.value}"
    status, body = await _refused(other_url)
    assert (status, body["code"]) == (403, "forbidden_scope")
    key_in_url = voice_server.ws_url + f"&token={voice_server.live.tenant.key}"
    status, _ = await _refused(key_in_url)
    assert status == 401


async def test_minting_needs_a_key_and_checks_the_agent_and_the_lifetime(
    voice_server: VoiceServer,
) -> None:
    async with voice_server.live.client() as http:
        anonymous = await http.post(
            "/v1/realtime/client_secrets", json={}, headers={"Authorization": ""}
        )
        assert anonymous.status_code == 401
        unknown = await http.post(
            "/v1/realtime/client_secrets", json={"session": {"type": "realtime", "model": "agt_x"}}
        )
        assert unknown.status_code == 404
        too_long = await http.post(
            "/v1/realtime/client_secrets", json={"expires_after": {"seconds": 86_400}}
        )
        assert too_long.status_code == 422
        not_ga = await http.post(
            "/v1/realtime/client_secrets",
            json={"session": {"type": "realtime", "temperature": 0.2}},
        )
        assert not_ga.status_code == 422
