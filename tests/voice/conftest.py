"""Fixtures: a real uvicorn server with the voice routes, an agent that answers from a
knowledge base, and offline speech (espeak-ng) to talk to it with."""

from __future__ import annotations

import asyncio
import gc
import importlib
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from tests.agents_api.harness import (
    LiveServer,
    _serve,
    build_app,
    create_tenant,
    install_fakes,
    knowledge_base_rows,
)
from tests.api.conftest import make_settings
from tests.voice.helpers import KNOWLEDGE, POLICIES_MARKDOWN, VoiceServer
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.core.migrate import upgrade
from vocalis.knowledge import ingest
from vocalis.knowledge.retrieval import KnowledgeRetriever
from vocalis.ports.retriever import InMemoryRetriever
from vocalis.wiring import build_backends


@pytest.fixture(scope="session")
def espeak() -> EspeakTTS:
    """The offline TTS the tests speak with (the same engine the server answers with)."""
    return EspeakTTS()


def with_voice_routes(app: FastAPI) -> FastAPI:
    """Mount the voice and knowledge routers unless the app factory already does."""
    for module in ("vocalis.voice.api", "vocalis.knowledge.api"):
        router = importlib.import_module(module).router
        present = {getattr(route, "path", None) for route in app.routes}
        if not any(getattr(r, "path", None) in present for r in router.routes):
            app.include_router(router)
    return app


class LoopLag:
    """Measures how late the server's event loop wakes up (a blocked loop wakes up late).

    When the loop is late by more than `STALL_S`, a watchdog thread records what the loop's
    thread was running at that moment, so a failure names the blocking call.
    """

    STALL_S = 0.25

    def __init__(self) -> None:
        self.worst_s = 0.0
        self.stalls: list[str] = []
        self._stop = threading.Event()
        self._beat = time.perf_counter()
        self._thread_id: int | None = None

    async def watch(self, tick_s: float = 0.01) -> None:
        """Run in the server's loop until `stop`."""
        self._thread_id = threading.get_ident()
        watchdog = threading.Thread(target=self._watchdog, name="loop-lag-watchdog", daemon=True)
        watchdog.start()
        while not self._stop.is_set():
            started = time.perf_counter()
            self._beat = started
            await asyncio.sleep(tick_s)
            self.worst_s = max(self.worst_s, time.perf_counter() - started - tick_s)
        watchdog.join(1)

    def _watchdog(self) -> None:
        reported_beat = 0.0
        while not self._stop.wait(0.05):
            beat = self._beat
            if beat != reported_beat and time.perf_counter() - beat > self.STALL_S:
                reported_beat = beat
                frame = sys._current_frames().get(self._thread_id or 0)
                if frame is not None:
                    self.stalls.append("".join(traceback.format_stack(frame)[-12:]))

    def report(self) -> str:
        """The worst lateness and what the loop was doing when it stalled."""
        return f"worst loop lag {self.worst_s:.3f} s; stalls:\n" + "\n---\n".join(self.stalls)

    def stop(self) -> None:
        """End the watch."""
        self._stop.set()


def _probe_route(app: FastAPI) -> None:
    """A test-only route through which the test reaches the server's event loop."""

    @app.get("/_test/loop", include_in_schema=False)
    async def loop_probe() -> dict[str, bool]:
        app.state.test_loop = asyncio.get_running_loop()
        return {"ok": True}


@pytest.fixture
async def server_loop(voice_live: LiveServer) -> asyncio.AbstractEventLoop:
    """The event loop the server runs in (its thread's, not the test's)."""
    async with voice_live.client() as http:
        assert (await http.get("/_test/loop")).status_code == 200
    loop = voice_live.app.state.test_loop
    assert isinstance(loop, asyncio.AbstractEventLoop)
    return loop


