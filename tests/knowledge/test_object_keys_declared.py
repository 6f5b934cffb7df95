"""Every object a real ingestion stores lies under a declared key layout.

`docs/reference/object-keys.md` is generated from the layouts declared in
`core/object_keys.py` (and the domains that declare their own); this test uploads and
ingests a document, then lists every object the organisation has: each key must match a
declared pattern.
"""

from __future__ import annotations

import re

from tests.api.conftest import Api
from tests.knowledge.harness import create_kb, ingest_now, object_keys_of, uploaded
from vocalis.core.object_keys import LAYOUTS
from vocalis.knowledge import ingest


def _pattern(declared: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[a-z_]+\})", declared)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def _undeclared(keys: list[str]) -> list[str]:
    patterns = [_pattern(layout.pattern) for layout in LAYOUTS]
    return sorted(k for k in keys if not any(p.fullmatch(k) for p in patterns))


async def test_every_object_an_ingestion_stores_has_a_declared_layout(
    sqlite_kb_api: Api,
) -> None:
    api = sqlite_kb_api
    acme = await api.tenant("Acme")
    kb_id = await create_kb(api, acme)
    text = b"# Opening hours\n\nWe are open from nine to five on weekdays.\n"
    doc_id = await uploaded(api, acme, kb_id, "hours.md", text)
    outcome = await ingest_now(api, acme.org_id, kb_id, doc_id)
    assert outcome.outcome == ingest.Outcome.READY
    keys = await object_keys_of(api, acme.org_id)
    assert any(k.endswith("/original/hours.md") for k in keys), keys
    assert any(k.endswith("/text.txt") for k in keys), keys
    assert _undeclared(keys) == []


def test_the_layout_match_is_strict() -> None:
    good = "orgs/org_1/knowledge-bases/kb_1/documents/doc_1/v2/text.txt"
    assert _undeclared([good]) == []
    assert _undeclared(["orgs/org_1/elsewhere/file.bin"]) == ["orgs/org_1/elsewhere/file.bin"]
