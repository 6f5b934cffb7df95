"""Retrieval: the query endpoint and the agent's retriever over real embeddings and LanceDB."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, Tenant
from tests.fixtures.documents import make_docx, make_html
from tests.knowledge.harness import create_kb, ingest_now, query, results, uploaded
from vocalis.knowledge import retrieval
from vocalis.knowledge.retrieval import KnowledgeRetriever, SearchOptions
from vocalis.ports.retriever import Retriever
from vocalis.ports.vector_store import QueryRequest

WARRANTY = b"""# Warranty

The battery warranty lasts 24 months from the date of purchase.

# Shipping

Orders ship from our warehouse in Lyon within two working days.
"""
WARRANTY_ONLY = b"""# Warranty

The battery warranty lasts 24 months from the date of purchase.
"""
WARRANTY_COPY = b"""# Guarantee

Our battery warranty lasts 24 months from the purchase date.
"""
REPLACEMENT = b"""# Replacement

A battery replacement outside the warranty costs 49 euros at any service centre.
"""


async def _ready(api: Api, tenant: Tenant, kb_id: str, name: str, data: bytes) -> str:
    doc_id = await uploaded(api, tenant, kb_id, name, data)
    outcome = await ingest_now(api, tenant.org_id, kb_id, doc_id)
    assert outcome.outcome.value == "ready", outcome
    return doc_id


async def test_a_query_returns_the_matching_chunk_with_its_document_and_section(
    kb_api: Api,
) -> None:
    acme = await kb_api.tenant("Acme")
    kb_id = await create_kb(kb_api, acme)
    doc_id = await _ready(kb_api, acme, kb_id, "policies.md", WARRANTY)
    found = await results(kb_api, acme, kb_id, "Where do orders ship from?", top_k=2)
    top = found[0]
    assert "Lyon" in top["text"]
    assert (top["document_id"], top["document_name"], top["section"]) == (
        doc_id,
        "policies.md",
        "Shipping",
    )
    assert top["knowledge_base_id"] == kb_id and top["chunk_id"].startswith(doc_id)
    assert 0.0 <= found[-1]["score"] <= top["score"] <= 1.0


async def test_docx_headings_and_html_headings_become_sections(sqlite_kb_api: Api) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    docx = make_docx(
        [("h1", "Expenses"), ("p", "Taxi receipts must be submitted within one month.")]
    )
    html = make_html(
        "Support", "<h2>Opening hours</h2><p>The helpdesk is open from 8am to 6pm.</p>"
    )
    await _ready(api, acme, kb_id, "expenses.docx", docx)
    await _ready(api, acme, kb_id, "support.html", html)
    [expense] = await results(api, acme, kb_id, "deadline for taxi receipts", top_k=1)
    assert (expense["document_name"], expense["section"]) == ("expenses.docx", "Expenses")
    [hours] = await results(api, acme, kb_id, "When is the helpdesk open?", top_k=1)
    assert (hours["document_name"], hours["section"]) == ("support.html", "Opening hours")
    assert "secret" not in hours["text"]  # the page's script is not indexed


async def test_filters_restrict_results_to_matching_metadata(sqlite_kb_api: Api) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    await _ready(api, acme, kb_id, "policies.md", WARRANTY)
    await _ready(api, acme, kb_id, "replacement.md", REPLACEMENT)
    found = await results(
        api, acme, kb_id, "battery", top_k=5, filters={"document_name": "replacement.md"}
    )
    assert found and {r["document_name"] for r in found} == {"replacement.md"}
    sections = await results(api, acme, kb_id, "battery", filters={"section": ["Shipping"]})
    assert {r["section"] for r in sections} == {"Shipping"}


async def test_an_unknown_filter_field_is_a_422(sqlite_kb_api: Api) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    kb_id = await create_kb(sqlite_kb_api, acme)
    await _ready(sqlite_kb_api, acme, kb_id, "policies.md", WARRANTY)
    answer = await query(sqlite_kb_api, acme, kb_id, "battery", filters={"org_id": "org_x"})
    assert answer.status_code == 422
    assert answer.json()["code"] == "validation_failed"
    assert "org_id" in answer.json()["detail"]


async def test_a_bad_filter_value_is_a_422_that_never_echoes_the_backend_query(
    sqlite_kb_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out-of-range filter values used to reach LanceDB, whose error (the whole filter
    expression, with the organisation and knowledge-base ids) came back in the 422."""
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    await _ready(api, acme, kb_id, "policies.md", WARRANTY)
    for filters in (
        {"page": 10**19},
        {"chunk_index": 2**40},
        {"version": [1, 10**30]},
        {"page": -1},
        {"section": ["x"] * 101},
    ):
        answer = await query(api, acme, kb_id, "battery", filters=filters)
        assert answer.status_code == 422, (filters, answer.text)
        body = answer.json()
        assert body["code"] == "validation_failed"
        assert acme.org_id not in body["detail"] and kb_id not in body["detail"], body
    # Whatever else a backend refuses is reported without its own words.
    engines = await api.backends.knowledge.get()

    async def refuse(org_id: str, request: QueryRequest) -> list[Any]:
        raise ValueError(f"Error resolving filter expression org_id = '{org_id}' AND ...")

    monkeypatch.setattr(engines.vector_store, "query", refuse)
    answer = await query(api, acme, kb_id, "battery", filters={"page": 1})
    assert answer.status_code == 422 and answer.json()["code"] == "validation_failed"
    assert acme.org_id not in answer.text and "expression" not in answer.json()["detail"]


