"""Probes and metrics: /healthz, /readyz, /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vocalis import __version__
from vocalis.core.deps import BackendsDep
from vocalis.core.metrics import REGISTRY

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    summary="Readiness: every configured backend answers",
    responses={503: {"description": "One or more backends failed; they are named."}},
)
async def readyz(backends: BackendsDep) -> JSONResponse:
    results = await backends.readiness()
    adapters = backends.describe()
    failing = sorted(name for name, result in results.items() if result != "ok")
    body = {
        "status": "ok" if not failing else "unavailable",
        "failing": failing,
        "backends": {
            name: {
                "adapter": adapters.get(name, "?"),
                "status": "ok" if res == "ok" else "fail",
                "detail": res,
            }
            for name, res in results.items()
        },
    }
    return JSONResponse(body, status_code=200 if not failing else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
