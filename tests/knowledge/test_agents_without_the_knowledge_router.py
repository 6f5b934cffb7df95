"""Retrieval is wired by the composition root, not by a router: an app that mounts only the
agent routers still answers from a real knowledge base (ONNX embeddings, LanceDB)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.conftest import Api, Tenant
from tests.knowledge.harness import create_kb, ingest_now, uploaded
from vocalis.app import create_app

AGENT_ROUTERS = ("vocalis.agents.api", "vocalis.conversations.api")
POLICY = b"""# Returns

## Refunds

Refunds are accepted within 45 days of purchase when the original receipt is shown.
"""


@pytest.fixture
async def agents_only(sqlite_kb_api: Api) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same backends, with the agent routers and nothing else."""
    app = create_app(sqlite_kb_api.settings, sqlite_kb_api.backends, routers=AGENT_ROUTERS)
    paths = {getattr(route, "path", "") for route in app.routes}
    assert not any(p.startswith("/v1/knowledge-bases") for p in paths)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def _knowledge_base(api: Api, tenant: Tenant) -> tuple[str, str]:
    kb_id = await create_kb(api, tenant, "Returns")
    doc_id = await uploaded(api, tenant, kb_id, "returns.md", POLICY)
    assert (await ingest_now(api, tenant.org_id, kb_id, doc_id)).outcome.value == "ready"
    return kb_id, doc_id


async def test_an_app_with_only_the_agent_routers_answers_with_citations_from_a_knowledge_base(
    sqlite_kb_api: Api, agents_only: httpx.AsyncClient
) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    kb_id, doc_id = await _knowledge_base(sqlite_kb_api, acme)
    agent = await agents_only.post(
        "/v1/agents",
        json={"name": "Returns desk", "knowledge_base_ids": [kb_id]},
        headers=acme.headers,
    )
    assert agent.status_code == 201, agent.text
    conversation = await agents_only.post(
        f"/v1/agents/{agent.json()['id']}/conversations", json={}, headers=acme.headers
    )
    assert conversation.status_code == 201, conversation.text
    reply = await agents_only.post(
        f"/v1/conversations/{conversation.json()['id']}/messages",
        json={"content": "Within how many days are refunds accepted?"},
        headers=acme.headers,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert "45 days" in body["content"]
    [citation, *_] = body["citations"]
    assert (citation["document_id"], citation["document_name"]) == (doc_id, "returns.md")
