"""A realtime handshake takes a token from the key's `realtime_handshakes` bucket (real
Redis, a real WebSocket server): the third of two allowed handshakes is refused with 429,
while the key's other classes still have theirs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.agents_api import harness
from tests.agents_api.harness import LiveServer
from tests.realtime.client import create_agent, recv


@pytest.fixture
async def two_handshakes(tmp_path: Path, redis_url: str) -> AsyncIterator[LiveServer]:
    """A roomy key bucket; two handshakes per key in the `realtime_handshakes` class."""
    settings = harness.sqlite_settings(
        tmp_path,
        redis_url,
        rate_limit_burst=100,
        rate_limit_classes={"realtime_handshakes": {"per_minute": 1, "burst": 2}},
    )
    async for live in harness.serve_live(settings):
        yield live


async def test_handshakes_have_their_own_bucket(two_handshakes: LiveServer) -> None:
    live = two_handshakes
    agent = await create_agent(live)
    url = live.base_url.replace("http://", "ws://") + f"/v1/realtime?model={agent}"
    headers = {"Authorization": f"Bearer {live.tenant.key}"}
    for _ in range(2):
        async with websockets.connect(url, additional_headers=headers) as ws:
            assert (await recv(ws))["type"] == "session.created"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, additional_headers=headers):
            pass
    response = refused.value.response
    assert response.status_code == 429
    problem = json.loads(response.body)
    assert problem["code"] == "rate_limited"
    # The class's bucket refused it (2 at once, one a minute), not the key's (100, 600/min).
    assert response.headers["ratelimit-limit"] == "2", dict(response.headers)
    assert int(response.headers["retry-after"]) > 30
    # The key's reads and writes are untouched by the handshakes.
    async with live.client() as http:
        assert (await http.get("/v1/org")).status_code == 200
        assert (await http.post("/v1/agents", json={"name": "Two"})).status_code == 201
