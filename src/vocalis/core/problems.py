"""RFC 9457 problem+json for every error response, the framework's own included."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from vocalis.core import errors

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    type: str = Field(examples=["urn:vocalis:error:not_found"])
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable code from the error-code table.")
    request_id: str | None = Field(
        description="Echo of X-Request-ID; quote it in support requests."
    )
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Field errors (validation_failed only)."
    )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "model": Problem,
        "description": "Client error (problem+json; see the error-code table).",
        "content": {PROBLEM_MEDIA_TYPE: {}},
    },
    "5XX": {
        "model": Problem,
        "description": "Server or backend error (problem+json).",
        "content": {PROBLEM_MEDIA_TYPE: {}},
    },
}


def problem_body(
    code: str,
    *,
    detail: str | None,
    request_id: str | None,
    instance: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a problem with a catalogued code."""
    entry = errors.CATALOGUE[code]
    body: dict[str, Any] = {
        "type": f"urn:vocalis:error:{code}",
        "title": entry.title,
        "status": entry.status,
        "detail": detail or entry.title,
        "code": code,
        "request_id": request_id,
    }
    if instance:
        body["instance"] = instance
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return body


def problem_response(
    request: Request | None,
    code: str,
    detail: str | None = None,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response for `code`."""
    request_id = getattr(request.state, "request_id", None) if request else None
    body = problem_body(
        code,
        detail=detail,
        request_id=request_id,
        instance=request.url.path if request else None,
        extra=extra,
    )
    return JSONResponse(
        body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def _validation_detail(exc: RequestValidationError) -> tuple[str, str, list[dict[str, Any]]]:
    problems: list[dict[str, Any]] = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return errors.MALFORMED_JSON, "The request body is not valid JSON.", []
        problems.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    first: dict[str, Any] = problems[0] if problems else {"loc": [], "msg": "invalid request"}
    detail = f"{'.'.join(first['loc'])}: {first['msg']}" if first["loc"] else str(first["msg"])
    return errors.VALIDATION_FAILED, detail, problems


async def _on_vocalis_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.VocalisError)
    return problem_response(request, exc.code, exc.detail, extra=exc.extra, headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    code, detail, problems = _validation_detail(exc)
    return problem_response(request, code, detail, extra={"errors": problems} if problems else None)


_HTTP_CODES = {
    404: errors.ROUTE_NOT_FOUND,
    405: errors.METHOD_NOT_ALLOWED,
    413: errors.PAYLOAD_TOO_LARGE,
    415: errors.UNSUPPORTED_MEDIA_TYPE,
    400: errors.BAD_REQUEST,
    401: errors.AUTH_MISSING,
    403: errors.FORBIDDEN_SCOPE,
    422: errors.VALIDATION_FAILED,
    429: errors.RATE_LIMITED,
}


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(
        exc.status_code, errors.INTERNAL_ERROR if exc.status_code >= 500 else errors.BAD_REQUEST
    )
    detail = (
        exc.detail if isinstance(exc.detail, str) and exc.status_code not in (404, 405) else None
    )
    return problem_response(request, code, detail, headers=dict(exc.headers or {}))


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error through problem+json."""
    app.add_exception_handler(errors.VocalisError, _on_vocalis_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
