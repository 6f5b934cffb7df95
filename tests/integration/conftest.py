"""Fixtures: the live server and the in-process app allowed to reach the llama.cpp test
server (see tests/agents_api/harness.py; a module imports `llama_server_url` itself)."""

from __future__ import annotations

from tests.agents_api.harness import llama_agent_api, llama_live_server

__all__ = ["llama_agent_api", "llama_live_server"]
