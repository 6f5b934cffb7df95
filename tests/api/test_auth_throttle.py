"""Failed authentication is throttled per client address, in Redis (issue 15): many wrong
keys from one address get 429, that address's good keys too while the window lasts, other
addresses are untouched, every process sees the same count, and refused WebSocket
handshakes are logged as the client's doing (INFO/WARNING), never ERROR."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.agents_api import harness
from tests.api.conftest import Api, make_settings, start_api
from vocalis.core.auth_throttle import AUTH_FAILURES_BY_ADDRESS
from vocalis.core.migrate import upgrade

ATTACKER = "203.0.113.7"
NEIGHBOUR = "198.51.100.9"
WRONG = "vk_wrongwrongwr_" + "x" * 40


@asynccontextmanager
async def _from(api: Api, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same app whose requests come from `address`."""
    transport = httpx.ASGITransport(app=api.app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def throttled_api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    settings = make_settings(
        tmp_path, url, redis_url, auth_failure_limit=5, auth_failure_window_s=2
    )
    async for api in start_api(settings):
        yield api


async def test_wrong_keys_from_one_address_are_throttled_and_others_are_not(
    throttled_api: Api,
) -> None:
    api = throttled_api
    tenant = await api.tenant()
    async with _from(api, ATTACKER) as attacker, _from(api, NEIGHBOUR) as neighbour:
        for n in range(5):
            wrong = await attacker.get("/v1/agents", headers=_bearer(f"{WRONG}{n}"))
            assert wrong.status_code == 401, wrong.text
            assert wrong.json()["code"] == "auth_invalid"
        throttled = await attacker.get("/v1/agents", headers=_bearer(WRONG))
        assert throttled.status_code == 429
        problem = throttled.json()
        assert problem["code"] == "auth_throttled"
        assert throttled.headers["content-type"].startswith("application/problem+json")
        assert 1 <= int(throttled.headers["retry-after"]) <= 2

        # A good key from the throttled address is refused too: a right guess looks the same.
        good = await attacker.get("/v1/agents", headers=tenant.headers)
        assert good.status_code == 429 and good.json()["code"] == "auth_throttled"
        # No credential at all is not a guess: still a plain 401.
        bare = await attacker.get("/v1/agents")
        assert (bare.status_code, bare.json()["code"]) == (401, "auth_missing")
        # Another address is not affected.
        other = await neighbour.get("/v1/agents", headers=tenant.headers)
        assert other.status_code == 200, other.text

        counter = AUTH_FAILURES_BY_ADDRESS.format(address=ATTACKER)
        assert int(await api.backends.redis.get(counter)) == 5  # refusals are not failures
        assert 0 < await api.backends.redis.ttl(counter) <= 2

        await asyncio.sleep(2.2)  # the window closes
        again = await attacker.get("/v1/agents", headers=tenant.headers)
        assert again.status_code == 200, again.text


async def test_the_count_is_shared_by_every_process_through_redis(
    tmp_path: Path, redis_url: str
) -> None:
    """Two app instances (two processes' worth of state) on one Redis share the count."""
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    first = make_settings(tmp_path, url, redis_url, auth_failure_limit=4)
    second = make_settings(tmp_path, url, redis_url, auth_failure_limit=4)
    async for one in start_api(first):
        async for two in start_api(second):
            assert one.app is not two.app
            async with _from(one, ATTACKER) as a, _from(two, ATTACKER) as b:
                statuses = []
                for n in range(6):
                    client = a if n % 2 else b
                    response = await client.get("/v1/agents", headers=_bearer(f"{WRONG}{n}"))
                    statuses.append(response.status_code)
            assert statuses == [401, 401, 401, 401, 429, 429]


@pytest.fixture
async def ws_server(tmp_path: Path, redis_url: str) -> AsyncIterator[harness.LiveServer]:
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    settings = make_settings(tmp_path, url, redis_url, auth_failure_limit=3)
    await asyncio.to_thread(upgrade, url)
    backends = await harness.build_backends(settings)
    app = harness.build_app(settings)
    server, thread, port = await asyncio.to_thread(harness._serve, app)
    try:
        harness.install_fakes(app.state.backends)
        tenant = await harness.create_tenant(backends, "Acme")
        yield harness.LiveServer(f"http://127.0.0.1:{port}", app, backends, tenant)
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
        await backends.close()


async def _handshake(live: harness.LiveServer, headers: dict[str, str]) -> tuple[int, Any]:
    url = live.base_url.replace("http://", "ws://") + "/v1/realtime?model=agt_none"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, additional_headers=headers):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def test_websocket_handshakes_count_and_are_refused_without_error_logs(
    ws_server: harness.LiveServer, capfd: pytest.CaptureFixture[str]
) -> None:
    live = ws_server
    outcomes = [await _handshake(live, _bearer(f"{WRONG}{n}")) for n in range(3)]
    assert [(s, p["code"]) for s, p in outcomes] == [(401, "auth_invalid")] * 3
    status, problem = await _handshake(live, _bearer(live.tenant.key))
    assert (status, problem["code"]) == (429, "auth_throttled")
    secret = await _handshake(live, {})  # no credential: not throttled, not counted
    assert (secret[0], secret[1]["code"]) == (401, "auth_missing")
    # A throttled address is throttled on REST too (one count for both).
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        rest = await http.get("/v1/agents", headers=_bearer(live.tenant.key))
    assert (rest.status_code, rest.json()["code"]) == (429, "auth_throttled")

    logged = capfd.readouterr()
    lines = [json.loads(line) for line in (logged.out + logged.err).splitlines() if line[:1] == "{"]
    refusals = [line for line in lines if line.get("event") == "realtime_refused"]
    assert len(refusals) == 5
    assert {line["level"] for line in refusals} <= {"info", "warning"}
    assert not [line for line in lines if line.get("level") in ("error", "critical")]
    assert "Traceback" not in logged.out + logged.err


