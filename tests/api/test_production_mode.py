"""`VOCALIS_ENV=production` means it (issue 15).

A production process refuses to start on any embedded fallback it was not allowed, naming
each; `/readyz` tells everyone whether the service is ready but names adapters and errors
only on the internal port or to an owner or admin key. (CORS: test_cors_and_public_url.py.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Api, make_settings, start_api
from vocalis.core.production import (
    FALLBACKS,
    EmbeddedFallbackRefused,
    embedded_fallbacks,
    refuse_embedded_fallbacks,
)
from vocalis.core.scopes import Role
from vocalis.settings import Settings

EVERY_FALLBACK = {
    "env": "production",
    "database_url": "",
    "redis_url": "",
    "object_store_url": "",
    "knowledge_vector_store": "lancedb",
    "secrets_backend": "env",
}
NO_FALLBACK = {
    "env": "production",
    "database_url": "postgresql+asyncpg://vocalis:pw@db:5432/vocalis",
    "redis_url": "redis://redis:6379/0",
    "object_store_url": "s3://vocalis-objects",
    "knowledge_vector_store": "weaviate",
    "secrets_backend": "vault",
}


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_each_embedded_fallback_is_named() -> None:
    settings = _settings(**EVERY_FALLBACK)
    assert embedded_fallbacks(settings) == list(FALLBACKS)
    with pytest.raises(EmbeddedFallbackRefused) as refused:
        refuse_embedded_fallbacks(settings)
    assert refused.value.names == list(FALLBACKS)
    message = str(refused.value)
    for name, (what, fix) in FALLBACKS.items():
        assert f"{name}: {what}; {fix}" in message
    assert "VOCALIS_PRODUCTION_ALLOWED_FALLBACKS=" in message


def test_real_backends_start_and_outside_production_nothing_is_refused() -> None:
    refuse_embedded_fallbacks(_settings(**NO_FALLBACK))
    refuse_embedded_fallbacks(_settings(**{**EVERY_FALLBACK, "env": "development"}))
    sqlite_file = _settings(**{**NO_FALLBACK, "database_url": "sqlite+aiosqlite:///x.db"})
    local_files = _settings(**{**NO_FALLBACK, "object_store_url": "file:///srv/objects"})
    assert embedded_fallbacks(sqlite_file) == ["sqlite"]
    assert embedded_fallbacks(local_files) == ["local_objects"]


def test_allowed_fallbacks_are_the_only_ones_accepted() -> None:
    allowed = _settings(
        **{**NO_FALLBACK, "secrets_backend": "env", "redis_url": ""},
        production_allowed_fallbacks="env_secrets",
    )
    with pytest.raises(EmbeddedFallbackRefused) as refused:
        refuse_embedded_fallbacks(allowed)
    assert refused.value.names == ["embedded_redis"]
    refuse_embedded_fallbacks(
        _settings(
            **{**NO_FALLBACK, "secrets_backend": "env", "redis_url": ""},
            production_allowed_fallbacks="env_secrets, embedded_redis",
        )
    )
    with pytest.raises(ValueError, match="unknown fallbacks"):
        refuse_embedded_fallbacks(
            _settings(**NO_FALLBACK, production_allowed_fallbacks="embeded_redis")
        )


@pytest.mark.parametrize("command", ["serve", "run", "worker"])
def test_a_production_process_on_fallbacks_refuses_to_start(tmp_path: Path, command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOCALIS_")}
    data_dir = tmp_path / "data"
    env.update(
        VOCALIS_ENV="production",
        VOCALIS_DATA_DIR=str(data_dir),
        VOCALIS_PRODUCTION_ALLOWED_FALLBACKS="local_lancedb",
    )
    done = subprocess.run(
        [sys.executable, "-m", "vocalis", command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    for name in ("sqlite", "embedded_redis", "local_objects", "env_secrets"):
        assert f"  - {name}: " in done.stderr
    assert "local_lancedb:" not in done.stderr
    assert not data_dir.exists()  # refused before anything was started or written


@pytest.fixture
async def internal_api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    settings = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path}/vocalis.db", redis_url, internal_port=8081
    )
    async for running in start_api(settings):
        yield running


async def test_readyz_details_need_an_admin_key_or_the_internal_port(internal_api: Api) -> None:
    api = internal_api
    public = await api.client.get("/readyz")
    assert public.status_code == 200
    assert public.json() == {"status": "ok", "failing": []}  # no adapter, no error text

    owner = await api.tenant("Acme")
    admin = await api.key_for(owner, Role.ADMIN)
    developer = await api.key_for(owner, Role.DEVELOPER)
    for tenant in (owner, admin):
        detailed = (await api.client.get("/readyz", headers=tenant.headers)).json()
        assert detailed["backends"]["database"]["adapter"] == "sqlite"
    for headers in (developer.headers, {"Authorization": "Bearer vk_wrong"}):
        assert "backends" not in (await api.client.get("/readyz", headers=headers)).json()

    internal = await api.client.get("http://testserver:8081/readyz")
    assert set(internal.json()["backends"]) >= {"database", "redis", "documents"}


async def test_a_failing_backend_is_named_but_its_error_is_not_public(sqlite_api: Api) -> None:
    async def broken() -> None:
        raise ConnectionError("connection refused by redis.internal:6379")

    sqlite_api.backends.redis.ping = broken  # type: ignore[method-assign]
    public = await sqlite_api.client.get("/readyz")
    assert public.status_code == 503
    assert public.json() == {"status": "unavailable", "failing": ["redis"]}
    assert "redis.internal" not in public.text
    owner = await sqlite_api.tenant()
    detailed = await sqlite_api.client.get("/readyz", headers=owner.headers)
    assert "redis.internal" in detailed.json()["backends"]["redis"]["detail"]


def test_serve_listens_on_the_internal_port_too(tmp_path: Path, redis_url: str) -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    public, internal = ports
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOCALIS_")}
    env.update(
        VOCALIS_DATA_DIR=str(tmp_path / "data"),
        VOCALIS_REDIS_URL=redis_url,
        VOCALIS_PORT=str(public),
        VOCALIS_INTERNAL_PORT=str(internal),
        VOCALIS_SERVE_WORKERS="1",
        VOCALIS_VOICE_WARM_ENGINES="false",
        VOCALIS_LOG_LEVEL="WARNING",
    )
    subprocess.run([sys.executable, "-m", "vocalis", "migrate"], env=env, cwd=tmp_path, check=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "vocalis", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{internal}/readyz", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.25)
        assert "backends" in answer.json()
        assert "backends" not in httpx.get(f"http://127.0.0.1:{public}/readyz").json()
    finally:
        server.terminate()
        server.wait(timeout=30)
