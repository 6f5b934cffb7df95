"""Tenant isolation matrix, generated from the OpenAPI document.

Organisation A builds a world of real resources (tests/api/matrix.py). For every operation
whose path names one of them, organisation B's owner key sends the same valid request with
A's ids and must get `404` (never 403, which would confirm the id exists), and afterwards
A's world reads back exactly as before: every GET operation of the document, as A's owner,
gives the same status and body. A path parameter that names something global (a feature
flag) is answered as for B's own organisation, and still changes nothing of A's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Api, make_settings, start_api
from tests.api.matrix import (
    GLOBAL_PARAMS,
    World,
    build_world,
    destructive_last,
    operations,
    send,
    settings_overrides,
)

# Fields that change by being read or by time passing, not by another organisation.
VOLATILE = {"last_used_at", "request_id", "updated_at_ms"}


@pytest.fixture
async def isolation_api(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[Api]:
    """The app on SQLite and on PostgreSQL (`database_url` is parametrised)."""
    settings = make_settings(tmp_path, database_url, redis_url, **settings_overrides(tmp_path))
    async for running in start_api(settings):
        yield running


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


async def _snapshot(api: Api, world: World) -> dict[str, Any]:
    """Every GET of the document, as the world's owner: status and body."""
    seen: dict[str, Any] = {}
    for operation in operations(api.app):
        if operation.method != "get" or operation.path in ("/metrics", "/readyz", "/healthz"):
            continue
        response = await send(api, operation, world, world.tenant)
        body: Any = response.content
        if response.headers.get("content-type", "").startswith(
            ("application/json", "application/problem+json")
        ):
            body = _stable(response.json())
        seen[operation.name] = (response.status_code, body)
    return seen


async def test_another_organisation_gets_404_and_changes_nothing(isolation_api: Api) -> None:
    api = isolation_api
    a = await build_world(api, await api.tenant("Tenant A"), 21)
    b = await api.tenant("Tenant B")
    ops = [op for op in destructive_last(operations(api.app)) if op.path_params]
    before = await _snapshot(api, a)
    leaks = []
    for operation in ops:
        response = await send(api, operation, a, b)
        if set(operation.path_params) <= set(GLOBAL_PARAMS):
            if response.status_code >= 400:
                leaks.append(f"{operation.name}: {response.status_code} on a global name")
            continue
        if response.status_code != 404:
            leaks.append(f"{operation.name}: {response.status_code} {response.text[:200]}")
        elif not response.headers["content-type"].startswith("application/problem+json"):
            leaks.append(f"{operation.name}: 404 without a problem body")
    after = await _snapshot(api, a)
    assert leaks == []
    changed = [name for name in before if before[name] != after[name]]
    assert changed == [], {name: (before[name], after[name]) for name in changed}
    # Every operation with a path id was tried (none skipped by the loop above).
    assert len(ops) == sum(1 for op in operations(api.app) if op.path_params) >= 40


async def test_the_world_is_real(isolation_api: Api) -> None:
    """The ids B tries exist for A: every GET with a path id answers A's owner 200 (except
    a chat's call and voice recordings, which a chat has none of)."""
    api = isolation_api
    a = await build_world(api, await api.tenant("Tenant A"), 22)
    missing = []
    for operation in operations(api.app):
        if operation.method != "get" or not operation.path_params:
            continue
        response = await send(api, operation, a, a.tenant)
        expected = 502 if operation.path.endswith("/tools") else 200
        if "recording" in operation.path:
            expected = 404
        if response.status_code != expected:
            missing.append(f"{operation.name}: {response.status_code}")
    assert missing == []
