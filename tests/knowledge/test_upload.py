"""Uploading documents: 202 and a queued document, sniffing, de-duplication, versions, and
bad uploads refused with a clear problem+json and nothing left behind."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.fixtures.documents import add_zip_entries, make_docx, make_html, make_pdf
from tests.knowledge.harness import (
    create_kb,
    document_rows,
    kb_settings,
    nothing_left,
    object_keys_of,
    start_kb_app,
    upload,
    uploaded,
)
from vocalis.core import object_keys
from vocalis.knowledge import service

MARKDOWN = b"# Refunds\n\nRefunds are paid within **14 days** of the return.\n"


async def test_an_upload_answers_202_with_a_queued_document_and_stores_the_original(
    kb_api: Api,
) -> None:
    acme = await kb_api.tenant("Acme")
    kb_id = await create_kb(kb_api, acme)
    pdf = make_pdf([["Refunds are paid within 14 days."]])
    answer = await upload(kb_api, acme, kb_id, "policy.pdf", pdf)
    assert answer.status_code == 202, answer.text
    doc = answer.json()
    assert doc["id"].startswith("doc_")
    assert doc["status"] == "queued"
    assert (doc["name"], doc["type"], doc["content_type"]) == (
        "policy.pdf",
        "pdf",
        "application/pdf",
    )
    assert (doc["version"], doc["indexed_version"], doc["size_bytes"]) == (1, None, len(pdf))
    assert doc["checksum"] == "sha256:" + hashlib.sha256(pdf).hexdigest()
    assert doc["deduplicated"] is False
    key = object_keys.document_original(acme.org_id, kb_id, doc["id"], 1, "policy.pdf")
    assert await object_keys_of(kb_api, acme.org_id) == [key]
    assert await kb_api.backends.objects.get(key) == pdf
    shown = await kb_api.client.get(
        f"/v1/knowledge-bases/{kb_id}/documents/{doc['id']}", headers=acme.headers
    )
    assert shown.json()["status"] == "queued"
    listed = await kb_api.client.get(f"/v1/knowledge-bases/{kb_id}/documents", headers=acme.headers)
    assert [d["id"] for d in listed.json()["data"]] == [doc["id"]]


async def test_the_type_comes_from_the_content_not_the_file_name(sqlite_kb_api: Api) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    kb_id = await create_kb(sqlite_kb_api, acme)
    answer = await upload(sqlite_kb_api, acme, kb_id, "refunds.txt", MARKDOWN)
    assert answer.status_code == 202, answer.text
    assert (answer.json()["type"], answer.json()["content_type"]) == ("markdown", "text/markdown")


async def test_the_name_field_overrides_the_file_name(sqlite_kb_api: Api) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    kb_id = await create_kb(sqlite_kb_api, acme)
    answer = await upload(sqlite_kb_api, acme, kb_id, "C:\\tmp\\x.md", MARKDOWN, name="Refunds")
    assert answer.json()["name"] == "Refunds"
    unnamed = await upload(sqlite_kb_api, acme, kb_id, "C:\\docs\\returns.md", MARKDOWN + b"!")
    assert unnamed.json()["name"] == "returns.md"


async def test_identical_bytes_return_the_existing_document_with_200_and_store_nothing(
    kb_api: Api,
) -> None:
    acme = await kb_api.tenant("Acme")
    kb_id = await create_kb(kb_api, acme)
    first = await upload(kb_api, acme, kb_id, "refunds.md", MARKDOWN)
    again = await upload(kb_api, acme, kb_id, "copy-of-refunds.md", MARKDOWN)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["name"] == "refunds.md"
    assert again.json()["deduplicated"] is True
    assert len(await object_keys_of(kb_api, acme.org_id)) == 1
    assert await document_rows(kb_api, acme.org_id) == 1


async def test_the_same_bytes_in_another_knowledge_base_are_a_separate_document(
    sqlite_kb_api: Api,
) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    first_kb = await create_kb(sqlite_kb_api, acme, "One")
    second_kb = await create_kb(sqlite_kb_api, acme, "Two")
    a = await uploaded(sqlite_kb_api, acme, first_kb, "refunds.md", MARKDOWN)
    b = await uploaded(sqlite_kb_api, acme, second_kb, "refunds.md", MARKDOWN)
    assert a != b


async def test_new_bytes_under_an_existing_name_are_the_next_version_of_that_document(
    kb_api: Api,
) -> None:
    acme = await kb_api.tenant("Acme")
    kb_id = await create_kb(kb_api, acme)
    first = (await upload(kb_api, acme, kb_id, "refunds.md", MARKDOWN)).json()
    second = await upload(kb_api, acme, kb_id, "refunds.md", MARKDOWN.replace(b"14", b"30"))
    assert second.status_code == 202, second.text
    assert second.json()["id"] == first["id"]
    assert (second.json()["version"], second.json()["status"]) == (2, "queued")
    prefix = object_keys.document_prefix(acme.org_id, kb_id, first["id"])
    keys = await object_keys_of(kb_api, acme.org_id)
    assert keys == [f"{prefix}v1/original/refunds.md", f"{prefix}v2/original/refunds.md"]


# --- bad uploads ---------------------------------------------------------------------------
async def _refused(api: Api, filename: str, data: bytes, status: int, code: str) -> dict[str, Any]:
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    answer = await upload(api, acme, kb_id, filename, data)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = answer.json()
    assert problem["code"] == code
    assert await nothing_left(api, acme.org_id) == ([], 0, 0)
    return problem


async def test_an_empty_file_is_refused_and_nothing_is_kept(kb_api: Api) -> None:
    problem = await _refused(kb_api, "empty.pdf", b"", 422, "document_empty")
    assert "empty" in problem["detail"].lower()


async def test_a_whitespace_only_file_is_refused_as_empty(sqlite_kb_api: Api) -> None:
    await _refused(sqlite_kb_api, "blank.txt", b" \n\t \n", 422, "document_empty")


async def test_an_html_page_named_pdf_is_refused_as_a_type_mismatch(sqlite_kb_api: Api) -> None:
    page = make_html("Prices", "<h1>Prices</h1><p>Everything is free.</p>")
    problem = await _refused(sqlite_kb_api, "prices.pdf", page, 415, "document_type_mismatch")
    assert ".pdf" in problem["detail"] and "text/html" in problem["detail"]


async def test_an_image_named_txt_is_refused_as_unsupported(sqlite_kb_api: Api) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    problem = await _refused(sqlite_kb_api, "notes.txt", png, 415, "document_type_unsupported")
    assert "image/png" in problem["detail"]


async def test_a_zip_bomb_like_docx_is_refused_before_any_parser_reads_it(
    sqlite_kb_api: Api,
) -> None:
    docx = make_docx([("h1", "Title"), ("p", "Hello.")])
    bomb = add_zip_entries(docx, {"word/media/padding.bin": b"\0" * 30_000_000})
    assert len(bomb) < 100_000  # small on the wire, 30 MB expanded
    problem = await _refused(sqlite_kb_api, "report.docx", bomb, 422, "document_unsafe_archive")
    assert "ratio" in problem["detail"]


async def test_a_spreadsheet_named_docx_is_refused_as_unsupported(sqlite_kb_api: Api) -> None:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.xml", "<workbook/>")
    await _refused(sqlite_kb_api, "budget.docx", out.getvalue(), 415, "document_type_unsupported")


async def test_a_request_without_the_file_field_is_refused(sqlite_kb_api: Api) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    kb_id = await create_kb(sqlite_kb_api, acme)
    answer = await sqlite_kb_api.client.post(
        f"/v1/knowledge-bases/{kb_id}/documents",
        files={"attachment": ("a.txt", b"hello", "text/plain")},
        headers=acme.headers,
    )
    assert answer.status_code == 422
    assert answer.json()["code"] == "validation_failed"
    assert "`file`" in answer.json()["detail"]


async def test_a_json_body_is_refused_with_415(sqlite_kb_api: Api) -> None:
    acme = await sqlite_kb_api.tenant("Acme")
    kb_id = await create_kb(sqlite_kb_api, acme)
    answer = await sqlite_kb_api.client.post(
        f"/v1/knowledge-bases/{kb_id}/documents", json={"file": "x"}, headers=acme.headers
    )
    assert answer.status_code == 415
    assert answer.json()["code"] == "unsupported_media_type"


@pytest.fixture
async def small_limit_api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    """The app with a 64 KiB per-document limit and only PDF and Markdown allowed."""
    settings = kb_settings(
        tmp_path / "data",
        f"sqlite+aiosqlite:///{tmp_path}/v.db",
        redis_url,
        knowledge_max_document_bytes=65_536,
        knowledge_allowed_types="pdf,markdown",
    )
    async for api in start_kb_app(settings):
        yield api


async def test_an_oversized_file_is_refused_while_it_streams_without_reading_the_rest(
    small_limit_api: Api,
) -> None:
    api = small_limit_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    boundary = "vocalis-test-boundary"
    sent = 0
    total = 8 * 1024 * 1024

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="big.md"\r\nContent-Type: text/markdown\r\n\r\n'
        ).encode()
        for _ in range(total // 16_384):
            sent += 16_384
            yield b"a" * 16_384
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = await api.client.post(
        f"/v1/knowledge-bases/{kb_id}/documents",
        content=body(),
        headers={**acme.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert answer.status_code == 413, answer.text
    assert answer.json()["code"] == "document_file_too_large"
    assert "65536" in answer.json()["detail"]
    assert sent < 4 * 65_536  # stopped right after the limit, not after 8 MiB
    assert await nothing_left(api, acme.org_id) == ([], 0, 0)


async def test_a_file_just_under_the_limit_is_accepted(small_limit_api: Api) -> None:
    acme = await small_limit_api.tenant("Acme")
    kb_id = await create_kb(small_limit_api, acme)
    data = b"# Notes\n\n" + b"word " * ((65_536 - 9) // 5)
    assert len(data) <= 65_536
    answer = await upload(small_limit_api, acme, kb_id, "notes.md", data)
    assert answer.status_code == 202, answer.text


async def test_a_type_the_deployment_does_not_allow_is_refused(small_limit_api: Api) -> None:
    problem = await _refused(
        small_limit_api,
        "page.html",
        make_html("Hi", "<p>Hello there.</p>"),
        415,
        "document_type_not_allowed",
    )
    assert "markdown, pdf" in problem["detail"]


# --- failures after the original is stored -----------------------------------------------
async def test_when_the_queue_is_unreachable_the_upload_is_answered_503_and_not_kept(
    tmp_path: Path, redis_url: str
) -> None:
    settings = kb_settings(
        tmp_path / "data",
        f"sqlite+aiosqlite:///{tmp_path}/v.db",
        redis_url,
        broker_url="redis://127.0.0.1:1/0",  # nothing listens on port 1
    )
    async for api in start_kb_app(settings):
        acme = await api.tenant("Acme")
        kb_id = await create_kb(api, acme)
        answer = await upload(api, acme, kb_id, "refunds.md", MARKDOWN)
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "backend_unavailable"
        assert await nothing_left(api, acme.org_id) == ([], 0, 0)


async def test_a_new_version_that_cannot_be_queued_leaves_the_previous_version_as_it_was(
    sqlite_kb_api: Api,
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    first = (await upload(api, acme, kb_id, "refunds.md", MARKDOWN)).json()
    dead_broker = api.settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    backends = dataclasses.replace(api.backends, settings=dead_broker)
    with pytest.raises(service.BackendUnavailable):
        await service.upload_document(
            backends,
            org_id=acme.org_id,
            kb_id=kb_id,
            upload=service.Upload.of("refunds.md", MARKDOWN.replace(b"14", b"30")),
        )
    after = await api.client.get(
        f"/v1/knowledge-bases/{kb_id}/documents/{first['id']}", headers=acme.headers
    )
    assert {k: after.json()[k] for k in ("version", "checksum", "status", "size_bytes")} == {
        k: first[k] for k in ("version", "checksum", "status", "size_bytes")
    }
    assert await object_keys_of(api, acme.org_id) == [
        object_keys.document_original(acme.org_id, kb_id, first["id"], 1, "refunds.md")
    ]


async def test_when_the_row_cannot_be_written_the_stored_original_is_removed(
    sqlite_kb_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)

    async def database_down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(service, "_write_version", database_down)  # fault injection
    with pytest.raises(ConnectionError):
        await service.upload_document(
            api.backends,
            org_id=acme.org_id,
            kb_id=kb_id,
            upload=service.Upload.of("refunds.md", MARKDOWN),
        )
    assert await nothing_left(api, acme.org_id) == ([], 0, 0)
