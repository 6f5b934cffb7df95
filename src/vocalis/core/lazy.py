"""A value built once, on first use, by a builder that the composition root supplies.

Models and remote connections are costly: an API process that never embeds a document
must not load the embedding model. `Lazy.get()` builds the value under a lock (so
concurrent first users build it once); `set()` installs one directly (tests, overrides);
`close()` releases what was built.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


async def _nothing(_: object) -> None:
    return None


class Lazy(Generic[T]):
    """A typed slot for a value built on first `get()`."""

    def __init__(
        self,
        build: Callable[[], Awaitable[T]],
        *,
        close: Callable[[T], Awaitable[None]] = _nothing,
    ) -> None:
        self._build = build
        self._close = close
        self._value: T | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, value: T) -> Lazy[T]:
        """A slot already holding `value` (closed with nothing to release)."""

        async def unbuildable() -> T:
            raise RuntimeError("this value is given, never built")

        lazy: Lazy[T] = cls(unbuildable)
        lazy.set(value)
        return lazy

    @property
    def built(self) -> T | None:
        """The value when it was built or set, else None (never builds)."""
        return self._value

    async def get(self) -> T:
        """The value, built on the first call."""
        if self._value is not None:
            return self._value
        async with self._lock:
            if self._value is None:
                self._value = await self._build()
            return self._value

    def set(self, value: T) -> None:
        """Use `value` from now on (in place of, or before, building one)."""
        self._value = value

    async def close(self) -> None:
        """Release the built value; the next `get()` builds a fresh one."""
        value, self._value = self._value, None
        if value is not None:
            await self._close(value)
