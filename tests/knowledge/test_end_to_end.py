"""End to end with a real `vocalis worker` on a real Redis broker and PostgreSQL.

Uploads go through the API, the worker process ingests them from the `ingest` queue
(extract, chunk, embed with the ONNX model, index in LanceDB), and the API answers
queries and agent messages from what the worker wrote.
"""

from __future__ import annotations

from typing import Any

from tests.fixtures.documents import make_docx, make_html, make_pdf
from tests.knowledge.conftest import Stack
from tests.knowledge.harness import (
    create_kb,
    events_of,
    eventually,
    nothing_left,
    object_keys_of,
    results,
    settled,
    upload,
    uploaded,
    vectors_of,
)
from vocalis.core import object_keys

HANDBOOK_PDF = make_pdf(
    [
        ["Acme employee handbook.", "This handbook describes how we work together."],
        [
            "Employees receive twenty-eight days of paid holiday per year.",
            "Unused holiday can be carried over until the end of March.",
        ],
        ["Parental leave is sixteen weeks at full pay for every parent."],
    ],
    outline=[("Welcome", 1), ("Holidays", 2), ("Parental leave", 3)],
    title="Acme handbook",
)
WARRANTY_DOCX = make_docx(
    [
        ("h1", "Product warranty"),
        ("p", "Every Acme kettle has a warranty of three years from the date of purchase."),
        ("h1", "Repairs"),
        ("p", "Repairs outside the warranty are charged at cost plus shipping."),
    ],
    title="Warranty terms",
)
SUPPORT_HTML = make_html(
    "Support",
    "<nav>Home | Shop</nav><h1>Customer support</h1>"
    "<h2>Opening hours</h2><p>The support hotline is open Monday to Friday, 8am to 6pm.</p>"
    "<h2>Returns</h2><p>Returned items must be unused and in their original box.</p>",
)


async def _ready(stack: Stack, tenant: Any, kb_id: str, name: str, data: bytes) -> dict[str, Any]:
    doc_id = await uploaded(stack.api, tenant, kb_id, name, data)
    doc = await settled(stack.api, tenant, kb_id, doc_id)
    assert doc["status"] == "ready", (doc, stack.worker.log()[-3000:])
    return doc


async def test_a_pdf_a_docx_and_an_html_page_become_ready_and_queries_cite_page_or_section(
    stack: Stack,
) -> None:
    api = stack.api
    acme = await stack.tenant("Acme")
    kb_id = await create_kb(api, acme)
    pdf = await _ready(stack, acme, kb_id, "handbook.pdf", HANDBOOK_PDF)
    docx = await _ready(stack, acme, kb_id, "warranty.docx", WARRANTY_DOCX)
    html = await _ready(stack, acme, kb_id, "support.html", SUPPORT_HTML)
    assert (pdf["type"], docx["type"], html["type"]) == ("pdf", "docx", "html")
    assert pdf["page_count"] == 3 and pdf["chunk_count"] >= 3

    [holiday] = await results(api, acme, kb_id, "How many days of paid holiday do I get?", top_k=1)
    assert "twenty-eight days" in holiday["text"]
    assert (holiday["document_name"], holiday["page"], holiday["section"]) == (
        "handbook.pdf",
        2,
        "Holidays",
    )
    [warranty] = await results(api, acme, kb_id, "How long is the kettle warranty?", top_k=1)
    assert "three years" in warranty["text"]
    assert (warranty["document_name"], warranty["page"], warranty["section"]) == (
        "warranty.docx",
        None,
        "Product warranty",
    )
    [hours] = await results(api, acme, kb_id, "When can I call the support hotline?", top_k=1)
    assert "8am to 6pm" in hours["text"]
    assert (hours["document_name"], hours["section"]) == ("support.html", "Opening hours")

    ready = await events_of(api, acme.org_id, "document.ready")
    assert {e["document_id"] for e in ready} == {pdf["id"], docx["id"], html["id"]}
    # Originals and extracted texts under the documented layout.
    keys = await object_keys_of(api, acme.org_id)
    assert object_keys.document_text(acme.org_id, kb_id, pdf["id"], 1) in keys
    assert object_keys.document_original(acme.org_id, kb_id, docx["id"], 1, "warranty.docx") in keys


async def test_an_agent_answers_a_question_about_an_uploaded_document_and_cites_it(
    stack: Stack,
) -> None:
    api = stack.api
    acme = await stack.tenant("Acme")
    kb_id = await create_kb(api, acme)
    await _ready(stack, acme, kb_id, "handbook.pdf", HANDBOOK_PDF)
    created = await api.client.post(
        "/v1/agents",
        json={
            "name": "HR helper",
            "instructions": "Answer from the handbook.",
            "knowledge_base_ids": [kb_id],
        },
        headers=acme.headers,
    )
    assert created.status_code == 201, created.text
    started = await api.client.post(
        f"/v1/agents/{created.json()['id']}/conversations", json={}, headers=acme.headers
    )
    assert started.status_code == 201, started.text
    reply = await api.client.post(
        f"/v1/conversations/{started.json()['id']}/messages",
        json={"content": "How long is parental leave?", "stream": False},
        headers=acme.headers,
    )
    assert reply.status_code == 200, reply.text
    message = reply.json()
    assert message["role"] == "assistant"
    assert "sixteen weeks" in message["content"]
    assert "[1]" in message["content"]
    cited = message["citations"][0]
    assert (cited["document_name"], cited["page"], cited["section"]) == (
        "handbook.pdf",
        3,
        "Parental leave",
    )


