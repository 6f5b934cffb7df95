"""The web console: a single page over the public API (agents, knowledge, playground with
chat and voice, conversations, webhooks, keys, dead letters, flags, overview).

The page holds no server-side session: it asks for an API key, keeps it in the browser's
sessionStorage and calls the same REST endpoints integrators use; voice goes through
`WS /v1/realtime` with a short-lived client secret. Its code is plain ES modules under
`static/` (no build step, nothing fetched from elsewhere), served only from the list of
files that ship there, under a strict content-security policy.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vocalis.core.errors import NotFound

router = APIRouter(tags=["console"], include_in_schema=False)

_STATIC = resources.files("vocalis.web") / "static"
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
}
# No inline script or style, no remote origin. `blob:` media plays recordings fetched with
# the key; `ws:`/`wss:` to this origin are covered by 'self'.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; worker-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
    "Cache-Control": "no-cache",
}


def _assets(folder: Traversable, prefix: str = "") -> dict[str, str]:
    """Every servable file under `static/`, by its path relative to it, with its media type."""
    found: dict[str, str] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            found.update(_assets(entry, name + "/"))
            continue
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if suffix in _TYPES:
            found[name] = _TYPES[suffix]
    return found


ASSETS = _assets(_STATIC)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/console")


@router.get("/console")
async def console() -> HTMLResponse:
    return HTMLResponse((_STATIC / "console.html").read_text(), headers=_SECURITY_HEADERS)


@router.get("/console/{asset:path}")
async def asset(asset: str) -> Response:
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise NotFound("No such console asset.")
    target = _STATIC
    for part in asset.split("/"):
        target = target / part
    return Response(target.read_text(), media_type=media_type, headers=_SECURITY_HEADERS)
