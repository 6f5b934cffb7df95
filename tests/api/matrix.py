"""What the tenant-isolation and role matrices share: the operations of the app's OpenAPI
document, a world of real resources per organisation, and one valid request per operation.

Every operation the document lists must have a recipe in `REQUESTS` and every path
parameter a source in `PATH_VALUES`: a new route without them fails
`test_every_operation_is_in_the_matrices` (tests/api/test_role_matrix.py).
"""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute, _iter_routes_with_context
from starlette.routing import WebSocketRoute

from tests.api.conftest import Api, Tenant
from vocalis.core.scopes import ROLE_SCOPES, Role
from vocalis.webhooks.models import WebhookDelivery
from vocalis.workers import deadletters

METHODS = ("get", "put", "post", "patch", "delete")

# Routes served outside the OpenAPI document, each with the reason (the suite fails on any
# other route missing from the document).
NOT_IN_OPENAPI: dict[str, str] = {
    "/openapi.json": "the document itself",
    "/docs": "Swagger UI for the document",
    "/docs/oauth2-redirect": "Swagger UI's OAuth2 redirect",
    "/redoc": "ReDoc for the document",
    "/": "redirect to the console",
    "/console": "the web console's page (authenticates in the browser)",
    "/console/{asset:path}": "the web console's static assets",
}


@dataclass(frozen=True)
class Operation:
    """One operation of the OpenAPI document."""

    method: str
    path: str
    scopes: tuple[str, ...]
    authenticated: bool
    statuses: frozenset[str]

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1].split(":")[0] for part in self.path.split("/") if part.startswith("{")]

    def allowed(self, role: Role) -> bool:
        """What the document promises: a key of `role` holds every scope the operation needs."""
        return set(self.scopes) <= ROLE_SCOPES[role]

    def documents(self, status: int) -> bool:
        """Whether `status` is a documented response of the operation."""
        return str(status) in self.statuses or f"{status // 100}XX" in self.statuses


def operations(app: FastAPI) -> list[Operation]:
    """Every operation in the app's OpenAPI document, with the scopes it requires."""
    found = []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            security = operation.get("security") or []
            scopes = tuple(sorted({s for req in security for v in req.values() for s in v}))
            found.append(
                Operation(
                    method=method,
                    path=path,
                    scopes=scopes,
                    authenticated=bool(security),
                    statuses=frozenset(operation.get("responses", {})),
                )
            )
    return found


def _flat_routes(app: FastAPI) -> list[tuple[Any, str]]:
    """(route, full path) of every route, through the routers the app includes."""
    return [
        (route, (context.path if context is not None else "") or str(getattr(route, "path", "")))
        for route, context in _iter_routes_with_context(app.routes)
    ]