async def test_a_corrupt_pdf_and_a_corrupt_docx_fail_in_the_worker_with_clear_codes(
    stack: Stack,
) -> None:
    api = stack.api
    acme = await stack.tenant("Acme")
    kb_id = await create_kb(api, acme)
    truncated_pdf = HANDBOOK_PDF[: len(HANDBOOK_PDF) // 3]
    broken_docx = WARRANTY_DOCX.replace(b"word/document.xml", b"word/documenX.xml", 1)
    failures = []
    for name, data in (("handbook.pdf", truncated_pdf), ("warranty.docx", broken_docx)):
        answer = await upload(api, acme, kb_id, name, data)
        assert answer.status_code == 202, answer.text  # only the parser can tell
        failures.append(await settled(api, acme, kb_id, answer.json()["id"]))
    for doc in failures:
        assert doc["status"] == "failed", doc
        assert doc["error"]["code"] in ("document_corrupt", "document_empty"), doc
        assert doc["error"]["message"]
    # Rows stay to show the failure; no original, no text, no vector is left.
    assert await object_keys_of(api, acme.org_id) == []
    assert await vectors_of(api, acme.org_id) == 0
    failed = await events_of(api, acme.org_id, "document.failed")
    assert {e["document_id"] for e in failed} == {d["id"] for d in failures}


async def test_a_reupload_replaces_the_old_version_once_the_new_one_is_ready(
    stack: Stack,
) -> None:
    api = stack.api
    acme = await stack.tenant("Acme")
    kb_id = await create_kb(api, acme)
    first = await _ready(stack, acme, kb_id, "hours.md", b"# Hours\n\nWe open at 9am.\n")
    second = await upload(api, acme, kb_id, "hours.md", b"# Hours\n\nWe open at 7am.\n")
    assert (second.status_code, second.json()["version"]) == (202, 2)
    seen: list[int] = []

    async def answer() -> dict[str, Any]:
        hits = await results(api, acme, kb_id, "When do you open?", top_k=3)
        # During the swap the document is always found, and only one version of it.
        assert len(hits) == 1 and hits[0]["document_id"] == first["id"], hits
        seen.append(hits[0]["version"])
        return hits[0]

    await eventually(answer, lambda hit: hit["version"] == 2, timeout=90, interval=0.05)
    # Version 1 until version 2 is ready, never back (the worker may finish before the first
    # query; test_ingest.py checks the swap mid-ingestion deterministically).
    assert seen == sorted(seen)
    doc = await settled(api, acme, kb_id, first["id"])
    assert (doc["status"], doc["indexed_version"]) == ("ready", 2)
    [hit] = await results(api, acme, kb_id, "When do you open?", top_k=3)
    assert "7am" in hit["text"] and hit["version"] == 2
    assert await vectors_of(api, acme.org_id) == doc["chunk_count"]
    prefix = object_keys.document_prefix(acme.org_id, kb_id, first["id"])
    assert sorted(await object_keys_of(api, acme.org_id)) == [
        f"{prefix}v2/original/hours.md",
        f"{prefix}v2/text.txt",
    ]


async def test_deleting_a_document_then_its_knowledge_base_leaves_no_object_chunk_or_vector(
    stack: Stack,
) -> None:
    api = stack.api
    acme = await stack.tenant("Acme")
    kb_id = await create_kb(api, acme)
    pdf = await _ready(stack, acme, kb_id, "handbook.pdf", HANDBOOK_PDF)
    await _ready(stack, acme, kb_id, "support.html", SUPPORT_HTML)
    deleted = await api.client.delete(
        f"/v1/knowledge-bases/{kb_id}/documents/{pdf['id']}", headers=acme.headers
    )
    assert deleted.status_code == 204
    remaining = await results(api, acme, kb_id, "paid holiday per year", top_k=5)
    assert remaining and {h["document_name"] for h in remaining} == {"support.html"}
    assert all(pdf["id"] not in key for key in await object_keys_of(api, acme.org_id))
    dropped = await api.client.delete(f"/v1/knowledge-bases/{kb_id}", headers=acme.headers)
    assert dropped.status_code == 204
    assert await nothing_left(api, acme.org_id) == ([], 0, 0)


async def test_one_organisation_never_sees_or_queries_anothers_knowledge_base(
    stack: Stack,
) -> None:
    api = stack.api
    acme = await stack.tenant("Acme")
    globex = await stack.tenant("Globex")
    kb_id = await create_kb(api, acme)
    doc = await _ready(stack, acme, kb_id, "warranty.docx", WARRANTY_DOCX)
    own_kb = await create_kb(api, globex)
    await _ready(stack, globex, own_kb, "support.html", SUPPORT_HTML)
    for path in (
        f"/v1/knowledge-bases/{kb_id}",
        f"/v1/knowledge-bases/{kb_id}/documents/{doc['id']}",
    ):
        assert (await api.client.get(path, headers=globex.headers)).status_code == 404
    foreign = await api.client.post(
        f"/v1/knowledge-bases/{kb_id}/query", json={"query": "warranty"}, headers=globex.headers
    )
    assert foreign.status_code == 404
    own = await results(api, globex, own_kb, "kettle warranty", top_k=10)
    assert {h["document_name"] for h in own} == {"support.html"}
