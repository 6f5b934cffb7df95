"""Fixtures: the app with the agent routers (see tests/agents_api/harness.py), the voice
server (see tests/voice/conftest.py), and a server with short conversation lifecycles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agents_api import harness
from tests.agents_api.harness import (
    LiveServer,
    agent_api,
    live_server,
    llama_live_server,
    mongo_agent_api,
    sqlite_agent_api,
)
from tests.voice.conftest import espeak, voice_live, voice_server

__all__ = [
    "agent_api",
    "espeak",
    "lifecycle_server",
    "live_server",
    "llama_live_server",
    "mongo_agent_api",
    "sqlite_agent_api",
    "voice_live",
    "voice_server",
]

DISCONNECT_GRACE_S = 1.0


@pytest.fixture
async def lifecycle_server(tmp_path: Path, redis_url: str) -> AsyncIterator[LiveServer]:
    """The live server with a one-second grace period for disconnected clients."""
    settings = harness.sqlite_settings(
        tmp_path, redis_url, realtime_disconnect_grace_s=DISCONNECT_GRACE_S
    )
    async for live in harness.serve_live(settings):
        yield live
