"""FastAPI dependencies shared by every router: backends and a database session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from vocalis.core.backends import Backends


def get_backends(request: Request) -> Backends:
    """The process's backends, built at startup."""
    backends: Backends = request.app.state.backends
    return backends


async def backends_dependency(request: Request) -> Backends:
    """`get_backends` as a dependency: `async`, so FastAPI calls it on the event loop (a
    plain `def` dependency costs a hop through the thread pool on every request)."""
    return get_backends(request)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A database session committed when the request handler returns. It reads the
    backends from the request itself: one dependency for FastAPI to resolve per request,
    not two (itself, then `backends_dependency`)."""
    async with get_backends(request).database.session() as session:
        yield session


BackendsDep = Annotated[Backends, Depends(backends_dependency)]
# scope="function": the commit happens before the response is sent, so a client (or
# another server process) that reads right after a write sees it, and a failed commit is
# an error response rather than a 2xx for a change that was rolled back.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
