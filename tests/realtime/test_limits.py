"""Realtime sessions are limited (issue 15): per key and per organisation, the handshake
counts in the rate limiter, refusals leave no conversation behind, the event loop stays
responsive with the cap reached, and a client secret dies with its key."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from fastapi import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from tests.agents_api import harness
from tests.agents_api.harness import LiveServer
from tests.realtime.client import TEXT_ONLY, answer, create_agent, recv, say, update
from vocalis.conversations import store
from vocalis.core.scopes import Role
from vocalis.realtime.limits import KEY_SESSIONS, ORG_SESSIONS
from vocalis.realtime.session import RealtimeSession
from vocalis.transports.raw_pcm import RawPcmCall


@pytest.fixture
async def capped(tmp_path: Path, redis_url: str) -> AsyncIterator[LiveServer]:
    """Two sessions per key, three per organisation."""
    settings = harness.sqlite_settings(
        tmp_path, redis_url, realtime_max_sessions_per_key=2, realtime_max_sessions_per_org=3
    )
    async for live in harness.serve_live(settings):
        yield live


@pytest.fixture
async def default_caps(tmp_path: Path, redis_url: str) -> AsyncIterator[LiveServer]:
    """The deployment's session caps; no rate limiting (the sessions talk faster than a key's
    request budget allows, and the cap, not the budget, is what the test reaches)."""
    settings = harness.sqlite_settings(tmp_path, redis_url, flags={"api.rate_limiting": False})
    async for live in harness.serve_live(settings):
        yield live


def _url(live: LiveServer, query: str) -> str:
    return live.base_url.replace("http://", "ws://") + f"/v1/realtime?{query}"


async def _open(stack: AsyncExitStack, live: LiveServer, key: str, agent: str) -> ClientConnection:
    ws = await stack.enter_async_context(
        websockets.connect(_url(live, f"model={agent}"), additional_headers=_bearer(key))
    )
    created = await recv(ws)
    assert created["type"] == "session.created", created
    return ws


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _refused(live: LiveServer, key: str, query: str) -> tuple[int, dict[str, Any], Any]:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(_url(live, query), additional_headers=_bearer(key)):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}"), response.headers


async def _conversations(live: LiveServer, org_id: str) -> list[dict[str, Any]]:
    return await live.backends.documents.find(store.CONVERSATIONS, org_id, limit=1000)


async def _key(live: LiveServer, role: Role = Role.DEVELOPER) -> str:
    async with live.client() as http:
        created = await http.post("/v1/api-keys", json={"name": "second", "role": role.value})
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


async def test_sessions_beyond_the_key_and_organisation_caps_are_refused_without_a_conversation(
    capped: LiveServer,
) -> None:
    live = capped
    agent = await create_agent(live)
    other_key = await _key(live)
    async with AsyncExitStack() as stack:
        first = await _open(stack, live, live.tenant.key, agent)
        await _open(stack, live, live.tenant.key, agent)

        status, problem, headers = await _refused(live, live.tenant.key, f"model={agent}")
        assert status == 429
        assert problem["code"] == "realtime_session_limit"
        assert (problem["scope"], problem["limit"]) == ("key", 2)
        assert headers["content-type"].startswith("application/problem+json")
        assert int(headers["retry-after"]) > 0

        # The organisation allows three: the other key gets one, then the organisation is full.
        await _open(stack, live, other_key, agent)
        status, problem, _ = await _refused(live, other_key, f"model={agent}")
        assert (status, problem["code"], problem["scope"]) == (
            429,
            "realtime_session_limit",
            "organisation",
        )

        # A refused handshake started no conversation: three sessions, three conversations.
        docs = await _conversations(live, live.tenant.org_id)
        assert len(docs) == 3 and all(d["status"] == "active" for d in docs)

        # Closing a session gives its place back at once.
        await first.close()
        await asyncio.sleep(0.3)
        await _open(stack, live, live.tenant.key, agent)
    await asyncio.sleep(0.5)
    redis = live.backends.redis
    assert await redis.zcard(ORG_SESSIONS.format(org_id=live.tenant.org_id)) == 0


async def test_a_raw_pcm_call_takes_a_place_among_the_same_sessions(capped: LiveServer) -> None:
    live = capped
    agent = await create_agent(live)
    pcm = live.base_url.replace("http://", "ws://") + f"/v1/voice/pcm?agent_id={agent}"
    async with AsyncExitStack() as stack:
        await _open(stack, live, live.tenant.key, agent)
        await _open(stack, live, live.tenant.key, agent)
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(pcm, additional_headers=_bearer(live.tenant.key)):
                pass
        response = refused.value.response
        assert response.status_code == 429
        assert json.loads(response.body)["code"] == "realtime_session_limit"
    assert len(await _conversations(live, live.tenant.org_id)) == 2


async def test_a_session_that_fails_to_start_ends_its_conversation_and_frees_its_place(
    capped: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client leaves while the session starts: its conversation ends (`error`), not
    left `active`, and its place is given back."""
    live = capped
    agent = await create_agent(live)

    async def client_gone(self: RealtimeSession, **_: Any) -> None:
        raise WebSocketDisconnect(1006)

    monkeypatch.setattr(RealtimeSession, "start", client_gone)
    for _ in range(3):  # more than the key's two places: each one was given back
        async with websockets.connect(
            _url(live, f"model={agent}"), additional_headers=_bearer(live.tenant.key)
        ) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await recv(ws)
    await asyncio.sleep(0.3)
    docs = await _conversations(live, live.tenant.org_id)
    assert len(docs) == 3
    assert {(d["status"], d.get("ended_reason")) for d in docs} == {("ended", "error")}