async def test_a_score_threshold_on_pure_vector_search_drops_unrelated_chunks(
    sqlite_kb_api: Api,
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    await _ready(api, acme, kb_id, "policies.md", WARRANTY)
    loose = await results(api, acme, kb_id, "battery warranty duration", alpha=1.0, top_k=5)
    strict = await results(
        api, acme, kb_id, "battery warranty duration", alpha=1.0, top_k=5, score_threshold=0.5
    )
    assert len(loose) == 2  # both sections come back without a threshold
    assert [r["section"] for r in strict] == ["Warranty"]
    assert all(r["score"] >= 0.5 for r in strict)


async def test_mmr_trades_a_near_duplicate_for_a_different_relevant_passage(
    sqlite_kb_api: Api,
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    await _ready(api, acme, kb_id, "policies.md", WARRANTY_ONLY)
    await _ready(api, acme, kb_id, "guarantee.md", WARRANTY_COPY)
    await _ready(api, acme, kb_id, "replacement.md", REPLACEMENT)
    question = "How long is the battery warranty?"
    plain = await results(api, acme, kb_id, question, top_k=2)
    assert {r["document_name"] for r in plain} == {"policies.md", "guarantee.md"}
    diverse = await results(api, acme, kb_id, question, top_k=2, mmr=True)
    names = [r["document_name"] for r in diverse]
    assert "replacement.md" in names
    assert len({"policies.md", "guarantee.md"} & set(names)) == 1


async def test_the_agent_retriever_returns_cited_passages_from_the_agents_knowledge_bases(
    sqlite_kb_api: Api,
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    other_kb = await create_kb(api, acme, "Other")
    doc_id = await _ready(api, acme, kb_id, "policies.md", WARRANTY)
    await _ready(api, acme, other_kb, "replacement.md", REPLACEMENT)
    retriever = api.backends.retriever
    assert isinstance(retriever, KnowledgeRetriever) and isinstance(retriever, Retriever)
    passages = await retriever.retrieve(acme.org_id, [kb_id], "battery warranty", top_k=3)
    assert passages and {p.document_id for p in passages} == {doc_id}
    assert passages[0].section == "Warranty" and passages[0].document_name == "policies.md"
    assert await retriever.retrieve(acme.org_id, [], "battery warranty") == []


async def test_another_organisation_never_gets_chunks_even_naming_the_knowledge_base(
    kb_api: Api,
) -> None:
    acme = await kb_api.tenant("Acme")
    globex = await kb_api.tenant("Globex")
    kb_id = await create_kb(kb_api, acme)
    await _ready(kb_api, acme, kb_id, "policies.md", WARRANTY)
    retriever = kb_api.backends.retriever
    assert await retriever.retrieve(globex.org_id, [kb_id], "battery warranty") == []
    hits = await retrieval.search(
        kb_api.backends,
        org_id=globex.org_id,
        kb_ids=[kb_id],
        query="battery warranty",
        options=SearchOptions(top_k=5),
    )
    assert hits == []
    # And at the store itself: the organisation is always part of the query.
    built = await kb_api.backends.knowledge.get()
    [vector] = await built.embedder.embed(["battery warranty"])
    request = QueryRequest(vector=vector, text="battery warranty", kb_ids=None, top_k=10)
    assert await built.vector_store.query(globex.org_id, request) == []
    assert len(await built.vector_store.query(acme.org_id, request)) == 2
