"""The app with the agent routers, in process (ASGI) and as a real server (uvicorn thread).

Fixtures here are imported by the conftest.py of tests/agents_api, tests/conversations and
tests/realtime. Only the LLM edge is ever faked: agents run on the embedded extractive
responder unless a test swaps the model.
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.api.conftest import Api, Tenant, make_settings
from tests.fixtures.services import create_pg_database, drop_pg_database
from vocalis.agents.runtime import AgentRuntime, get_runtime
from vocalis.app import create_app
from vocalis.core.backends import Backends
from vocalis.core.migrate import upgrade
from vocalis.core.scopes import Role
from vocalis.events.registry import EVENTS
from vocalis.knowledge.models import KnowledgeBase
from vocalis.orgs import service as orgs
from vocalis.ports.retriever import InMemoryRetriever, Passage
from vocalis.settings import Settings
from vocalis.wiring import build_backends

AGENT_ROUTERS = (
    "vocalis.agents.api",
    "vocalis.conversations.api",
    "vocalis.openai_compat.api",
    "vocalis.realtime.api",
)

REFUND_PASSAGES = [
    Passage(
        text="Refunds are accepted within 30 days of purchase. Bring the original receipt.",
        document_id="doc_policy",
        document_name="refund-policy.md",
        chunk_id="chk_refund_1",
    ),
    Passage(
        text="Our support line is open Monday to Friday from 9am to 5pm.",
        document_id="doc_hours",
        document_name="hours.md",
        chunk_id="chk_hours_1",
    ),
]


@dataclass
class RecordedEvents:
    """An event sink that keeps what it is given, checked against the webhook schemas."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, name: str, payload: Mapping[str, Any]) -> None:
        data = {k: v for k, v in payload.items() if k != "org_id"}
        EVENTS[name].validate(data)  # what the outbox would refuse fails the test here
        self.events.append((name, dict(payload)))

    def named(self, name: str) -> list[dict[str, Any]]:
        """The payloads of the events called `name`."""
        return [payload for event, payload in self.events if event == name]


def build_app(settings: Settings, backends: Backends | None = None) -> FastAPI:
    """The app, with the agent routers mounted when the app factory does not mount them."""
    app = create_app(settings, backends=backends)
    present = {getattr(route, "path", None) for route in app.routes}
    for module in AGENT_ROUTERS:
        router = importlib.import_module(module).router
        if not any(getattr(route, "path", None) in present for route in router.routes):
            app.include_router(router)
    return app


async def knowledge_base_rows(backends: Backends, org_id: str, *kb_ids: str) -> None:
    """Knowledge bases with these ids in the organisation (agents may name only existing
    ones); their passages come from the in-memory retriever the test fills."""
    async with backends.database.session() as session:
        for kb_id in kb_ids:
            if await session.get(KnowledgeBase, kb_id) is None:
                session.add(KnowledgeBase(id=kb_id, org_id=org_id, name=kb_id))


def install_fakes(backends: Backends) -> tuple[RecordedEvents, InMemoryRetriever]:
    """A recording event sink and an in-memory retriever in place of the real ones."""
    events = RecordedEvents()
    retriever = InMemoryRetriever()
    backends.events = events
    backends.retriever = retriever
    return events, retriever


@dataclass
class AgentApi(Api):
    """The in-process app plus what the agent tests look at."""

    events: RecordedEvents = field(default_factory=RecordedEvents)
    retriever: InMemoryRetriever = field(default_factory=InMemoryRetriever)

    @property
    def runtime(self) -> AgentRuntime:
        """The app's agent runtime."""
        return get_runtime(self.app)

    async def agent(self, tenant: Tenant, **fields: Any) -> dict[str, Any]:
        """Create an agent (defaults: a support agent on the extractive responder)."""
        body = {"name": "Support", "instructions": "Help Acme customers.", "knowledge_base_ids": []}
        await knowledge_base_rows(
            self.backends, tenant.org_id, *fields.get("knowledge_base_ids", ())
        )
        response = await self.client.post("/v1/agents", json=body | fields, headers=tenant.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def conversation(self, tenant: Tenant, agent_id: str, **fields: Any) -> dict[str, Any]:
        """Start a conversation."""
        response = await self.client.post(
            f"/v1/agents/{agent_id}/conversations", json=fields, headers=tenant.headers
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def say(self, tenant: Tenant, conversation_id: str, content: str) -> httpx.Response:
        """Send a user message (JSON reply)."""
        return await self.client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"content": content},
            headers=tenant.headers,
        )


