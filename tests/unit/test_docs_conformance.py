"""Conformance to the technical-documentation template, item by item.

The team's template (`tests/fixtures/technical-documentation-template.md`, a copy of
`../shared/technical-documentation-template.md`, kept equal by a test when that folder is
beside the repository) names, under each of its 13 sections and their subsections, the
things the documentation must give: "Method", "Key patterns", "TTL rules", "Rollback
strategy"… This test walks every one of them and looks for its content in `docs/`:

- every item of the template has an entry in `EVIDENCE` (a new template item fails until
  it is mapped to where the docs give it);
- each entry's evidence is found: a heading of the section's page, a table column or a
  diagram in a page, and for the REST reference (3.1) every operation of the OpenAPI
  document with its method and URL, parameters, body, responses, error responses, rate
  limit and authentication.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TEMPLATE = ROOT / "tests" / "fixtures" / "technical-documentation-template.md"
SHARED_TEMPLATE = ROOT.parent / "shared" / "technical-documentation-template.md"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# --- the template ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One thing the template asks for: section number, and the item's words."""

    section: str
    text: str

    @property
    def key(self) -> str:
        return f"{self.section} {self.text}"


def template_items(text: str) -> list[Item]:
    """Every item of the template: its bullets, its one-line asks, and each (sub)section
    that has neither (it must still have content)."""
    items: list[Item] = []
    section = ""
    asked = False

    def close() -> None:
        if section and not asked:
            items.append(Item(section, "(content)"))

    for raw in text.splitlines():
        line = raw.strip()
        heading = re.match(r"^#{2,3}\s+(\d+(?:\.\d+)?)\.?\s+(.+)$", line)
        if heading:
            close()
            section, asked = heading.group(1), False
            continue
        if not section or not line or line == "---" or line.startswith(("#", "(")):
            continue
        if line.endswith(":"):  # "For each endpoint:", "Short recap:", "Full list:"
            continue
        items.append(Item(section, line.removeprefix("- ").strip()))
        asked = True
    close()
    parents = {item.section.split(".")[0] for item in items if "." in item.section}
    return [i for i in items if not (i.text == "(content)" and i.section in parents)]


ITEMS = template_items(TEMPLATE.read_text(encoding="utf-8"))


# --- where the docs give it -------------------------------------------------------------------
def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def heading(page: str, pattern: str) -> Callable[[], str | None]:
    """A heading of `page` matching `pattern` (case-insensitive)."""

    def check() -> str | None:
        found = re.search(rf"^#+\s+.*{pattern}", _page(page), re.MULTILINE | re.IGNORECASE)
        return None if found else f"{page}: no heading matching {pattern!r}"

    return check


def text(page: str, pattern: str, at_least: int = 1) -> Callable[[], str | None]:
    """`pattern` (a regex, case-insensitive, multi-line) at least `at_least` times in `page`."""

    def check() -> str | None:
        count = len(re.findall(pattern, _page(page), re.MULTILINE | re.IGNORECASE))
        return (
            None if count >= at_least else f"{page}: {pattern!r} found {count} times (< {at_least})"
        )

    return check


def columns(page: str, *names: str) -> Callable[[], str | None]:
    """A table in `page` whose header row has every one of `names`."""

    def check() -> str | None:
        for line in _page(page).splitlines():
            if line.startswith("|"):
                cells = [c.strip().lower() for c in line.strip("|").split("|")]
                if all(any(n.lower() in c for c in cells) for n in names):
                    return None
        return f"{page}: no table with columns {names}"

    return check


def sections(page: str, at_least: int = 1) -> Callable[[], str | None]:
    """`page` has at least `at_least` second-level sections, each with text under it."""

    def check() -> str | None:
        parts = re.split(r"^## .+$", _page(page), flags=re.MULTILINE)[1:]
        filled = [p for p in parts if len(p.strip()) > 40]
        return None if len(filled) >= at_least else f"{page}: {len(filled)} filled sections"

    return check


@cache
def _openapi() -> dict[str, Any]:
    from vocalis.app import create_app
    from vocalis.settings import Settings

    spec: dict[str, Any] = create_app(Settings(env="test")).openapi()
    return spec


@cache
def _endpoint_blocks() -> dict[str, str]:
    """`METHOD /path` → its part of the generated REST reference."""
    blocks: dict[str, str] = {}
    current = None
    for line in _page("reference/rest-api.md").splitlines():
        match = re.match(r"^#{2,4}\s+`([A-Z]+) (/\S*)`", line)
        if match:
            current = f"{match.group(1)} {match.group(2)}"
            blocks[current] = ""
        elif line.startswith("## "):
            current = None
        elif current is not None:
            blocks[current] += line + "\n"
    return blocks


