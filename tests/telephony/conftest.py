"""Fixtures: the app on a real uvicorn server whose public URL is known before it starts,
a stand-in for the carriers' REST APIs, an agent answering from a knowledge base, and its
phone numbers on both carriers.

The carriers' clouds are the edge of the process: their REST APIs are a local stand-in
HTTP server that records what it is asked (`CarrierCloud`), and the tests play the
carrier's side of the voice webhook and the media stream themselves (tests/telephony/
carrier.py). Everything on our side runs for real: SQLite, Redis, faster-whisper, espeak-ng.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.agents_api.harness import (
    LiveServer,
    build_app,
    create_tenant,
    install_fakes,
    knowledge_base_rows,
)
from tests.api.conftest import api, database_url, make_settings  # noqa: F401  (fixtures)
from tests.voice.conftest import espeak  # noqa: F401  (the fixture, shared)
from tests.voice.helpers import KNOWLEDGE
from vocalis.core.migrate import upgrade
from vocalis.ports.retriever import InMemoryRetriever
from vocalis.wiring import build_backends

TWILIO_NUMBER = "+15550100001"
TELNYX_NUMBER = "+15550100002"
CALLER = "+15550109999"
TRANSFER_DESTINATION = "+15550100999"
TWILIO_CREDENTIALS = {"account_sid": "AC" + "0" * 32, "auth_token": "twilio-auth-token-1234"}
TELNYX_CREDENTIALS = {"api_key": "KEY0123", "connection_id": "1494404757140276705"}


@dataclass
class CarrierRequest:
    """One request the stand-in carrier API received."""

    method: str
    path: str
    form: dict[str, str]
    json: dict[str, Any]
    headers: dict[str, str]


@dataclass
class CarrierCloud:
    """A stand-in for Twilio's and Telnyx's REST APIs: records requests, answers like them."""

    base_url: str = ""
    requests: list[CarrierRequest] = field(default_factory=list)

    def to(self, fragment: str) -> list[CarrierRequest]:
        """Requests whose path contains `fragment`, in order."""
        return [r for r in self.requests if fragment in r.path]

    async def wait_for(self, fragment: str, timeout: float = 30.0) -> CarrierRequest:
        """The first request whose path contains `fragment` (waiting for it)."""
        deadline = time.monotonic() + timeout
        while not self.to(fragment):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the carrier got no {fragment}; got {self.requests}")
            await asyncio.sleep(0.05)
        return self.to(fragment)[0]

    def app(self) -> Starlette:
        async def record(request: Request) -> JSONResponse:
            body = await request.body()
            form: dict[str, str] = {}
            payload: dict[str, Any] = {}
            if request.headers.get("content-type", "").startswith("application/json"):
                payload = await request.json()
            elif body:
                form = {k: str(v) for k, v in (await request.form()).items()}
            path = request.url.path
            self.requests.append(
                CarrierRequest(request.method, path, form, payload, dict(request.headers))
            )
            if path.endswith("/Calls.json"):  # Twilio: create a call
                return JSONResponse({"sid": "CA" + "1" * 32, "status": "queued"}, status_code=201)
            if path.startswith("/2010-04-01/"):  # Twilio: update a call
                return JSONResponse({"sid": path.rsplit("/", 1)[-1].removesuffix(".json")})
            if path == "/v2/calls":  # Telnyx: dial
                return JSONResponse({"data": {"call_control_id": "v3:outbound-call"}})
            return JSONResponse({"data": {"result": "ok"}})

        return Starlette(routes=[Route("/{path:path}", record, methods=["POST"])])


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _serve_on(app: Any, sock: socket.socket) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws_ping_interval=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("a test server did not start")
        time.sleep(0.05)
    return server, thread


@pytest.fixture
async def carrier_cloud() -> AsyncIterator[CarrierCloud]:
    """The carriers' REST APIs, stood in for locally (the edge of the process)."""
    cloud = CarrierCloud()
    sock = _free_socket()
    cloud.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server, thread = await asyncio.to_thread(_serve_on, cloud.app(), sock)
    yield cloud
    server.should_exit = True
    await asyncio.to_thread(thread.join, 10)


@pytest.fixture(scope="session")
def telnyx_key() -> Ed25519PrivateKey:
    """The key pair standing in for Telnyx's webhook signing key (generated: an edge fake)."""
    return Ed25519PrivateKey.generate()


@dataclass
class PhoneServer:
    """The live server, its agent, and a number on each carrier pointing at it."""

    live: LiveServer
    agent_id: str
    numbers: dict[str, dict[str, Any]]
    cloud: CarrierCloud
    telnyx_key: Ed25519PrivateKey


@pytest.fixture
async def phone_live(
    tmp_path: Path, redis_url: str, carrier_cloud: CarrierCloud, telnyx_key: Ed25519PrivateKey
) -> AsyncIterator[LiveServer]:
    """The app on a real server, public base URL set to its own address."""
    sock = _free_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    public_key = telnyx_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    settings = make_settings(
        tmp_path,
        url,
        redis_url,
        public_base_url=base_url,
        outbound_allowlist="127.0.0.1",
        telephony_twilio_api_base_url=carrier_cloud.base_url,
        telephony_telnyx_api_base_url=carrier_cloud.base_url,
        telephony_telnyx_public_key=base64.b64encode(public_key).decode(),
    )
    await asyncio.to_thread(upgrade, url)
    backends = await build_backends(settings)
    app = build_app(settings)
    server, thread = await asyncio.to_thread(_serve_on, app, sock)
    try:
        install_fakes(app.state.backends)
        tenant = await create_tenant(backends, "Acme")
        yield LiveServer(base_url, app, backends, tenant)
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
        await backends.close()


@pytest.fixture
async def phone_server(
    phone_live: LiveServer, carrier_cloud: CarrierCloud, telnyx_key: Ed25519PrivateKey
) -> PhoneServer:
    """A store agent (with a transfer destination and a goodbye) on a number per carrier."""
    retriever = phone_live.server_backends.retriever
    assert isinstance(retriever, InMemoryRetriever)
    retriever.add(phone_live.tenant.org_id, "kb_store", KNOWLEDGE)
    await knowledge_base_rows(phone_live.backends, phone_live.tenant.org_id, "kb_store")
    async with phone_live.client() as http:
        agent = await http.post(
            "/v1/agents",
            json={
                "name": "Store line",
                "instructions": "Answer callers from the store's policies.",
                "knowledge_base_ids": ["kb_store"],
                "tools": [
                    {"type": "transfer_to_human", "destination": TRANSFER_DESTINATION},
                    {"type": "end_conversation"},
                ],
            },
        )
        assert agent.status_code == 201, agent.text
        agent_id = str(agent.json()["id"])
        numbers = {}
        for provider, number, credentials in (
            ("twilio", TWILIO_NUMBER, TWILIO_CREDENTIALS),
            ("telnyx", TELNYX_NUMBER, TELNYX_CREDENTIALS),
        ):
            created = await http.post(
                "/v1/phone-numbers",
                json={
                    "number": number,
                    "provider": provider,
                    "agent_id": agent_id,
                    "credentials": credentials,
                },
            )
            assert created.status_code == 201, created.text
            numbers[provider] = created.json()
    return PhoneServer(phone_live, agent_id, numbers, carrier_cloud, telnyx_key)