async def start_agent_api(settings: Settings) -> AsyncIterator[AgentApi]:
    """Migrate, build backends with fakes at the edges, run the lifespan, yield a client."""
    await asyncio.to_thread(upgrade, settings.resolved_database_url)
    backends = await build_backends(settings)
    events, retriever = install_fakes(backends)
    app = build_app(settings, backends)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield AgentApi(app, client, backends, settings, events, retriever)
    await backends.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def agent_api(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> AsyncIterator[AgentApi]:
    """The app on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    else:
        url = await asyncio.to_thread(create_pg_database)
    try:
        async for running in start_agent_api(make_settings(tmp_path, url, redis_url)):
            yield running
    finally:
        if request.param == "postgres":
            await asyncio.to_thread(drop_pg_database, url)


@pytest.fixture
async def sqlite_agent_api(tmp_path: Path, redis_url: str) -> AsyncIterator[AgentApi]:
    """The app on SQLite only (for behaviour the database makes no difference to)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    async for running in start_agent_api(make_settings(tmp_path, url, redis_url)):
        yield running


@pytest.fixture
async def mongo_agent_api(
    tmp_path: Path, redis_url: str, mongo_url: str
) -> AsyncIterator[AgentApi]:
    """The app with conversations in MongoDB (a MongoDB-wire server) and SQLite tables."""
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    settings = make_settings(tmp_path, url, redis_url, document_store_url=mongo_url)
    async for running in start_agent_api(settings):
        yield running


# --- a real server --------------------------------------------------------------------------
@dataclass
class LiveServer:
    """The app served by uvicorn on a free local port, and a tenant to call it with."""

    base_url: str
    app: FastAPI
    backends: Backends  # built in the test's event loop, for setting data up
    tenant: Tenant

    @property
    def server_backends(self) -> Backends:
        """The backends the server built in its own event loop."""
        backends: Backends = self.app.state.backends
        return backends

    @property
    def events(self) -> RecordedEvents:
        """Events the server emitted."""
        sink = self.server_backends.events
        assert isinstance(sink, RecordedEvents)
        return sink

    @property
    def retriever(self) -> InMemoryRetriever:
        """The in-memory retriever the server searches."""
        retriever = self.server_backends.retriever
        assert isinstance(retriever, InMemoryRetriever)
        return retriever

    def client(self) -> httpx.AsyncClient:
        """An HTTP client for the server."""
        return httpx.AsyncClient(base_url=self.base_url, headers=self.tenant.headers, timeout=30)

    async def tenant_named(self, name: str, role: Role = Role.OWNER) -> Tenant:
        """Another organisation with a key."""
        return await create_tenant(self.backends, name, role)


async def create_tenant(backends: Backends, name: str, role: Role = Role.OWNER) -> Tenant:
    """An organisation with one key of `role`."""
    async with backends.database.session() as session:
        org, _ = await orgs.create_org(
            session=session, name=name, owner_email=f"{name.lower()}@example.test"
        )
        issued = await orgs.create_api_key(session=session, org_id=org.id, name="test", role=role)
    return Tenant(org.id, issued.plaintext)


def _serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws_ping_interval=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the uvicorn test server did not start")
        time.sleep(0.05)
    return server, thread, port


def sqlite_settings(tmp_path: Path, redis_url: str, **overrides: object) -> Settings:
    """Test settings on a SQLite database under tmp_path."""
    return make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path}/vocalis.db", redis_url, **overrides
    )


async def serve_live(settings: Settings, *, fakes: bool = True) -> AsyncIterator[LiveServer]:
    """Migrate, serve the app on a real HTTP/WebSocket server and yield it with a tenant
    ("Acme"); `fakes`: the recording event sink and in-memory retriever at the edges."""
    await asyncio.to_thread(upgrade, settings.resolved_database_url)
    backends = await build_backends(settings)
    app = build_app(settings)  # the server builds its own backends in its own loop
    server, thread, port = await asyncio.to_thread(_serve, app)
    try:
        if fakes:
            install_fakes(app.state.backends)
        tenant = await create_tenant(backends, "Acme")
        yield LiveServer(f"http://127.0.0.1:{port}", app, backends, tenant)
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
        await backends.close()


@pytest.fixture
async def live_server(tmp_path: Path, redis_url: str) -> AsyncIterator[LiveServer]:
    """The app on a real HTTP/WebSocket server (SQLite), with fakes at the edges."""
    async for live in serve_live(sqlite_settings(tmp_path, redis_url)):
        yield live


# --- with the llama.cpp test server (a module also imports tests/fixtures/llama_server.py) ---
LOCAL_SERVERS = "127.0.0.1"  # the outbound allow-list that lets agents reach llama.cpp


@pytest.fixture
async def llama_live_server(tmp_path: Path, redis_url: str) -> AsyncIterator[LiveServer]:
    """The live server (SQLite, fakes at the edges), allowed to reach the local llama.cpp
    server."""
    settings = sqlite_settings(tmp_path, redis_url, outbound_allowlist=LOCAL_SERVERS)
    async for live in serve_live(settings):
        yield live


@pytest.fixture
async def llama_agent_api(
    tmp_path: Path, redis_url: str, llama_server_url: str
) -> AsyncIterator[tuple[AgentApi, str]]:
    """The in-process app (SQLite), allowed to reach the local llama.cpp server, and the
    server's URL."""
    settings = sqlite_settings(tmp_path, redis_url, outbound_allowlist=LOCAL_SERVERS)
    async for api in start_agent_api(settings):
        yield api, llama_server_url


def sse_events(body: str) -> list[tuple[str | None, str]]:
    """Parse a server-sent-events body into (event name, data) pairs, checking the framing."""
    assert body.endswith("\n\n"), "every event ends with a blank line"
    parsed: list[tuple[str | None, str]] = []
    for block in body.strip("\n").split("\n\n"):
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            field_name, sep, value = line.partition(":")
            assert sep, f"not a field line: {line!r}"
            value = value[1:] if value.startswith(" ") else value
            if field_name == "event":
                name = value
            elif field_name == "data":
                data.append(value)
            else:
                raise AssertionError(f"unexpected field {field_name!r}")
        parsed.append((name, "\n".join(data)))
    return parsed