def every_operation(
    what: str, wanted: Callable[[dict[str, Any]], bool], pattern: str
) -> Callable[[], str | None]:
    """For every OpenAPI operation for which `wanted(operation)`, its block in the REST
    reference exists and matches `pattern`."""

    def check() -> str | None:
        blocks = _endpoint_blocks()
        missing = []
        for path, operations in _openapi()["paths"].items():
            for method, operation in operations.items():
                if method not in HTTP_METHODS or not wanted(operation):
                    continue
                name = f"{method.upper()} {path}"
                block = blocks.get(name)
                if block is None or not re.search(pattern, block, re.MULTILINE | re.IGNORECASE):
                    missing.append(name)
        return f"rest-api.md: {what} missing for {missing[:8]}" if missing else None

    return check


def _always(_: dict[str, Any]) -> bool:
    return True


def _authenticated(op: dict[str, Any]) -> bool:
    return bool(op.get("security"))


def _has_parameters(op: dict[str, Any]) -> bool:
    return bool(op.get("parameters"))


def _has_body(op: dict[str, Any]) -> bool:
    return "requestBody" in op


EVIDENCE: dict[str, list[Callable[[], str | None]]] = {
    # 1. Introduction
    "1 Purpose of this technical documentation and what it covers.": [
        heading("01-introduction.md", "what it covers"),
        sections("01-introduction.md", 2),
    ],
    # 2. System Architecture Summary
    "2 Architecture diagram": [
        heading("02-architecture.md", "architecture diagram"),
        text("02-architecture.md", r"^```mermaid\nflowchart"),
        text("reference/architecture.md", r"^```mermaid"),
    ],
    "2 Microservices/modules list": [
        heading("02-architecture.md", "modules"),
        heading("02-architecture.md", "processes"),
    ],
    "2 Technology stack": [heading("02-architecture.md", "technology stack")],
    "2 Deployment environments": [heading("02-architecture.md", "deployment environments")],
    # 3.1 REST endpoints: every operation of the OpenAPI document
    "3.1 Method": [every_operation("the heading", _always, r"")],
    "3.1 URL": [every_operation("the heading", _always, r"")],
    "3.1 Query Params": [
        every_operation("parameters", _has_parameters, r"param"),
        heading("03-api.md", "pagination"),
    ],
    "3.1 Body Schema": [
        every_operation("the request body", _has_body, r"body"),
        heading("reference/rest-api.md", "schemas"),
        columns("reference/rest-api.md", "Field", "Type", "Required", "Description"),
    ],
    "3.1 Response Schema": [every_operation("the responses", _always, r"`?2\d\d`?")],
    "3.1 Error Codes": [
        every_operation("error responses", _always, r"`?[45](\d\d|XX)`?"),
        columns("reference/errors.md", "Code", "HTTP", "Title", "When", "Retryable"),
        heading("03-api.md", "problem"),
    ],
    "3.1 Rate-limits": [
        every_operation("the rate limit", _authenticated, r"rate limit"),
        heading("reference/rest-api.md", "rate-limit classes"),
        columns("reference/rest-api.md", "Class", "Per minute", "Burst"),
        heading("03-api.md", "rate limits"),
    ],
    "3.1 Authentication rules": [
        every_operation("authentication", _always, r"auth"),
        heading("03-api.md", "authentication"),
        heading("03-api.md", "scopes and roles"),
    ],
    # 3.2 WebSocket
    "3.2 Event names": [
        heading("reference/realtime.md", "client events"),
        heading("reference/realtime.md", "server events"),
        columns("reference/realtime.md", "Event", "Fields"),
    ],
    "3.2 Payload schema": [columns("reference/realtime.md", "Event", "Meaning", "Fields")],
    "3.2 Expected responses": [heading("03-api.md", "3.2 WebSocket"), text("03-api.md", "→")],
    # 3.3 Webhooks
    "3.3 Trigger conditions": [columns("reference/webhook-events.md", "Event", "Meaning")],
    "3.3 Payload schema": [
        heading("reference/webhook-events.md", "event types"),
        columns("reference/webhook-events.md", "Field", "Type", "Required", "Description"),
    ],
    # 4.1 Databases
    "4.1 Tables/Collections": [
        text("reference/database.md", r"^## `\w+`", 5),
        text("reference/collections.md", r"^## `\w+`", 2),
    ],
    "4.1 Column descriptions": [
        columns("reference/database.md", "Column", "Type", "Null", "Key", "Notes"),
        columns("reference/collections.md", "Field", "Type", "Present", "Description"),
    ],
    "4.1 Indexing strategy": [
        text("reference/database.md", r"^Indexes: ", 3),
        text("reference/collections.md", r"^Indexes ", 2),
    ],
    "4.1 Relationships": [
        text("04-data-models.md", r"^```mermaid\nerDiagram"),
        text("reference/database.md", "→ `", 5),
    ],
    # 4.2 Redis
    "4.2 Key patterns": [columns("reference/redis-keys.md", "Pattern")],
    "4.2 Value structure": [columns("reference/redis-keys.md", "Pattern", "Value")],
    "4.2 TTL rules": [columns("reference/redis-keys.md", "Pattern", "TTL")],
    # 4.3 S3
    "4.3 Folder organization": [columns("reference/object-keys.md", "Key pattern", "Holds")],
    "4.3 File naming conventions": [
        columns("reference/object-keys.md", "Name", "Key pattern"),
        heading("04-data-models.md", "4.3"),
    ],
    # 4.4 Vector DB
    "4.4 Class schema": [heading("reference/vector-store.md", "weaviate collection")],
    "4.4 Embedding strategy": [heading("reference/vector-store.md", "embedding strategy")],
    "4.4 Query templates": [heading("reference/vector-store.md", "query templates")],
    # 5.1 Services
    "5.1 Purpose": [columns("05-internal-components.md", "Service", "Purpose")],
    "5.1 Inputs/Outputs": [columns("05-internal-components.md", "Service", "Inputs")],
    "5.1 Internal logic": [heading("05-internal-components.md", "internal logic")],
    "5.1 Dependencies": [columns("05-internal-components.md", "Service", "Dependencies")],
    # 5.2 Workers
    "5.2 Celery tasks": [columns("reference/workers.md", "Task", "Queue", "What it does")],
    "5.2 Queue routing": [heading("reference/workers.md", "routing")],
    "5.2 Retries & DLQ rules": [
        columns("reference/workers.md", "Task", "Retries"),
        text("reference/workers.md", "dead_letters"),
    ],
    # 5.3 Agents
    "5.3 Agent roles": [columns("reference/agent-runtimes.md", "Runtime", "Roles")],
    "5.3 Tools used": [
        columns("reference/agent-runtimes.md", "Runtime", "Tools"),
        heading("reference/agent-graph.md", "built-in tools"),
    ],
    "5.3 Workflow diagrams": [
        text("reference/agent-graph.md", r"^```mermaid"),
        text("reference/agent-runtimes.md", r"^```mermaid", 2),
    ],
    "5.3 State machine logic": [columns("reference/agent-runtimes.md", "State", "Does", "Next")],
    # 6. Configuration
    "6.1 Variable name": [columns("reference/environment.md", "Variable")],
    "6.1 Description": [columns("reference/environment.md", "Variable", "Description")],
    "6.1 Example": [columns("reference/environment.md", "Variable", "Example")],
    "6.1 Default value": [columns("reference/environment.md", "Variable", "Default")],
    "6.1 Required? yes/no": [columns("reference/environment.md", "Variable", "Required")],
    "6.2 Secret paths": [columns("reference/vault-paths.md", "Path")],
    "6.2 Rotation rules": [columns("reference/vault-paths.md", "Path", "Rotation")],
    "6.2 Usage notes": [columns("reference/vault-paths.md", "Path", "Used by")],
    "6.3 Flag name": [columns("reference/feature-flags.md", "Flag")],
    "6.3 Description": [columns("reference/feature-flags.md", "Flag", "Description")],
    "6.3 Default": [columns("reference/feature-flags.md", "Flag", "Default")],
    "6.3 Impact": [columns("reference/feature-flags.md", "Flag", "Impact")],
    # 7. Error handling
    "7 Error code reference": [
        heading("07-error-handling.md", "error code reference"),
        columns("reference/errors.md", "Code", "HTTP"),
    ],
    "7 Exception hierarchy": [
        heading("07-error-handling.md", "exception hierarchy"),
        text("reference/exceptions.md", r"^VocalisError\s+internal_error 500"),
        text("reference/exceptions.md", r"^├── \w+", 5),
    ],
    "7 Retry/backoff strategy": [heading("07-error-handling.md", "retry and backoff")],
    "7 Fallback behavior": [heading("07-error-handling.md", "fallback")],
    # 8. Logging & metrics
    "8.1 Log levels": [text("08-observability.md", r"\*\*Levels\.\*\*")],
    "8.1 Log patterns": [text("08-observability.md", r'^\{"timestamp":')],
    "8.1 PII redaction rules": [
        columns("reference/redaction.md", "Rule", "Replaced by", "Matches"),
    ],
    "8.2 API metrics": [text("reference/metrics.md", r"`vocalis_http_request")],
    "8.2 LLM metrics": [text("reference/metrics.md", r"`vocalis_llm_")],
    "8.2 Queue metrics": [text("reference/metrics.md", r"`vocalis_(queue|task)_")],
    "8.2 STT/TTS metrics": [
        text("reference/metrics.md", r"`vocalis_stt_"),
        text("reference/metrics.md", r"`vocalis_tts_"),
    ],
    "8.3 Span naming conventions": [
        columns("reference/spans.md", "Span", "Covers"),
        text("08-observability.md", "Span names"),
    ],
    "8.3 Required trace attributes": [text("reference/spans.md", "attributes")],
    # 9. DevOps
    "9 CI/CD pipeline": [heading("09-devops.md", "CI/CD pipeline")],
    "9 Dockerfile structure": [heading("09-devops.md", "Dockerfile structure")],
    "9 Kubernetes manifests": [heading("09-devops.md", "Kubernetes manifests")],
    "9 Scaling rules": [heading("09-devops.md", "scaling rules")],
    "9 Health checks": [heading("09-devops.md", "health checks")],
    "9 Rollback strategy": [heading("09-devops.md", "rollback strategy")],
    # 10. Local development
    "10 Repo structure": [heading("10-local-development.md", "repository structure")],
    "10 Required tools (Python, Node, Docker)": [
        heading("10-local-development.md", "required tools"),
        text("10-local-development.md", "Python 3.11"),
    ],
    "10 Setup scripts": [heading("10-local-development.md", "setup scripts")],
    "10 Running services locally": [heading("10-local-development.md", "running services")],
    "10 Running tests": [heading("10-local-development.md", "running tests")],
    "10 Troubleshooting": [heading("10-local-development.md", "troubleshooting")],
    # 11. Security
    "11 Authentication & authorization flow": [
        heading("11-security.md", "authentication and authorisation flow"),
        text("11-security.md", r"^```mermaid\nsequenceDiagram"),
    ],
    "11 Secret management rules": [heading("11-security.md", "secret management rules")],
    "11 API permission levels": [
        heading("11-security.md", "permission levels"),
        columns("reference/permissions.md", "Scope", "owner", "admin", "developer", "viewer"),
        heading("reference/permissions.md", "operations by scope"),
    ],
    "11 Threat model summary": [heading("11-security.md", "threat model")],
    # 12, 13: free-form
    "12 (content)": [sections("12-known-issues.md", 3)],
    "13 (content)": [sections("13-future.md", 2)],
}


