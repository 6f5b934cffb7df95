"""Running async domain code inside Celery's synchronous tasks.

Each worker thread (threads pool), process (prefork) or the solo pool keeps one event loop
and one `Backends` for its whole life: database pools, Redis clients and adapters are bound
to the loop that created them, and rebuilding them for every task would cost far more
than the task itself. The backends come from the builder the worker's host installs
(`vocalis.wiring.worker` installs the composition root's `build_backends`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog

from vocalis.core.backends import Backends
from vocalis.settings import Settings, get_settings

T = TypeVar("T")
BackendsBuilder = Callable[[Settings], Awaitable[Backends]]
log = structlog.get_logger(__name__)

_local = threading.local()
_settings: Settings | None = None
_builder: BackendsBuilder | None = None
_generation = 0  # bumped by close_all: every thread then builds fresh backends
_all: list[tuple[asyncio.AbstractEventLoop, Backends]] = []
_all_lock = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop


async def _backends(settings: Settings) -> Backends:
    backends: Backends | None = getattr(_local, "backends", None)
    if backends is None or getattr(_local, "generation", -1) != _generation:
        if _builder is None:
            raise RuntimeError("no backends builder: the worker's host installs one")
        backends = await _builder(settings)
        _local.backends = backends
        _local.generation = _generation
        with _all_lock:
            _all.append((_loop(), backends))
    return backends


def install(builder: BackendsBuilder) -> None:
    """Build every thread's backends with `builder` (the composition root's)."""
    global _builder
    _builder = builder


def configure(settings: Settings | None) -> None:
    """Use these settings instead of the environment's (tests, embedded runs)."""
    global _settings, _generation
    _settings = settings
    _generation += 1


def current_settings() -> Settings:
    """The settings tasks run with."""
    return _settings or get_settings()


def run(fn: Callable[[Backends], Awaitable[T]]) -> T:
    """Run `fn(backends)` on this thread's loop and return its result."""

    async def main() -> T:
        return await fn(await _backends(current_settings()))

    return _loop().run_until_complete(main())


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that needs no backends on this thread's loop."""
    return _loop().run_until_complete(coro)


def close_all() -> None:
    """Close every thread's backends (worker shutdown); best effort."""
    global _generation
    with _all_lock:
        items = list(_all)
        _all.clear()
        _generation += 1
    for loop, backends in items:
        if loop.is_closed() or loop.is_running():
            continue
        with contextlib.suppress(Exception):
            loop.run_until_complete(backends.close())
    _local.__dict__.clear()
