"""Role matrix, generated from the OpenAPI document: every operation, every role.

Each operation documents the scopes it needs (`security` in the document, from `Scoped(…)`
in its signature); a role's key holds `ROLE_SCOPES[role]`. The documented outcome is then:

- a role lacking a needed scope gets `403 forbidden_scope`, and nothing changes;
- a role holding them gets exactly what the owner gets for the same request on the same
  kind of resources (each role has its own organisation with a fresh world, so deletions
  and changes never leak between roles);
- an operation without security (health, metrics, the carriers' signed webhooks) answers
  every role alike.

The owner's outcome is itself checked: documented for the operation, and a success except
where `OWNER_NOT_SUCCESS` says why not.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.conftest import Api, make_settings, start_api
from tests.api.matrix import (
    GLOBAL_PARAMS,
    NOT_IN_OPENAPI,
    REQUESTS,
    Operation,
    World,
    build_world,
    destructive_last,
    operations,
    route_paths,
    send,
    settings_overrides,
)
from vocalis.core.errors import FORBIDDEN_SCOPE
from vocalis.core.scopes import Role

# Operations whose owner outcome is not a success on this test app, with the reason; the
# outcome is still documented and must be the same for every role allowed to call them.
OWNER_NOT_SUCCESS: dict[str, tuple[int, str]] = {
    "GET /v1/mcp-servers/{server_id}/tools": (502, "the world's MCP server URL is a closed port"),
    "POST /v1/calls": (502, "the carrier's REST API is a closed local port"),
    "GET /v1/conversations/{conversation_id}/call-recording": (404, "a chat has no call"),
    "GET /v1/conversations/{conversation_id}/recordings/{name}": (404, "a chat records no audio"),
    "POST /v1/telephony/twilio/voice": (403, "unsigned: the carrier's signature is checked"),
    "POST /v1/telephony/telnyx/voice": (403, "unsigned: the carrier's signature is checked"),
}


# Operations without an API key, each with the reason: a new one fails the coverage test.
PUBLIC = {
    "GET /healthz": "liveness probe",
    "GET /readyz": "readiness probe",
    "GET /metrics": "Prometheus scrape (protect it at the network edge)",
    "POST /v1/telephony/twilio/voice": "Twilio's webhook, signed with the number's token",
    "POST /v1/telephony/telnyx/voice": "Telnyx's webhook, Ed25519-signed",
}


@pytest.fixture
async def matrix_api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    url = f"sqlite+aiosqlite:///{tmp_path}/vocalis.db"
    settings = make_settings(tmp_path, url, redis_url, **settings_overrides(tmp_path))
    async for running in start_api(settings):
        yield running


async def _outcomes(api: Api, world: World, role: Role) -> dict[str, tuple[int, str | None]]:
    caller = world.tenant if role is Role.OWNER else await api.key_for(world.tenant, role)
    outcomes: dict[str, tuple[int, str | None]] = {}
    for operation in destructive_last(operations(api.app)):
        response = await send(api, operation, world, caller)
        code = None
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            code = response.json().get("code")
        outcomes[operation.name] = (response.status_code, code)
    return outcomes


def _expected(operation: Operation, role: Role, owner: tuple[int, str | None]) -> tuple[int, ...]:
    if operation.authenticated and not operation.allowed(role):
        return (403,)
    return (owner[0],)


async def test_every_operation_is_in_the_matrices(matrix_api: Api) -> None:
    """A route the matrices do not know fails here: every served route is in the OpenAPI
    document (or listed, with its reason, as outside it), every operation has a request
    recipe, and every path parameter a value in the world."""
    ops = operations(matrix_api.app)
    documented = {(op.method, op.path) for op in ops}
    served = {
        (method, re.sub(r"\{(\w+):\w+\}", r"{\1}", path))
        for method, path in route_paths(matrix_api.app)
        if path not in NOT_IN_OPENAPI
    }
    assert len(served) >= len(documented) > 60
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert sorted(op.name for op in ops if op.name not in REQUESTS) == []
    assert sorted(set(REQUESTS) - {op.name for op in ops}) == []
    tenant = await matrix_api.tenant("Coverage")
    world = await build_world(matrix_api, tenant, 1)
    params = {p for op in ops for p in op.path_params}
    assert params <= set(world.ids) | set(GLOBAL_PARAMS)
    # Every authenticated operation names the scopes it needs; the others are known.
    assert [op.name for op in ops if op.authenticated and not op.scopes] == []
    assert sorted(op.name for op in ops if not op.authenticated) == sorted(PUBLIC)


async def test_each_role_gets_exactly_the_documented_outcome(matrix_api: Api) -> None:
    ops = {op.name: op for op in operations(matrix_api.app)}
    owner_world = await build_world(matrix_api, await matrix_api.tenant("Owner"), 2)
    owner = await _outcomes(matrix_api, owner_world, Role.OWNER)
    wrong = []
    for name, (status, _code) in owner.items():
        want = OWNER_NOT_SUCCESS.get(name, (0, ""))[0]
        success = 200 <= status < 300 if not want else status == want
        if not success or not ops[name].documents(status):
            wrong.append(f"owner {name}: got {status}, expected {want or '2xx'} (documented)")
    assert wrong == []
    mismatches = []
    counted = 0
    for index, role in enumerate((Role.ADMIN, Role.DEVELOPER, Role.VIEWER)):
        tenant = await matrix_api.tenant(f"Role {role.value}")
        world = await build_world(matrix_api, tenant, 3 + index)
        got = await _outcomes(matrix_api, world, role)
        for name, outcome in got.items():
            counted += 1
            expected = _expected(ops[name], role, owner[name])
            if outcome[0] not in expected:
                mismatches.append(f"{role.value} {name}: got {outcome[0]}, expected {expected}")
            elif expected == (403,) and ops[name].authenticated:
                assert outcome[1] == FORBIDDEN_SCOPE, f"{role.value} {name}: {outcome}"
    assert mismatches == []
    assert counted == 3 * len(ops)
