"""The OpenAPI document says exactly what the API sends (checked by Schemathesis, issue 15).

FastAPI documents a route's `responses={404: {"description": ...}}` without a body and
the app-wide `4XX`/`5XX` problem responses under two media types, one without a schema.
`install_openapi(app)` completes the generated document once, so that clients and the
property-based tests read the truth:

- every error response (`4XX`, `5XX` and each specific 4xx/5xx a route declares) has the
  body every error has: `application/problem+json` with the `Problem` schema (routes keep
  their own description of when it happens);
- every `text/event-stream` response describes its events (`event`, `data`, `id`), the
  OpenAPI 3.1 reading of an event stream's schema, instead of a bare string;
- every operation declares the specific error codes it can return, from the one catalogue
  (`x-error-codes` on each 4xx status, listed in its description): those its dependencies
  bring (an API key: 401/403/429; a path id: 404; a body: 400/413/415/422; query
  parameters: 422), those a route declares with `error_responses(...)`, and for a status a
  route declares without codes, that status's general code; an operation with specific
  4xx statuses carries no bare `4XX` (the app-wide `5XX` stays);
- every creation (`POST` answered `201`/`202` with the new resource's `id`) links to the
  operations on what it created (OpenAPI `links`: `POST /v1/agents` → `GET
  /v1/agents/{agent_id}`…, `POST /v1/agents/{agent_id}/conversations` → `GET
  /v1/conversations/{conversation_id}`…), for clients and for stateful tests.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One server-sent event: its name and one line of JSON data.",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}


ERROR_CODES_KEY = "x-error-codes"
# What an operation can return because of what it depends on (core/security.py,
# core/middleware.py, the path and query validation of FastAPI).
AUTH_ERRORS: dict[int, tuple[str, ...]] = {
    401: ("auth_missing", "auth_invalid"),
    403: ("forbidden_scope",),
    429: ("rate_limited", "auth_throttled"),
}
PATH_ERRORS: dict[int, tuple[str, ...]] = {404: ("not_found",), 422: ("validation_failed",)}
QUERY_ERRORS: dict[int, tuple[str, ...]] = {422: ("validation_failed",)}
CURSOR_ERRORS: dict[int, tuple[str, ...]] = {400: ("invalid_cursor",)}
BODY_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("malformed_json",),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    422: ("validation_failed",),
}
# The general code of a status a route declares without naming codes.
STATUS_CODES: dict[int, tuple[str, ...]] = {
    400: ("bad_request",),
    401: ("auth_missing", "auth_invalid"),
    403: ("forbidden_scope",),
    404: ("not_found",),
    409: ("conflict",),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    422: ("validation_failed",),
    429: ("rate_limited",),
}


def error_responses(*codes: str, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=` for catalogued error codes, grouped by their status; a
    keyword gives a status's description (`status_404="No such agent."`)."""
    from vocalis.core.errors import CATALOGUE

    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        spec = CATALOGUE[code]  # an unknown code fails where it is declared
        entry = out.setdefault(
            spec.status,
            {"description": descriptions.get(f"status_{spec.status}", spec.title)},
        )
        entry.setdefault(ERROR_CODES_KEY, []).append(code)
    return out


def _declare_error_codes(path: str, method: str, operation: dict[str, Any]) -> None:
    """Specific 4xx statuses with their catalogued codes on one operation (in place)."""
    from vocalis.core.errors import CATALOGUE

    found: dict[int, list[str]] = {}

    def add(table: dict[int, tuple[str, ...]]) -> None:
        for status, codes in table.items():
            found.setdefault(status, [])
            found[status] += [c for c in codes if c not in found[status]]

    if operation.get("security"):
        add(AUTH_ERRORS)
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in parameters):
        add(PATH_ERRORS)
    if any(p.get("in") == "query" for p in parameters):
        add(QUERY_ERRORS)
    if any(p.get("in") == "query" and p.get("name") == "cursor" for p in parameters):
        add(CURSOR_ERRORS)
    if "requestBody" in operation:
        add(BODY_ERRORS)
    responses = operation.setdefault("responses", {})
    for status, response in responses.items():
        if str(status).isdigit() and str(status).startswith("4"):
            declared = response.get(ERROR_CODES_KEY) or STATUS_CODES.get(int(status), ())
            add({int(status): tuple(declared)})
    for status, codes in sorted(found.items()):
        unknown = [c for c in codes if c not in CATALOGUE or CATALOGUE[c].status != status]
        if unknown:
            raise ValueError(f"{method.upper()} {path}: {status} lists {unknown}")
        response = responses.setdefault(str(status), {"description": CATALOGUE[codes[0]].title})
        response[ERROR_CODES_KEY] = codes
        listed = ", ".join(f"`{c}`" for c in codes)
        description = str(response.get("description", "")).split(" (codes: ")[0]
        response["description"] = f"{description} (codes: {listed})".strip()
    # FastAPI keys declared statuses by int; the document by string (one entry per status).
    for status in [k for k in responses if isinstance(k, int)]:
        responses[str(status)] = {**responses.pop(status), **responses.get(str(status), {})}
    # The specific statuses say what a client can get: no bare `4XX` beside them.
    if any(str(s).isdigit() and str(s).startswith("4") for s in responses):
        responses.pop("4XX", None)


def _is_error(status: str) -> bool:
    return status[:1] in ("4", "5")


def _params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _returns_id(document: dict[str, Any], response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    name = str(schema.get("$ref", "")).rsplit("/", 1)[-1]
    properties = document.get("components", {}).get("schemas", {}).get(name, {})
    return "id" in properties.get("properties", {})


def _link_creations(document: dict[str, Any]) -> None:
    """Links from each creation to the operations on the resource it created."""
    paths = document.get("paths", {})
    for path, item in paths.items():
        operation = item.get("post")
        if not isinstance(operation, dict):
            continue
        created = [
            r
            for status, r in operation.get("responses", {}).items()
            if status in ("201", "202") and _returns_id(document, r)
        ]
        if not created:
            continue
        collection = path.rstrip("/").rsplit("/", 1)[-1]
        own = _params(path)
        links: dict[str, Any] = {}
        for target_path, target_item in paths.items():
            if not target_path.startswith((f"{path}/{{", f"/v1/{collection}/{{")):
                continue
            new = [p for p in _params(target_path) if p not in own]
            if len(new) != 1:
                continue
            for method, target in target_item.items():
                if not isinstance(target, dict) or "operationId" not in target:
                    continue
                parameters = {p: f"$request.path.{p}" for p in _params(target_path) if p in own}
                parameters[new[0]] = "$response.body#/id"
                links[target["operationId"]] = {
                    "operationId": target["operationId"],
                    "parameters": parameters,
                    "description": f"{method.upper()} {target_path} on the created resource.",
                }
        for response in created:
            if links:
                response["links"] = dict(links)


def complete_document(document: dict[str, Any]) -> dict[str, Any]:
    """Error bodies, event streams and links as described above (in place)."""
    _link_creations(document)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            _declare_error_codes(path, method, operation)
            for status, response in operation.get("responses", {}).items():
                if _is_error(str(status)):
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": dict(PROBLEM_REF)}}
                    continue
                stream = response.get("content", {}).get("text/event-stream")
                if stream is not None and stream.get("schema", {}).get("type") == "string":
                    stream["schema"] = dict(SSE_EVENT_SCHEMA)
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (completed once, on first use)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