def test_the_vendored_template_is_the_teams_template() -> None:
    vendored = TEMPLATE.read_text(encoding="utf-8")
    assert len(re.findall(r"^## \d+\. ", vendored, re.MULTILINE)) == 13
    if SHARED_TEMPLATE.is_file():  # beside the checkout (developers, CI): must be equal
        assert vendored == SHARED_TEMPLATE.read_text(encoding="utf-8")


def test_the_template_is_read_item_by_item() -> None:
    keys = [item.key for item in ITEMS]
    assert len(keys) == len(set(keys))
    assert "3.1 Rate-limits" in keys and "4.2 TTL rules" in keys and "12 (content)" in keys
    assert {item.section for item in ITEMS} >= {"1", "2", "3.1", "4.4", "9", "11", "13"}


def test_every_template_item_is_mapped_to_its_evidence() -> None:
    unmapped = [item.key for item in ITEMS if item.key not in EVIDENCE]
    assert unmapped == [], "map these template items to where docs/ gives them"
    assert sorted(set(EVIDENCE) - {item.key for item in ITEMS}) == []


@pytest.mark.parametrize("item", ITEMS, ids=[item.key for item in ITEMS])
def test_the_docs_give_every_template_item(item: Item) -> None:
    problems = [p for check in EVIDENCE.get(item.key, []) for p in [check()] if p]
    assert problems == []


def test_the_checks_can_fail() -> None:
    assert heading("01-introduction.md", "no such heading anywhere")() is not None
    assert columns("reference/environment.md", "Variable", "Colour")() is not None
    assert text("02-architecture.md", r"^```mermaid", 99)() is not None
    assert every_operation("nothing", _always, r"\bnever-in-any-block\b")() is not None
