"""The declared document collections are what a real run stores (MongoDB-wire server).

`core/collections.py` holds the one declaration of each collection (fields, indexes,
retention) that `docs/reference/collections.md` is generated from; these tests fail when
the code stores a field the declaration lacks, leaves out one it says is always there, or
when the declared indexes are not the ones MongoDB has.
"""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests.agents_api.harness import AgentApi
from vocalis.conversations import store
from vocalis.conversations.analysis import analyze_conversation
from vocalis.core.collections import COLLECTIONS, DocField, declare_collection


def _undeclared(collection: str, docs: list[dict[str, Any]]) -> list[str]:
    declared = COLLECTIONS[collection].field_names
    return sorted({f"{collection}.{k}" for doc in docs for k in doc if k not in declared})


def _missing(collection: str, docs: list[dict[str, Any]]) -> list[str]:
    required = COLLECTIONS[collection].required
    return sorted({f"{collection}.{k}" for doc in docs for k in required if k not in doc})


async def test_stored_documents_carry_exactly_the_declared_fields(
    mongo_agent_api: AgentApi, mongo_url: str
) -> None:
    api = mongo_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)
    conversation = await api.conversation(acme, agent["id"], metadata={"ref": "t-1"})
    said = await api.say(acme, conversation["id"], "What are your opening hours?")
    assert said.status_code == 200, said.text
    ended = await api.client.post(
        f"/v1/conversations/{conversation['id']}/end", headers=acme.headers
    )
    assert ended.status_code == 200, ended.text
    await analyze_conversation(
        api.backends,
        org_id=acme.org_id,
        conversation_id=conversation["id"],
        fallback_on_model_failure=True,
    )
    # The raw documents, as MongoDB holds them (org_id included).
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        db = client.get_default_database(default="vocalis")
        conversations = await db[store.CONVERSATIONS].find({"org_id": acme.org_id}).to_list()
        messages = await db[store.MESSAGES].find({"org_id": acme.org_id}).to_list()
    finally:
        await client.close()
    assert len(conversations) == 1 and len(messages) >= 2
    assert "analysis" in conversations[0]
    assert {m["role"] for m in messages} == {"user", "assistant"}
    assert _undeclared(store.CONVERSATIONS, conversations) == []
    assert _undeclared(store.MESSAGES, messages) == []
    assert _missing(store.CONVERSATIONS, conversations) == []
    assert _missing(store.MESSAGES, messages) == []


async def test_mongodb_has_the_declared_indexes(mongo_agent_api: AgentApi, mongo_url: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        db = client.get_default_database(default="vocalis")
        for name in (store.CONVERSATIONS, store.MESSAGES):
            info = await db[name].index_information()
            actual = {tuple((k, int(d)) for k, d in ix["key"]) for ix in info.values()}
            declared = {(("org_id", 1), *index) for index in COLLECTIONS[name].indexes}
            assert declared <= actual, name
    finally:
        await client.close()


def test_a_declaration_refuses_indexes_on_undeclared_fields() -> None:
    with pytest.raises(ValueError, match="undeclared fields"):
        declare_collection(
            "probe_undeclared",
            description="",
            owner="",
            fields=[DocField("a", "string", "")],
            indexes=[[("b", 1)]],
            retention="",
        )
    with pytest.raises(ValueError, match="declared twice"):
        declare_collection(
            store.CONVERSATIONS, description="", owner="", fields=[], indexes=[], retention=""
        )
