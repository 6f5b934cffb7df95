"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from vocalis import __version__
from vocalis.core.backends import Backends, build_backends
from vocalis.core.logging import configure_logging
from vocalis.core.middleware import RequestContextMiddleware
from vocalis.core.problems import PROBLEM_RESPONSES, install_problem_handlers
from vocalis.core.ratelimit import RateLimiter
from vocalis.core.tracing import configure_tracing
from vocalis.flags.service import configure_flags
from vocalis.settings import Settings, get_settings
from vocalis.workers.lifecycle import api_background

ROUTERS = (
    "vocalis.health.api",
    "vocalis.orgs.api",
    "vocalis.agents.api",
    "vocalis.conversations.api",
    "vocalis.openai_compat.api",
    "vocalis.realtime.api",
    "vocalis.knowledge.api",
    "vocalis.openai_compat.embeddings",
    "vocalis.voice.api",
    "vocalis.webhooks.api",
    "vocalis.admin.api",
    "vocalis.web.api",
)


def create_app(settings: Settings | None = None, backends: Backends | None = None) -> FastAPI:
    """Build the app; backends are built at startup unless given (tests inject them)."""
    settings = settings or get_settings()
    configure_logging(settings)
    configure_tracing(settings)
    configure_flags(settings.flags)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = backends is None
        app.state.backends = backends or await build_backends(settings)
        app.state.rate_limiter = RateLimiter(
            app.state.backends.redis,
            per_minute=settings.rate_limit_per_minute,
            burst=settings.rate_limit_burst,
        )
        try:
            async with api_background(app.state.backends):
                yield
        finally:
            if owned:
                await app.state.backends.close()

    app = FastAPI(
        title="Vocalis API",
        version=__version__,
        summary="Self-hosted voice and chat AI agents.",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    import importlib

    for module in ROUTERS:
        app.include_router(importlib.import_module(module).router)
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,metrics")
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_request_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    return app