def route_paths(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every HTTP route the app serves."""
    return {
        (method.lower(), path)
        for route, path in _flat_routes(app)
        for method in getattr(route, "methods", None) or ()
        if method.lower() in METHODS
    }


def websocket_paths(app: FastAPI) -> set[str]:
    """The path of every WebSocket route the app serves."""
    return {
        path
        for route, path in _flat_routes(app)
        if isinstance(route, WebSocketRoute | APIWebSocketRoute)
    }


def _wav(seconds: float = 0.4, rate: int = 16_000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack("<h", 0) * int(seconds * rate))
    return out.getvalue()


@dataclass
class World:
    """One organisation's resources, created through the API by its owner."""

    tenant: Tenant
    ids: dict[str, str] = field(default_factory=dict)


TWILIO = {"account_sid": "AC" + "0" * 32, "auth_token": "matrix-auth-token-1234"}


async def _created(client: httpx.AsyncClient, tenant: Tenant, path: str, **kw: Any) -> Any:
    response = await client.post(path, headers=tenant.headers, **kw)
    assert response.status_code in (200, 201, 202), (
        f"{path}: {response.status_code} {response.text}"
    )
    return response.json()


async def build_world(api: Api, tenant: Tenant, seed: int) -> World:
    """An agent (with a conversation and two versions), a knowledge base with a document,
    a webhook with a delivery, a model provider, an MCP server, a phone number, an API key,
    a dead letter: everything a path parameter can name."""
    c = api.client
    world = World(tenant)
    ids = world.ids
    number = f"+1555012{seed:04d}"  # phone numbers are unique across organisations
    ids["new_number"] = f"+1555019{seed:04d}"
    agent = await _created(c, tenant, "/v1/agents", json={"name": "Matrix", "instructions": "Hi."})
    ids["agent_id"] = ids["model_id"] = agent["id"]
    await c.patch(f"/v1/agents/{agent['id']}", json={"name": "Matrix 2"}, headers=tenant.headers)
    ids["version"] = "1"
    conversation = await _created(c, tenant, f"/v1/agents/{agent['id']}/conversations", json={})
    ids["conversation_id"] = conversation["id"]
    ids["name"] = "000001-user.wav"
    kb = await _created(c, tenant, "/v1/knowledge-bases", json={"name": "Matrix KB"})
    ids["kb_id"] = kb["id"]
    document = await _created(
        c,
        tenant,
        f"/v1/knowledge-bases/{kb['id']}/documents",
        files={"file": ("matrix.txt", b"The matrix document.", "text/plain")},
    )
    ids["document_id"] = document["id"]
    hook = await _created(c, tenant, "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"})
    ids["webhook_id"] = hook["id"]
    event = await _created(c, tenant, f"/v1/webhooks/{hook['id']}/test")
    async with api.backends.database.session() as session:
        delivery = WebhookDelivery(
            org_id=tenant.org_id,
            endpoint_id=hook["id"],
            event_id=event["id"],
            event_type=event["type"],
            status="failed",
            attempts=1,
        )
        session.add(delivery)
        await session.flush()
        ids["delivery_id"] = delivery.id
    provider = await _created(
        c,
        tenant,
        "/v1/model-providers",
        json={"name": "Matrix LLM", "base_url": "http://127.0.0.1:9/v1"},
    )
    ids["provider_id"] = provider["id"]
    server = await _created(
        c, tenant, "/v1/mcp-servers", json={"name": "matrix", "url": "http://127.0.0.1:9/mcp"}
    )
    ids["server_id"] = server["id"]
    phone = await _created(
        c,
        tenant,
        "/v1/phone-numbers",
        json={
            "number": number,
            "provider": "twilio",
            "agent_id": agent["id"],
            "credentials": TWILIO,
        },
    )
    ids["phone_number_id"] = phone["id"]
    key = await _created(c, tenant, "/v1/api-keys", json={"name": "matrix", "role": "viewer"})
    ids["key_id"] = key["id"]
    now = datetime.now(UTC)
    for slot in ("dead_letter_id", "second_dead_letter_id"):
        letter = await deadletters.record(
            api.backends.database,
            task_name="vocalis.matrix",
            task_id=f"task-{slot}-{number}",
            queue="default",
            args=[],
            kwargs={},
            org_id=tenant.org_id,
            error=RuntimeError("matrix"),
            transient=False,
            attempts=1,
            first_failed_at=now,
            last_failed_at=now,
        )
        ids[slot] = letter.id
    ids["key"] = "transcripts.redaction"  # a feature flag: a name, not an organisation's id
    return world


# Path parameters that name something global (not an organisation's resource): another
# organisation's key is answered as for its own organisation, and A's state must not change.
GLOBAL_PARAMS = {"key": "a feature flag's name; the override set is the caller's own"}

Recipe = Callable[[World], dict[str, Any]]


def _json(body: dict[str, Any]) -> Recipe:
    return lambda world: {"json": body}


def _no_body(world: World) -> dict[str, Any]:
    return {}