async def test_a_handshake_with_an_invalid_query_gets_a_problem_not_an_error_log(
    ws_server: harness.LiveServer, capfd: pytest.CaptureFixture[str]
) -> None:
    live = ws_server
    base = live.base_url.replace("http://", "ws://")
    for path in ("/v1/realtime?model=" + "a" * 100, "/v1/voice/pcm"):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(base + path, additional_headers=_bearer(WRONG)):
                pass
        response = refused.value.response
        assert response.status_code == 422, path
        problem = json.loads(response.body)
        assert problem["code"] == "validation_failed"
        assert problem["errors"][0]["loc"][0] == "query"
    logged = capfd.readouterr()
    lines = [json.loads(line) for line in (logged.out + logged.err).splitlines() if line[:1] == "{"]
    assert [line["level"] for line in lines if line.get("event") == "websocket_refused"] == [
        "info",
        "info",
    ]
    assert not [line for line in lines if line.get("level") in ("error", "critical")]


async def test_a_key_in_the_principal_cache_is_refused_from_a_throttled_address(
    throttled_api: Api,
) -> None:
    """A cached key skips the lookup; the throttle is then checked in the rate limiter's
    round trip, first: the address still hears 429, not the key's answer."""
    api = throttled_api
    tenant = await api.tenant()
    async with _from(api, ATTACKER) as attacker, _from(api, NEIGHBOUR) as neighbour:
        for n in range(5):
            wrong = await attacker.get("/v1/agents", headers=_bearer(f"{WRONG}{n}"))
            assert wrong.status_code == 401, wrong.text
        # The neighbour's request puts the key in the process's principal cache (≤ 1 s):
        # primed again until the attacker's request follows it while it is still there.
        key = tenant.headers["Authorization"].split()[1]
        cached = None
        for _ in range(5):
            assert (await neighbour.get("/v1/agents", headers=tenant.headers)).status_code == 200
            cached = api.app.state.api_keys.cached(key)
            if cached is not None:
                break
        assert cached is not None, "the principal cache never held the key"
        good = await attacker.get("/v1/agents", headers=tenant.headers)
        assert good.status_code == 429 and good.json()["code"] == "auth_throttled", good.text
        assert 1 <= int(good.headers["retry-after"]) <= 2
        counter = AUTH_FAILURES_BY_ADDRESS.format(address=ATTACKER)
        assert int(await api.backends.redis.get(counter)) == 5  # refusals are not failures
