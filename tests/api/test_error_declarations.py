"""Every operation declares the specific error codes it can return (OpenAPI `responses`,
`x-error-codes` on each 4xx status), each from the one catalogue with that status — never
only a bare `4XX`. The declarations come from one place (`core/openapi.py`: by dependency,
plus what routes declare with `error_responses`)."""

from __future__ import annotations

from typing import Any

import pytest

from vocalis.app import create_app
from vocalis.core.errors import CATALOGUE
from vocalis.core.openapi import ERROR_CODES_KEY, complete_document, error_responses

# Public probes: no key, no parameters, no body; they answer 200 or 503 only.
NO_CLIENT_ERRORS = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app().openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict)
    ]


def test_every_operation_declares_specific_catalogued_error_codes(
    document: dict[str, Any],
) -> None:
    lacking = []
    for method, path, operation in _operations(document):
        specific = {
            status: response
            for status, response in operation["responses"].items()
            if status[:1] == "4" and status.isdigit()
        }
        if (method, path) in NO_CLIENT_ERRORS:
            continue
        if not specific:
            lacking.append(f"{method.upper()} {path}")
            continue
        for status, response in specific.items():
            codes = response.get(ERROR_CODES_KEY)
            assert codes, (method, path, status)
            for code in codes:
                assert CATALOGUE[code].status == int(status), (method, path, status, code)
                assert f"`{code}`" in response["description"]
    assert not lacking, f"operations that declare no specific error code: {lacking}"


def test_dependencies_bring_their_codes(document: dict[str, Any]) -> None:
    get_agent = document["paths"]["/v1/agents/{agent_id}"]["get"]["responses"]
    assert get_agent["401"][ERROR_CODES_KEY] == ["auth_missing", "auth_invalid"]
    assert get_agent["404"][ERROR_CODES_KEY] == ["not_found"]
    create_agent = document["paths"]["/v1/agents"]["post"]["responses"]
    assert {"400", "413", "415", "422", "429"} <= set(create_agent)
    listing = document["paths"]["/v1/agents"]["get"]["responses"]
    assert "invalid_cursor" in listing["400"][ERROR_CODES_KEY]


def test_no_bare_4xx_beside_specific_statuses(document: dict[str, Any]) -> None:
    """The specific statuses are what a client gets; a bare `4XX` stays only on the public
    probes, which declare none."""
    bare = [
        f"{method.upper()} {path}"
        for method, path, operation in _operations(document)
        if "4XX" in operation["responses"]
        and any(s[:1] == "4" and s.isdigit() for s in operation["responses"])
    ]
    assert bare == []


def test_routes_declare_what_their_services_raise(document: dict[str, Any]) -> None:
    paths = document["paths"]
    create_agent = paths["/v1/agents"]["post"]["responses"]
    for code in ("knowledge_base_not_found", "agent_handoff_not_found", "mcp_server_not_found"):
        assert code in create_agent["422"][ERROR_CODES_KEY]
    assert "outbound_url_forbidden" in create_agent["400"][ERROR_CODES_KEY]
    assert (
        "model_provider_not_found"
        in (paths["/v1/agents/{agent_id}"]["patch"]["responses"]["422"][ERROR_CODES_KEY])
    )
    assert "forbidden_role" in paths["/v1/api-keys"]["post"]["responses"]["403"][ERROR_CODES_KEY]
    upload = paths["/v1/knowledge-bases/{kb_id}/documents"]["post"]["responses"]
    assert "document_type_not_allowed" in upload["415"][ERROR_CODES_KEY]
    assert "document_file_too_large" in upload["413"][ERROR_CODES_KEY]
    assert (
        "mcp_stdio_not_allowed"
        in (paths["/v1/mcp-servers"]["post"]["responses"]["400"][ERROR_CODES_KEY])
    )


def test_an_operation_without_declarations_is_caught() -> None:
    """What the first test looks at can be missing: a bare operation gets no 4xx."""
    bare = {"paths": {"/x": {"get": {"responses": {"200": {"description": "ok"}}}}}}
    responses = complete_document(bare)["paths"]["/x"]["get"]["responses"]
    assert not [s for s in responses if s.startswith("4")]


def test_a_route_declares_codes_by_name_and_a_wrong_one_fails_at_once() -> None:
    declared = error_responses("conflict", "not_found", status_404="No such agent.")
    assert declared[409][ERROR_CODES_KEY] == ["conflict"]
    assert declared[404]["description"] == "No such agent."
    with pytest.raises(KeyError):
        error_responses("no_such_code")
    document = {
        "paths": {
            "/y": {
                "post": {
                    "responses": {
                        "200": {"description": "ok"},
                        "409": {"description": "x", ERROR_CODES_KEY: ["not_found"]},
                    }
                }
            }
        }
    }
    with pytest.raises(ValueError, match="409"):
        complete_document(document)