# One valid request per operation (the body; path values come from the world).
REQUESTS: dict[str, Recipe] = {
    "GET /healthz": _no_body,
    "GET /readyz": _no_body,
    "GET /metrics": _no_body,
    "GET /v1/org": _no_body,
    "PATCH /v1/org": _json({"name": "Renamed"}),
    "POST /v1/api-keys": _json({"name": "made", "role": "viewer"}),
    "GET /v1/api-keys": _no_body,
    "DELETE /v1/api-keys/{key_id}": _no_body,
    "POST /v1/agents": _json({"name": "Made", "instructions": "Hi."}),
    "GET /v1/agents": _no_body,
    "GET /v1/agents/{agent_id}": _no_body,
    "PATCH /v1/agents/{agent_id}": _json({"instructions": "Changed."}),
    "DELETE /v1/agents/{agent_id}": _no_body,
    "GET /v1/agents/{agent_id}/versions": _no_body,
    "GET /v1/agents/{agent_id}/versions/{version}": _no_body,
    "POST /v1/model-providers": _json({"name": "Made", "base_url": "http://127.0.0.1:9/v1"}),
    "GET /v1/model-providers": _no_body,
    "GET /v1/model-providers/{provider_id}": _no_body,
    "PATCH /v1/model-providers/{provider_id}": _json({"name": "Changed"}),
    "DELETE /v1/model-providers/{provider_id}": _no_body,
    "POST /v1/mcp-servers": _json({"name": "made", "url": "http://127.0.0.1:9/mcp"}),
    "GET /v1/mcp-servers": _no_body,
    "GET /v1/mcp-servers/{server_id}": _no_body,
    "DELETE /v1/mcp-servers/{server_id}": _no_body,
    "GET /v1/mcp-servers/{server_id}/tools": _no_body,
    "POST /v1/agents/{agent_id}/conversations": _json({}),
    "GET /v1/conversations": _no_body,
    "GET /v1/conversations/{conversation_id}": _no_body,
    "POST /v1/conversations/{conversation_id}/messages": _json({"content": "Hello?"}),
    "POST /v1/conversations/{conversation_id}/end": _json({}),
    "POST /v1/chat/completions": lambda w: {
        "json": {"model": w.ids["agent_id"], "messages": [{"role": "user", "content": "Hi"}]}
    },
    "POST /v1/completions": lambda w: {"json": {"model": w.ids["agent_id"], "prompt": "Hi"}},
    "POST /v1/realtime/client_secrets": lambda w: {
        "json": {"session": {"type": "realtime", "model": w.ids["agent_id"]}}
    },
    "POST /v1/phone-numbers": lambda w: {
        "json": {
            "number": w.ids["new_number"],
            "provider": "twilio",
            "agent_id": w.ids["agent_id"],
            "credentials": TWILIO,
        }
    },
    "GET /v1/phone-numbers": _no_body,
    "GET /v1/phone-numbers/{phone_number_id}": _no_body,
    "PATCH /v1/phone-numbers/{phone_number_id}": lambda w: {
        "json": {"agent_id": w.ids["agent_id"]}
    },
    "DELETE /v1/phone-numbers/{phone_number_id}": _no_body,
    "POST /v1/calls": lambda w: {
        "json": {"phone_number_id": w.ids["phone_number_id"], "to": "+15550100999"}
    },
    "GET /v1/conversations/{conversation_id}/call-recording": _no_body,
    "POST /v1/telephony/twilio/voice": lambda w: {"data": {"To": "+15550100001"}},
    "POST /v1/telephony/telnyx/voice": _json({"data": {}}),
    "POST /v1/knowledge-bases": _json({"name": "Made"}),
    "GET /v1/knowledge-bases": _no_body,
    "GET /v1/knowledge-bases/{kb_id}": _no_body,
    "PATCH /v1/knowledge-bases/{kb_id}": _json({"name": "Changed"}),
    "DELETE /v1/knowledge-bases/{kb_id}": _no_body,
    "POST /v1/knowledge-bases/{kb_id}/documents": lambda w: {
        "files": {"file": ("made.txt", b"Another matrix document.", "text/plain")}
    },
    "GET /v1/knowledge-bases/{kb_id}/documents": _no_body,
    "GET /v1/knowledge-bases/{kb_id}/documents/{document_id}": _no_body,
    "DELETE /v1/knowledge-bases/{kb_id}/documents/{document_id}": _no_body,
    "POST /v1/knowledge-bases/{kb_id}/query": _json({"query": "matrix"}),
    "POST /v1/embeddings": _json({"input": "matrix", "model": "text-embedding-3-small"}),
    "GET /v1/models": _no_body,
    "GET /v1/models/{model_id}": _no_body,
    "POST /v1/audio/transcriptions": lambda w: {
        "files": {"file": ("silence.wav", _wav(), "audio/wav")},
        "data": {"model": "whisper-1"},
    },
    "POST /v1/audio/translations": lambda w: {
        "files": {"file": ("silence.wav", _wav(), "audio/wav")},
        "data": {"model": "whisper-1"},
    },
    "POST /v1/audio/speech": _json({"model": "tts-1", "input": "Hi."}),
    "GET /v1/conversations/{conversation_id}/recordings/{name}": _no_body,
    "POST /v1/webhooks": _json({"url": "http://127.0.0.1:9/made"}),
    "GET /v1/webhooks": _no_body,
    "GET /v1/webhooks/{webhook_id}": _no_body,
    "PATCH /v1/webhooks/{webhook_id}": _json({"description": "Changed"}),
    "DELETE /v1/webhooks/{webhook_id}": _no_body,
    "POST /v1/webhooks/{webhook_id}/rotate-secret": _no_body,
    "POST /v1/webhooks/{webhook_id}/test": _no_body,
    "GET /v1/webhooks/{webhook_id}/deliveries": _no_body,
    "POST /v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay": _no_body,
    "GET /v1/admin/dead-letters": _no_body,
    "GET /v1/admin/dead-letters/{dead_letter_id}": _no_body,
    "POST /v1/admin/dead-letters/{dead_letter_id}/replay": _no_body,
    "POST /v1/admin/dead-letters/{dead_letter_id}/discard": _no_body,
    "GET /v1/admin/flags": _no_body,
    "PUT /v1/admin/flags/{key}": _json({"value": False}),
    "DELETE /v1/admin/flags/{key}": _no_body,
}


