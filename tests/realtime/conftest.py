"""Fixtures: the app with the agent routers (see tests/agents_api/harness.py), the voice
server (see tests/voice/conftest.py), and a server with short conversation lifecycles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agents_api import harness
from tests.agents_api.harness import (
    LiveServer,
    agent_api,
    live_server,
    mongo_agent_api,
    sqlite_agent_api,
)
from tests.api.conftest import make_settings
from tests.voice.conftest import espeak, voice_live, voice_server
from vocalis.core.migrate import upgrade

__all__ = [
    "agent_api",
    "espeak",
    "lifecycle_server",
    "live_server",
    "mongo_agent_api",
    "sqlite_agent_api",
    "voice_live",
    "voice_server",
]

DISCONNECT_GRACE_S = 1.0


@pytest.fixture
async def lifecycle_server(tmp_path: Path, redis_url: str) -> AsyncIterator[LiveServer]:
    """The live server with a one-second grace period for disconnected clients."""
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    settings = make_settings(
        tmp_path, url, redis_url, realtime_disconnect_grace_s=DISCONNECT_GRACE_S
    )
    await asyncio.to_thread(upgrade, url)
    backends = await harness.build_backends(settings)
    app = harness.build_app(settings)
    server, thread, port = await asyncio.to_thread(harness._serve, app)
    try:
        harness.install_fakes(app.state.backends)
        tenant = await harness.create_tenant(backends, "Acme")
        yield LiveServer(f"http://127.0.0.1:{port}", app, backends, tenant)
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
        await backends.close()
