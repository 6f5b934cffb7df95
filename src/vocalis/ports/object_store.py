"""Object store port: uploads, extracted text, recordings, exports.

Keys are `/`-separated paths laid out by `vocalis.core.object_keys`; adapters must not
interpret them beyond prefix listing. Every adapter rejects, with `ValueError`, a key that
`object_keys.validate_key` rejects (empty, absolute, `.`/`..`/empty segments, control
characters, over 1024 bytes), so a key that works on one adapter works on all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one stored object."""

    key: str
    size: int
    content_type: str
    last_modified: datetime | None = None


class ObjectNotFound(KeyError):
    """The key does not exist."""


@runtime_checkable
class ObjectStore(Protocol):
    """Byte storage addressed by key."""

    name: str

    async def put(
        self, key: str, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        """Store `data` under `key`, replacing any previous object."""
        ...

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        """Store a stream of unknown length (multipart upload on S3).

        If the stream raises, nothing is stored and any previous object under `key` stays.
        """
        ...

    async def get(self, key: str) -> bytes:
        """The whole object; raises `ObjectNotFound`."""
        ...

    def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The object in `chunk_size`-byte chunks (the last may be shorter).

        Raises `ObjectNotFound` on first iteration.
        """
        ...

    async def head(self, key: str) -> ObjectInfo:
        """Metadata only; raises `ObjectNotFound`."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether the key exists."""
        ...

    async def delete(self, key: str) -> None:
        """Delete one object; deleting a missing key is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under a prefix; returns how many were deleted.

        The empty prefix is refused with `ValueError`: it would empty the whole store.
        """
        ...

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order.

        `content_type` is `""` here (S3 listings do not carry it): call `head` for it.
        """
        ...

    async def ping(self) -> None:
        """Raise if the store is unreachable."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
