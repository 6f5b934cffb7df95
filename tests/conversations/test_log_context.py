"""Log lines of conversation requests carry the conversation's id."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from tests.agents_api.harness import AgentApi
from vocalis.core.logging import configure_logging


@pytest.fixture
def log_lines(sqlite_agent_api: AgentApi) -> Iterator[io.StringIO]:
    """Everything logged during the test, one JSON object per line."""
    buffer = io.StringIO()
    configure_logging(sqlite_agent_api.settings, stream=buffer)
    yield buffer
    configure_logging(sqlite_agent_api.settings)


async def test_the_request_log_line_of_a_message_carries_the_conversation_id(
    sqlite_agent_api: AgentApi, log_lines: io.StringIO
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)
    conversation = await api.conversation(acme, agent["id"])
    await api.say(acme, conversation["id"], "Hello")
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line.strip()]
    [request_line] = [
        line
        for line in lines
        if line.get("event") == "http_request"
        and line.get("route") == "/v1/conversations/{conversation_id}/messages"
    ]
    assert request_line["conversation_id"] == conversation["id"]
    assert request_line["org_id"] == acme.org_id
