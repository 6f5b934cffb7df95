"""The web console: a single page over the public API (agents, playground, transcripts, KBs).

The page holds no server-side session: it asks for an API key, keeps it in the browser's
sessionStorage and calls the same REST endpoints integrators use.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vocalis.core.errors import NotFound

router = APIRouter(tags=["console"], include_in_schema=False)

_STATIC = resources.files("vocalis.web") / "static"
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/console")


@router.get("/console")
async def console() -> HTMLResponse:
    return HTMLResponse((_STATIC / "console.html").read_text(), headers=_SECURITY_HEADERS)


@router.get("/console/{asset}")
async def asset(asset: str) -> Response:
    types = {"console.js": "text/javascript", "console.css": "text/css"}
    if asset not in types:
        raise NotFound("No such console asset.")
    return Response(
        (_STATIC / asset).read_text(), media_type=types[asset], headers=_SECURITY_HEADERS
    )
