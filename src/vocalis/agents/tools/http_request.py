"""`http_request`: call an HTTP API configured on the agent.

Configuration (one per tool):

    {"type": "http_request", "name": "lookup_order", "description": "...",
     "method": "GET", "url": "https://crm.example.com/orders/{order_id}",
     "parameters": {...JSON schema of the arguments...},
     "headers": {"Authorization": "Bearer {{secret:crm/token}}"},
     "timeout_s": 10, "max_response_bytes": 65536}

Arguments are validated against `parameters`. Placeholders in the URL's path and query are
filled with URL-encoded arguments (they may not appear in the scheme or host, so the model
cannot pick where the request goes); the remaining arguments go in the query string for
GET/DELETE and in a JSON body otherwise. `{{secret:path}}` in header values is read from
the secrets port at call time and never shown to the model. Every request, redirects
included, goes through the SSRF guard. The response is cut at `max_response_bytes`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from vocalis.agents.tools.base import (
    Tool,
    ToolConfigError,
    ToolContext,
    ToolResult,
    error_result,
    option,
    register_tool_kind,
)
from vocalis.core.ssrf import OutboundUrlForbidden, guarded_client
from vocalis.ports.llm import ToolSpec
from vocalis.ports.secrets import SecretNotFound, SecretProvider

KIND = "http_request"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_TIMEOUT_S = 60.0
MAX_RESPONSE_BYTES = 1_048_576
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_REF = re.compile(r"\{\{\s*secret:([A-Za-z0-9_./-]+)\s*\}\}")


@dataclass(frozen=True)
class HttpRequestTool:
    """One configured HTTP call."""

    spec: ToolSpec
    method: str
    url_template: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 10.0
    max_response_bytes: int = 65_536
    follow_redirects: bool = False
    kind: str = KIND

    def url_for(self, arguments: Mapping[str, Any]) -> tuple[str, set[str]]:
        """The URL with its placeholders filled, and the argument names used."""
        used: set[str] = set()

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in arguments:
                raise ValueError(f"missing argument {name!r} for the URL")
            used.add(name)
            return quote(str(arguments[name]), safe="")

        return _PLACEHOLDER.sub(fill, self.url_template), used

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Send the request and return status and (capped) body."""
        try:
            url, used = self.url_for(arguments)
            headers = {k: await resolve_secrets(v, ctx.secrets) for k, v in self.headers.items()}
        except (ValueError, SecretNotFound) as exc:
            return error_result(str(exc) if isinstance(exc, ValueError) else _no_secret(exc))
        rest = {k: v for k, v in arguments.items() if k not in used}
        payload: dict[str, Any] = {}
        if rest:
            if self.method in ("GET", "DELETE"):
                payload["params"] = {k: _query_value(v) for k, v in rest.items()}
            else:
                payload["json"] = rest
        try:
            async with asyncio.timeout(self.timeout_s):
                status, body, truncated = await self._send(url, headers, payload, ctx)
        except OutboundUrlForbidden as exc:
            return error_result(f"request refused: {exc.detail}")
        except TimeoutError:
            return error_result(f"no answer within {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return error_result(f"request failed: {type(exc).__name__}: {exc}")
        data = {"status": status, "body": _decode(body), "truncated": truncated}
        return ToolResult(content=json.dumps(data, default=str), data=data, is_error=status >= 400)

    async def _send(
        self, url: str, headers: dict[str, str], payload: dict[str, Any], ctx: ToolContext
    ) -> tuple[int, bytes, bool]:
        async with (
            guarded_client(
                ctx.outbound_allowlist,
                timeout=self.timeout_s,
                resolver=ctx.resolver,
                follow_redirects=self.follow_redirects,
            ) as client,
            client.stream(self.method, url, headers=headers, **payload) as response,
        ):
            body = bytearray()
            async for chunk in response.aiter_bytes():
                room = self.max_response_bytes - len(body)
                if len(chunk) > room:
                    body += chunk[:room]
                    return response.status_code, bytes(body), True
                body += chunk
            return response.status_code, bytes(body), False


async def resolve_secrets(value: str, secrets: SecretProvider | None) -> str:
    """Replace every `{{secret:path}}` in a header value with the secret's value."""
    refs = _SECRET_REF.findall(value)
    if not refs:
        return value
    if secrets is None:
        raise SecretNotFound(refs[0])
    resolved = {path: await secrets.get(path) for path in refs}
    return _SECRET_REF.sub(lambda m: resolved[m.group(1)], value)


def _no_secret(exc: SecretNotFound) -> str:
    return f"a header references secret {exc.args[0]!r}, which is not configured"


def _query_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _decode(body: bytes) -> Any:
    text = body.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


@register_tool_kind(KIND, "Call an HTTP API (URL template, JSON-schema arguments, secrets).")
def build(config: Mapping[str, Any]) -> Tool:
    """An http_request tool from its configuration; refuses unsafe or inconsistent ones."""
    name = option(config, "name", "")
    method = str(option(config, "method", "GET")).upper()
    url = str(option(config, "url", ""))
    parameters = option(config, "parameters", {"type": "object", "properties": {}})
    if not name:
        raise ToolConfigError("an http_request tool needs a name")
    if method not in METHODS:
        raise ToolConfigError(f"method must be one of {', '.join(METHODS)}")
    _check_url_template(url, parameters)
    headers = option(config, "headers", {})
    if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
        raise ToolConfigError("headers must map names to strings")
    if any(_PLACEHOLDER.search(_SECRET_REF.sub("", v)) for v in headers.values()):
        raise ToolConfigError("header values may reference secrets, not arguments")
    timeout_s = float(option(config, "timeout_s", 10.0))
    max_bytes = int(option(config, "max_response_bytes", 65_536))
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise ToolConfigError(f"timeout_s must be in (0, {MAX_TIMEOUT_S:g}]")
    if not 0 < max_bytes <= MAX_RESPONSE_BYTES:
        raise ToolConfigError(f"max_response_bytes must be in (0, {MAX_RESPONSE_BYTES}]")
    spec = ToolSpec(
        name=name,
        description=option(config, "description", f"{method} {url}"),
        parameters=dict(parameters),
    )
    return HttpRequestTool(
        spec=spec,
        method=method,
        url_template=url,
        headers=dict(headers),
        timeout_s=timeout_s,
        max_response_bytes=max_bytes,
        follow_redirects=bool(option(config, "follow_redirects", False)),
    )


def _check_url_template(url: str, parameters: Mapping[str, Any]) -> None:
    parts = urlsplit(_PLACEHOLDER.sub("x", url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ToolConfigError("url must be an absolute http(s) URL")
    authority = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    if _PLACEHOLDER.search(authority):
        raise ToolConfigError("placeholders may appear in the URL's path and query only")
    declared = set(parameters.get("properties", {}))
    missing = [n for n in _PLACEHOLDER.findall(url) if n not in declared]
    if missing:
        raise ToolConfigError(f"url placeholders {missing} are not declared in parameters")
