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


async def get_session(
    backends: Annotated[Backends, Depends(get_backends)],
) -> AsyncIterator[AsyncSession]:
    """A database session committed when the request handler returns."""
    async with backends.database.session() as session:
        yield session


BackendsDep = Annotated[Backends, Depends(get_backends)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
