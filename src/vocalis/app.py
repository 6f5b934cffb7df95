"""The FastAPI application factory."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from vocalis import __version__
from vocalis.agents.runtime import RUNTIME_STATE, open_runtime
from vocalis.conversations.store import ensure_indexes
from vocalis.core.auth_throttle import AuthThrottle
from vocalis.core.backends import Backends
from vocalis.core.http_span import NATIVE_TELEMETRY_OFF, install_server_spans
from vocalis.core.logging import configure_logging
from vocalis.core.metrics import process_exited
from vocalis.core.middleware import RequestContextMiddleware
from vocalis.core.openapi import install_openapi
from vocalis.core.problems import PROBLEM_RESPONSES, install_problem_handlers
from vocalis.core.production import refuse_embedded_fallbacks
from vocalis.core.ratelimit import RateLimiter, apply_rate_limit_classes, class_limits
from vocalis.core.routes import include_flat
from vocalis.core.security import CachedKeyStore
from vocalis.core.tracing import configure_tracing
from vocalis.flags.registry import RATE_LIMITING
from vocalis.flags.service import configure_flags, flag_value
from vocalis.orgs.keys import OrgApiKeys
from vocalis.realtime.lifecycle import end_waiting_conversations
from vocalis.realtime.limits import SessionSlots
from vocalis.settings import Settings, get_settings
from vocalis.wiring import build_backends
from vocalis.wiring.speech import start_voice_warm_up
from vocalis.workers.lifecycle import api_background

ROUTERS = (
    "vocalis.health.api",
    "vocalis.orgs.api",
    "vocalis.agents.api",
    "vocalis.agents.providers_api",
    "vocalis.agents.mcp_api",
    "vocalis.conversations.api",
    "vocalis.openai_compat.api",
    "vocalis.openai_compat.completions",
    "vocalis.realtime.api",
    "vocalis.transports.raw_pcm",
    "vocalis.telephony.api",
    "vocalis.knowledge.api",
    "vocalis.openai_compat.embeddings",
    "vocalis.openai_compat.models",
    "vocalis.voice.api",
    "vocalis.webhooks.api",
    "vocalis.admin.api",
    "vocalis.web.api",
)

# Headers a browser client may read on a cross-origin response.
CORS_EXPOSED_HEADERS = [
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
]


def create_app(
    settings: Settings | None = None,
    backends: Backends | None = None,
    routers: Sequence[str] = ROUTERS,
) -> FastAPI:
    """Build the app; backends come from the composition root at startup unless given
    (tests inject them); `routers` names the router modules to mount."""
    settings = settings or get_settings()
    # How long a thread may hold the GIL while another waits for it. The event loop hands
    # SQLite work to threads (the document store's, the checkpointer's, the ORM's
    # aiosqlite), and a write transaction, holding the box's SQLite write lock, takes the
    # GIL back after each statement: with Python's 5 ms the processes' writers queued behind
    # the loop's Python (issue 11: 0.5 ms served 136 messages turns/s at 8 connections
    # against 115, back to back; CPU per turn within the noise).
    sys.setswitchinterval(max(settings.gil_switch_interval_ms, 0.05) / 1000)
    configure_logging(settings)
    configure_tracing(settings)
    configure_flags(settings.flags)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = backends is None
        if owned:  # a server process (not a test app given its backends)
            refuse_embedded_fallbacks(settings)
        app.state.backends = backends or await build_backends(settings)
        app.state.rate_limiter = RateLimiter(
            app.state.backends.redis,
            per_minute=settings.rate_limit_per_minute,
            burst=settings.rate_limit_burst,
            applies_to=lambda org_id: bool(flag_value(RATE_LIMITING, org_id)),
            classes=class_limits(
                settings.rate_limit_classes, Settings.model_fields["rate_limit_classes"].default
            ),
        )
        app.state.api_keys = CachedKeyStore(
            OrgApiKeys(app.state.backends.database),
            ttl_s=max(0.0, min(settings.api_key_cache_ttl_s, 1.0)),
        )
        app.state.auth_throttle = AuthThrottle(
            app.state.backends.redis,
            limit=settings.auth_failure_limit,
            window_s=settings.auth_failure_window_s,
        )
        app.state.realtime_slots = SessionSlots(
            app.state.backends.redis,
            per_key=settings.realtime_max_sessions_per_key,
            per_org=settings.realtime_max_sessions_per_org,
        )
        try:
            await ensure_indexes(app.state.backends.documents)
            async with (
                open_runtime(app.state.backends) as runtime,
                api_background(app.state.backends),
            ):
                setattr(app.state, RUNTIME_STATE, runtime)
                # A server process warms its speech engines (not a test app: most never
                # speak, and those that do load the engines on first use).
                warm = owned and settings.voice_warm_engines and settings.env != "test"
                warming = start_voice_warm_up(app.state.backends.voice) if warm else None
                try:
                    yield
                finally:
                    if warming is not None and not warming.done():
                        warming.cancel()
                    # Realtime conversations whose sockets the server closed end now.
                    await end_waiting_conversations()
        finally:
            setattr(app.state, RUNTIME_STATE, None)
            process_exited(os.getpid())  # its live gauges leave the merged /metrics
            if owned:
                await app.state.backends.close()

    app = FastAPI(
        title="Vocalis API",
        version=__version__,
        summary="Self-hosted voice and chat AI agents.",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
        telemetry=NATIVE_TELEMETRY_OFF,  # the server span is ours (core/http_span.py)
        # Behind a proxy the public URL is what clients (and generated SDKs) must call.
        servers=[{"url": settings.public_base_url}] if settings.public_base_url else None,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    # Each router's routes become the app's own: one flat list to match (core/routes.py).
    for module in routers:
        include_flat(app, importlib.import_module(module).router)
    apply_rate_limit_classes(app.routes)  # every operation's class, into OpenAPI too
    install_openapi(app)
    # One server span per request (`<method> <route>`); /healthz and /metrics excluded.
    install_server_spans(app)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_request_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    if settings.cors_origin_list:
        # Outermost, so preflights are answered before auth and rate limits see them.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
        )
    return app
