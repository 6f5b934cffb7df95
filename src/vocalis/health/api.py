"""Probes and metrics: /healthz, /readyz, /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from vocalis import __version__
from vocalis.core.deps import BackendsDep
from vocalis.core.metrics import exposition
from vocalis.core.scopes import Role
from vocalis.core.security import client_address

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Liveness: the process answers",
    responses={
        200: {"content": {"application/json": {"example": {"status": "ok", "version": "1.0.0"}}}}
    },
)
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    summary="Readiness: every configured backend answers",
    description="`status` and the names of failing backends for everyone (probes); each "
    "backend's adapter and error text (which can name hosts) only on the internal port "
    "(`VOCALIS_INTERNAL_PORT`) or with an owner or admin key.",
    responses={
        200: {
            "content": {
                "application/json": {"example": {"status": "ok", "failing": []}},
            }
        },
        503: {"description": "One or more backends failed; they are named."},
    },
)
async def readyz(request: Request, backends: BackendsDep) -> JSONResponse:
    results = await backends.readiness()
    failing = sorted(name for name, result in results.items() if result != "ok")
    body: dict[str, Any] = {"status": "ok" if not failing else "unavailable", "failing": failing}
    if await _may_see_details(request):
        adapters = backends.describe()
        body["backends"] = {
            name: {
                "adapter": adapters.get(name, "?"),
                "status": "ok" if res == "ok" else "fail",
                "detail": res,
            }
            for name, res in results.items()
        }
    return JSONResponse(body, status_code=200 if not failing else 503)


async def _may_see_details(request: Request) -> bool:
    """On the internal port, or with an owner or admin key (a wrong key counts as a failed
    authentication of the caller's address)."""
    settings = request.app.state.settings
    server = request.scope.get("server")
    if settings.internal_port and server is not None and server[1] == settings.internal_port:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    throttle = getattr(request.app.state, "auth_throttle", None)
    address = client_address(request)
    if throttle is not None:
        await throttle.check(address)
    key = await request.app.state.api_keys.active_key(token.strip())
    if key is None:
        if throttle is not None:
            await throttle.failed(address)
        return False
    return key.role in (Role.OWNER, Role.ADMIN)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
