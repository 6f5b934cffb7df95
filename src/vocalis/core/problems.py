"""RFC 9457 problem+json for every error response, the framework's own included."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from vocalis.core import errors

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = structlog.get_logger(__name__)


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


# OpenAI-compatible routes: their errors also carry OpenAI's `error` object, which OpenAI
# SDKs (and LangChain, LlamaIndex, the Agents SDK on top of them) show as the message.
OPENAI_COMPATIBLE_PATHS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/audio/",
)
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(code: str, message: str, status: int, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object (`{"message", "type", "param", "code"}`) for one of our errors."""
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"message": message, "type": kind, "param": param, "code": code}


def _param(problems: Any) -> str | None:
    """The request field a validation error is about (`messages`, `tools`…), as OpenAI names it."""
    if not isinstance(problems, list) or not problems:
        return None
    loc = [p for p in problems[0].get("loc", ()) if p not in ("body", "query", "path")]
    return str(loc[0]) if loc else None


def problem_response(
    request: Request | None,
    code: str,
    detail: str | None = None,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response for `code` (with OpenAI's `error` on its compatible routes)."""
    request_id = getattr(request.state, "request_id", None) if request else None
    openai = request is not None and request.url.path.startswith(OPENAI_COMPATIBLE_PATHS)
    if openai and "error" not in (extra or {}):
        entry = errors.CATALOGUE[code]
        param = _param((extra or {}).get("errors"))
        error = openai_error(code, detail or entry.title, entry.status, param)
        extra = {**(extra or {}), "error": error}
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


def _validation_detail(
    exc: RequestValidationError | WebSocketRequestValidationError,
) -> tuple[str, str, list[dict[str, Any]]]:
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


async def _on_websocket_validation_error(websocket: WebSocket, exc: Exception) -> None:
    """A WebSocket handshake whose query does not validate: a 422 problem+json answer to
    the handshake (close 1008 where the server cannot send one); the client's doing, so
    logged at INFO."""
    assert isinstance(exc, WebSocketRequestValidationError)
    code, detail, problems = _validation_detail(exc)
    log.info("websocket_refused", code=code, path=websocket.url.path)
    if "websocket.http.response" not in websocket.scope.get("extensions", {}):
        await websocket.close(code=1008, reason=detail[:120])
        return
    body = problem_body(
        code,
        detail=detail,
        request_id=websocket.scope.get("state", {}).get("request_id"),
        instance=websocket.url.path,
        extra={"errors": problems} if problems else None,
    )
    status = errors.CATALOGUE[code].status
    await websocket.send_denial_response(
        JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)
    )


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
    app.add_exception_handler(WebSocketRequestValidationError, _on_websocket_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
