"""What the API process runs alongside requests for the worker side of the system.

`api_background(backends)` is entered in the app's lifespan: publishes after a commit go
to the configured broker, `vocalis_queue_depth` reads the broker at scrape, and the
organisation flag overrides are loaded and kept fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from vocalis.core.backends import Backends
from vocalis.workers import publish
from vocalis.workers.telemetry import install_queue_depth

FLAG_REFRESH_S = 30.0


@asynccontextmanager
async def api_background(backends: Backends) -> AsyncIterator[None]:
    """Set up publishing, the queue-depth gauge and the flag-override refresher."""
    from vocalis.admin import flags

    publish.configure(backends.settings)
    install_queue_depth(backends.settings)
    with contextlib.suppress(Exception):  # a missing table must not stop the API starting
        await flags.refresh(backends.database)
    refresher = asyncio.create_task(flags.refresher(backends.database, FLAG_REFRESH_S))
    try:
        yield
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