async def test_a_raw_pcm_call_that_fails_to_start_ends_its_conversation(
    capped: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = capped
    agent = await create_agent(live)

    async def client_gone(self: RawPcmCall, message: Any) -> None:
        raise OSError("the client went away")

    monkeypatch.setattr(RawPcmCall, "send", client_gone)
    pcm = live.base_url.replace("http://", "ws://") + f"/v1/voice/pcm?agent_id={agent}"
    for _ in range(3):  # more than the key's two places: each one was given back
        async with websockets.connect(pcm, additional_headers=_bearer(live.tenant.key)) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
    await asyncio.sleep(0.3)
    docs = await _conversations(live, live.tenant.org_id)
    assert len(docs) == 3
    assert {(d["status"], d.get("ended_reason")) for d in docs} == {("ended", "error")}


async def test_an_expired_lease_of_a_dead_process_frees_its_place(capped: LiveServer) -> None:
    """A place held by a process that died (its lease never renewed) is counted no more."""
    live = capped
    agent = await create_agent(live)
    async with live.client() as http:
        key_id = (await http.get("/v1/api-keys")).json()["data"][0]["id"]
    redis = live.backends.redis
    stale = int(time.time() * 1000) - 1
    for name in ("conn_dead1", "conn_dead2"):
        await redis.zadd(KEY_SESSIONS.format(key_id=key_id), {name: stale})
        await redis.zadd(ORG_SESSIONS.format(org_id=live.tenant.org_id), {name: stale})
    async with AsyncExitStack() as stack:
        await _open(stack, live, live.tenant.key, agent)
        await _open(stack, live, live.tenant.key, agent)


async def test_the_handshake_takes_a_token_from_the_keys_rate_limit(
    tmp_path: Path, redis_url: str
) -> None:
    settings = harness.sqlite_settings(
        tmp_path, redis_url, rate_limit_burst=4, rate_limit_per_minute=1
    )
    async for live in harness.serve_live(settings):
        agent = await create_agent(live)  # one token
        for _ in range(3):
            async with websockets.connect(
                _url(live, f"model={agent}"), additional_headers=_bearer(live.tenant.key)
            ) as ws:
                assert (await recv(ws))["type"] == "session.created"
        status, problem, headers = await _refused(live, live.tenant.key, f"model={agent}")
        assert (status, problem["code"]) == (429, "rate_limited")
        assert int(headers["retry-after"]) > 0
        docs = await _conversations(live, live.tenant.org_id)
        assert len(docs) == 3  # the refused handshake started none


async def test_a_client_secret_dies_with_its_key(live_server: LiveServer) -> None:
    live = live_server
    agent = await create_agent(live)
    developer = await _key(live)
    async with httpx.AsyncClient(base_url=live.base_url, headers=_bearer(developer)) as http:
        minted = await http.post("/v1/realtime/client_secrets", json={"session": {"model": agent}})
    assert minted.status_code == 200, minted.text
    secret = minted.json()["value"]
    async with websockets.connect(_url(live, f"token={secret}")) as ws:
        assert (await recv(ws))["type"] == "session.created"

    async with live.client() as http:
        keys = (await http.get("/v1/api-keys")).json()["data"]
        developer_id = next(k["id"] for k in keys if k["role"] == "developer")
        revoked = await http.delete(f"/v1/api-keys/{developer_id}")
    assert revoked.status_code in (200, 204), revoked.text

    for _ in range(2):  # refused, and refused again (the secret is gone, not just unusable)
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(_url(live, f"token={secret}")):
                pass
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body)["code"] == "auth_invalid"


async def test_healthz_stays_fast_with_the_per_key_cap_of_busy_sessions(
    default_caps: LiveServer,
) -> None:
    """Every session the key may hold (the default cap) is open and talking — a turn every
    half second each — while /healthz is probed from its own thread: p99 < 100 ms."""
    live = default_caps
    cap = live.app.state.backends.settings.realtime_max_sessions_per_key
    assert cap >= 10
    agent = await create_agent(live)
    stop = asyncio.Event()
    turns = 0

    async def talk(ws: ClientConnection, n: int) -> None:
        nonlocal turns
        await update(ws, TEXT_ONLY)
        while not stop.is_set():
            await say(ws, f"Where is order {n}?")
            await answer(ws)
            turns += 1
            await asyncio.sleep(0.5)

    def probe() -> list[float]:
        latencies: list[float] = []
        with httpx.Client(base_url=live.base_url, timeout=10) as http:
            for _ in range(200):
                started = time.perf_counter()
                response = http.get("/healthz")
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200
                time.sleep(0.02)
        return latencies

    async with AsyncExitStack() as stack:
        sockets = await asyncio.gather(
            *(_open(stack, live, live.tenant.key, agent) for _ in range(cap))
        )
        status, problem, _ = await _refused(live, live.tenant.key, f"model={agent}")
        assert (status, problem["code"]) == (429, "realtime_session_limit")
        talkers = [asyncio.create_task(talk(ws, n)) for n, ws in enumerate(sockets)]
        await asyncio.sleep(1.0)  # every session is talking
        latencies = await asyncio.to_thread(probe)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*talkers), 60)
    assert turns >= 2 * cap  # the sessions really were busy while the probe ran
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    median = statistics.median(latencies)
    assert p99 < 0.1, f"/healthz p99 {p99 * 1000:.0f} ms (median {median * 1000:.0f} ms)"
