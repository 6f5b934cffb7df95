"""Fixtures: the app with the agent routers (see tests/agents_api/harness.py)."""

from tests.agents_api.harness import agent_api, live_server, mongo_agent_api, sqlite_agent_api

__all__ = ["agent_api", "live_server", "mongo_agent_api", "sqlite_agent_api"]
