"""Every error is problem+json with a catalogued code; nothing a client sends is a 500."""

from __future__ import annotations

import json
import random
import string

import pytest

from tests.api.conftest import Api
from vocalis.core.errors import CATALOGUE

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["code"] == code and code in CATALOGUE
    assert body["status"] == status
    assert body["request_id"]
    assert body["type"] == f"urn:vocalis:error:{code}"


async def test_unknown_route_is_problem(sqlite_api: Api) -> None:
    assert_problem(await sqlite_api.client.get("/nope"), 404, "route_not_found")


async def test_wrong_method_is_problem(sqlite_api: Api) -> None:
    assert_problem(await sqlite_api.client.put("/healthz"), 405, "method_not_allowed")


async def test_malformed_json_is_problem(sqlite_api: Api) -> None:
    acme = await sqlite_api.tenant()
    response = await sqlite_api.client.patch(
        "/v1/org",
        content=b'{"name": ',
        headers={**acme.headers, "Content-Type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")


async def test_wrong_content_type_is_problem(sqlite_api: Api) -> None:
    acme = await sqlite_api.tenant()
    response = await sqlite_api.client.patch(
        "/v1/org", content=b"name=x", headers={**acme.headers, "Content-Type": "text/plain"}
    )
    assert_problem(response, 415, "unsupported_media_type")


async def test_oversized_body_is_problem(sqlite_api: Api) -> None:
    acme = await sqlite_api.tenant()
    big = json.dumps({"name": "x" * (sqlite_api.settings.max_request_body_bytes + 10)})
    response = await sqlite_api.client.patch(
        "/v1/org", content=big, headers={**acme.headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


async def test_oversized_chunked_body_without_length_is_problem(sqlite_api: Api) -> None:
    acme = await sqlite_api.tenant()
    limit = sqlite_api.settings.max_request_body_bytes

    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    response = await sqlite_api.client.patch(
        "/v1/org", content=chunks(), headers={**acme.headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


async def test_schema_violation_is_problem_with_field_errors(sqlite_api: Api) -> None:
    acme = await sqlite_api.tenant()
    response = await sqlite_api.client.patch(
        "/v1/org", json={"retention_days": "soon"}, headers=acme.headers
    )
    assert_problem(response, 422, "validation_failed")
    assert response.json()["errors"][0]["loc"] == ["body", "retention_days"]


async def test_bad_cursor_is_problem(sqlite_api: Api) -> None:
    acme = await sqlite_api.tenant()
    response = await sqlite_api.client.get("/v1/api-keys?cursor=%%%%", headers=acme.headers)
    assert_problem(response, 400, "invalid_cursor")


async def test_unexpected_error_is_generic_500_without_internals(sqlite_api: Api) -> None:
    async def boom() -> None:
        raise RuntimeError("secret internal detail at /srv/app.py")

    sqlite_api.app.add_api_route("/boom", boom)
    response = await sqlite_api.client.get("/boom")
    assert_problem(response, 500, "internal_error")
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text


def _junk(rng: random.Random, depth: int = 0) -> object:
    kinds = ["str", "int", "float", "bool", "null", "list", "dict", "huge"]
    kind = rng.choice(kinds if depth < 2 else kinds[:5])
    if kind == "str":
        return "".join(
            rng.choice(string.printable + "é漢\u0000") for _ in range(rng.randint(0, 30))
        )
    if kind == "int":
        return rng.choice([0, -1, 2**63, -(2**70), rng.randint(-1000, 1000)])
    if kind == "float":
        return rng.choice([1e308, -0.0, 3.14])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "huge":
        return "z" * 5000
    if kind == "list":
        return [_junk(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        rng.choice(["name", "role", "scopes", "expires_at", "retention_days", "x"]): _junk(
            rng, depth + 1
        )
        for _ in range(rng.randint(0, 5))
    }


@pytest.mark.parametrize("seed", range(3))
async def test_no_client_input_produces_a_500(sqlite_api: Api, seed: int) -> None:
    """Fuzz every operation in the OpenAPI document with junk paths, queries and bodies."""
    rng = random.Random(seed)
    acme = await sqlite_api.tenant()
    spec = sqlite_api.app.openapi()
    for path, methods in spec["paths"].items():
        for method in methods:
            for _ in range(15):
                concrete = path
                for part in [p for p in path.split("/") if p.startswith("{")]:
                    concrete = concrete.replace(
                        part, rng.choice(["x", "0", "%20", "key_" + "a" * 300, "..", "é"])
                    )
                params = {
                    rng.choice(["limit", "cursor", "x"]): str(_junk(rng))[:200]
                    for _ in range(rng.randint(0, 2))
                }
                body = (
                    json.dumps(_junk(rng)).encode()
                    if rng.random() < 0.8
                    else bytes(rng.getrandbits(8) for _ in range(40))
                )
                response = await sqlite_api.client.request(
                    method.upper(),
                    concrete,
                    params=params,
                    content=body,
                    headers={**acme.headers, "Content-Type": "application/json"},
                )
                assert response.status_code < 500, (method, concrete, body[:200], response.text)
                if response.status_code >= 400:
                    assert response.headers["content-type"] == PROBLEM
                    assert response.json()["code"] in CATALOGUE