# Operations that need their own resource (the one the others use is closed by then).
OWN_RESOURCE = {
    "POST /v1/admin/dead-letters/{dead_letter_id}/discard": {
        "dead_letter_id": "second_dead_letter_id"
    },
}


def url_for(operation: Operation, world: World) -> str:
    path = operation.path
    own = OWN_RESOURCE.get(operation.name, {})
    for param in operation.path_params:
        value = world.ids[own.get(param, param)]
        path = path.replace(f"{{{param}}}", value).replace(f"{{{param}:path}}", value)
    return path


async def send(
    api: Api, operation: Operation, world: World, caller: Tenant | None
) -> httpx.Response:
    """The operation's request with `world`'s ids, sent with `caller`'s key."""
    kwargs = REQUESTS[operation.name](world)
    headers = caller.headers if caller else {}
    return await api.client.request(
        operation.method.upper(), url_for(operation, world), headers=headers, **kwargs
    )


# Operations that close what later ones use: run after every other change.
CLOSING = {
    "POST /v1/conversations/{conversation_id}/end",
    "POST /v1/admin/dead-letters/{dead_letter_id}/discard",
}


def destructive_last(ops: list[Operation]) -> list[Operation]:
    """Reads first, then changes, then what closes a resource, then deletions (children
    before parents, agents last)."""

    def key(op: Operation) -> tuple[int, int, str]:
        if op.method == "get":
            return (0, 0, op.name)
        if op.method != "delete":
            return (2 if op.name in CLOSING else 1, 0, op.name)
        return (3, (1 if "agents" in op.path else 0) * 100 - op.path.count("/"), op.name)

    return sorted(ops, key=key)


def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    """The app of the matrices: 127.0.0.1 allowed (webhook and model URLs of the world), the
    carriers' REST API a closed local port, no rate limit in the way."""
    return {
        "outbound_allowlist": "127.0.0.1",
        "telephony_twilio_api_base_url": "http://127.0.0.1:9",
        "rate_limit_per_minute": 1_000_000,
        "rate_limit_burst": 1_000_000,
    }
