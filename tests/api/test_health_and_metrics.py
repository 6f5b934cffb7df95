"""Probes, readiness per backend, Prometheus metrics and request ids."""

from __future__ import annotations

from tests.api.conftest import Api


async def test_healthz_answers(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


async def test_readyz_lists_every_backend(api: Api) -> None:
    owner = await api.tenant()  # the details need an owner or admin key
    response = await api.client.get("/readyz", headers=owner.headers)
    assert response.status_code == 200, response.text
    backends = response.json()["backends"]
    assert set(backends) == {"database", "redis", "documents", "objects", "secrets"}
    assert all(b["status"] == "ok" for b in backends.values())


async def test_readyz_is_503_naming_a_failing_backend(sqlite_api: Api) -> None:
    async def broken() -> None:
        raise ConnectionError("connection refused")

    sqlite_api.backends.redis.ping = broken  # type: ignore[method-assign]
    owner = await sqlite_api.tenant()
    response = await sqlite_api.client.get("/readyz", headers=owner.headers)
    assert response.status_code == 503
    assert response.json()["failing"] == ["redis"]
    assert "connection refused" in response.json()["backends"]["redis"]["detail"]


async def test_metrics_count_requests_by_route_template(sqlite_api: Api) -> None:
    acme = await sqlite_api.tenant()
    await sqlite_api.client.delete("/v1/api-keys/key_missing", headers=acme.headers)
    text = (await sqlite_api.client.get("/metrics")).text
    assert (
        'vocalis_http_requests_total{method="DELETE",route="/v1/api-keys/{key_id}",status="404"}'
        in text
    )
    assert "vocalis_http_request_duration_seconds_bucket" in text


async def test_request_id_is_echoed_or_generated(sqlite_api: Api) -> None:
    given = await sqlite_api.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = await sqlite_api.client.get(
        "/healthz", headers={"X-Request-ID": "bad id with spaces"}
    )
    assert generated.headers["x-request-id"] != "bad id with spaces"
    assert len(generated.headers["x-request-id"]) == 32
