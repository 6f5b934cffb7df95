"""`vocalis run` ingests an upload with no extra command: its worker runs beside the API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.documents import make_pdf
from tests.fixtures.vocalis_run import ServerFailed, vocalis_run
from vocalis.app import ROUTERS


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """`vocalis run` on the embedded defaults: (base URL, auth headers, log file)."""
    if "vocalis.knowledge.api" not in ROUTERS:
        pytest.fail("vocalis.knowledge.api is not in vocalis.app.ROUTERS: the app serves no upload")
    try:
        with vocalis_run(tmp_path, timeout_s=90) as server:
            yield server.base_url, {"Authorization": f"Bearer {server.key}"}, server.log
    except ServerFailed as failed:
        pytest.fail(str(failed))


def _wait(fn: object, timeout: float, what: str, log: Path) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = fn()  # type: ignore[operator]
            if isinstance(response, httpx.Response) and response.status_code < 500:
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; log:\n{log.read_text()[-3000:]}")


def test_an_upload_to_vocalis_run_is_ingested_by_its_own_worker_and_can_be_queried(
    running: tuple[str, dict[str, str], Path],
) -> None:
    base, auth, log = running
    _wait(lambda: httpx.get(f"{base}/readyz", timeout=2), 90, "readiness", log)
    kb = httpx.post(f"{base}/v1/knowledge-bases", json={"name": "Handbook"}, headers=auth)
    assert kb.status_code == 201, kb.text
    kb_id = kb.json()["id"]
    pdf = make_pdf([["Welcome."], ["The office closes at noon on Fridays."]])
    sent = httpx.post(
        f"{base}/v1/knowledge-bases/{kb_id}/documents",
        files={"file": ("office.pdf", pdf, "application/pdf")},
        headers=auth,
    )
    assert sent.status_code == 202, sent.text
    doc_url = f"{base}/v1/knowledge-bases/{kb_id}/documents/{sent.json()['id']}"
    deadline = time.monotonic() + 120
    status = sent.json()["status"]
    while status not in ("ready", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        status = httpx.get(doc_url, headers=auth).json()["status"]
    assert status == "ready", log.read_text()[-3000:]
    found = httpx.post(
        f"{base}/v1/knowledge-bases/{kb_id}/query",
        json={"query": "When does the office close on Friday?", "top_k": 1},
        headers=auth,
        timeout=30,
    )
    assert found.status_code == 200, found.text
    [hit] = found.json()["results"]
    assert "noon" in hit["text"] and (hit["document_name"], hit["page"]) == ("office.pdf", 2)
