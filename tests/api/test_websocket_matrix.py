"""The WebSocket routes (outside the OpenAPI document) in the role and isolation matrices.

Every WebSocket route must be listed in `WEBSOCKETS` with how it authenticates: a new one
fails `test_every_websocket_route_is_in_the_matrix`. Those taking an API key are tried with
each role (the scope decides: refused with 403 at the handshake, or admitted) and with
another organisation's key naming this organisation's agent (refused with 404).
"""

from __future__ import annotations

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.agents_api.harness import LiveServer, create_tenant, live_server  # noqa: F401
from tests.api.conftest import Tenant
from tests.api.matrix import websocket_paths
from tests.realtime.client import create_agent
from vocalis.core.scopes import ROLE_SCOPES, Role
from vocalis.orgs import service as orgs

# path -> (scope an API key needs, or None when no API key is accepted; the query naming
# the agent, or why no key is taken)
WEBSOCKETS: dict[str, tuple[str | None, str]] = {
    "/v1/realtime": ("conversations:write", "model={agent_id}"),
    "/v1/voice/pcm": ("conversations:write", "agent_id={agent_id}"),
    "/v1/telephony/twilio/media": (None, "a stream token from the carrier's signed webhook"),
    "/v1/telephony/telnyx/media": (None, "a stream token from the carrier's signed webhook"),
}


def test_every_websocket_route_is_in_the_matrix() -> None:
    from vocalis.app import create_app
    from vocalis.settings import Settings

    served = websocket_paths(create_app(Settings(env="test")))
    assert len(served) >= 4
    assert served == set(WEBSOCKETS)


async def _key(live: LiveServer, role: Role) -> Tenant:
    async with live.backends.database.session() as session:
        issued = await orgs.create_api_key(
            session=session, org_id=live.tenant.org_id, name=role.value, role=role
        )
    return Tenant(live.tenant.org_id, issued.plaintext)


async def _handshake(live: LiveServer, path: str, query: str, caller: Tenant) -> int:
    """101 when the server admits the socket, else the HTTP status it refused it with."""
    url = live.base_url.replace("http://", "ws://") + f"{path}?{query}"
    try:
        async with websockets.connect(url, additional_headers=caller.headers) as ws:
            await ws.recv(decode=False)  # the session's first event: admitted for real
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


@pytest.mark.parametrize("path", [p for p, (scope, _) in WEBSOCKETS.items() if scope])
async def test_websocket_roles_and_tenants(live_server: LiveServer, path: str) -> None:  # noqa: F811
    scope, query = WEBSOCKETS[path]
    assert scope is not None
    agent_id = await create_agent(live_server)
    wanted = query.format(agent_id=agent_id)
    outcomes = {}
    for role in Role:
        caller = await _key(live_server, role)
        outcomes[role] = await _handshake(live_server, path, wanted, caller)
    expected = {role: 101 if scope in ROLE_SCOPES[role] else 403 for role in Role}
    assert outcomes == expected
    stranger = await create_tenant(live_server.backends, "Stranger")
    assert await _handshake(live_server, path, wanted, stranger) == 404