@pytest.fixture
async def server_loop_lag(server_loop: asyncio.AbstractEventLoop) -> AsyncIterator[LoopLag]:
    """The worst lateness of the server's event loop while the test runs."""
    lag = LoopLag()
    # The test process holds every earlier test's objects: a full collection of that heap
    # pauses every thread for a second or more late in a suite run, which is the test
    # process's cost, not the server's. They are moved out of the collector's way.
    gc.collect()
    gc.freeze()
    watched = asyncio.run_coroutine_threadsafe(lag.watch(), server_loop)
    try:
        yield lag
    finally:
        lag.stop()
        await asyncio.wrap_future(watched)
        gc.unfreeze()


@pytest.fixture
async def voice_live(tmp_path: Path, redis_url: str) -> AsyncIterator[LiveServer]:
    """The app (agent and voice routes) on a real uvicorn server, SQLite, real Redis."""
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    settings = make_settings(tmp_path, url, redis_url)
    await asyncio.to_thread(upgrade, url)
    backends = await build_backends(settings)
    app = with_voice_routes(build_app(settings))
    _probe_route(app)
    server, thread, port = await asyncio.to_thread(_serve, app)
    try:
        install_fakes(app.state.backends)
        tenant = await create_tenant(backends, "Acme")
        yield LiveServer(f"http://127.0.0.1:{port}", app, backends, tenant)
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
        await backends.close()


@pytest.fixture
async def voice_server(voice_live: LiveServer) -> AsyncIterator[VoiceServer]:
    """The live server, with a knowledge base in its retriever and an agent answering from it."""
    retriever = voice_live.server_backends.retriever
    assert isinstance(retriever, InMemoryRetriever)
    retriever.add(voice_live.tenant.org_id, "kb_store", KNOWLEDGE)
    await knowledge_base_rows(voice_live.backends, voice_live.tenant.org_id, "kb_store")
    async with voice_live.client() as http:
        response = await http.post(
            "/v1/agents",
            json={
                "name": "Store assistant",
                "instructions": "Answer from the store's policies.",
                "knowledge_base_ids": ["kb_store"],
            },
        )
        assert response.status_code == 201, response.text
    yield VoiceServer(voice_live, str(response.json()["id"]))


@pytest.fixture
async def knowledge_voice_server(voice_live: LiveServer) -> AsyncIterator[VoiceServer]:
    """The live server with a real knowledge base: a Markdown document uploaded through the
    API and ingested (extract, chunk, embed with the ONNX model, index in LanceDB), and an
    agent answering from it through the knowledge service's retriever."""
    server_backends = voice_live.server_backends
    server_backends.retriever = KnowledgeRetriever(
        settings=server_backends.settings,
        database=server_backends.database,
        knowledge=server_backends.knowledge,
    )
    async with voice_live.client() as http:
        kb = await http.post("/v1/knowledge-bases", json={"name": "Store policies"})
        assert kb.status_code == 201, kb.text
        kb_id = kb.json()["id"]
        upload = await http.post(
            f"/v1/knowledge-bases/{kb_id}/documents",
            files={"file": ("policies.md", POLICIES_MARKDOWN.encode(), "text/markdown")},
        )
        assert upload.status_code == 202, upload.text
        document = upload.json()
        # The ingest task's body, run here instead of in a worker process.
        await ingest.ingest_document(
            voice_live.backends,
            org_id=voice_live.tenant.org_id,
            kb_id=kb_id,
            document_id=document["id"],
            version=document["version"],
            final_attempt=True,
        )
        ready = await http.get(f"/v1/knowledge-bases/{kb_id}/documents/{document['id']}")
        assert ready.json()["status"] == "ready", ready.text
        agent = await http.post(
            "/v1/agents",
            json={
                "name": "Store assistant",
                "instructions": "Answer from the store's policies.",
                "knowledge_base_ids": [kb_id],
            },
        )
        assert agent.status_code == 201, agent.text
    yield VoiceServer(voice_live, str(agent.json()["id"]))
