"""Cursor pagination shared by every list endpoint: `?limit=&cursor=` → `ListResource`."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from vocalis.core.errors import INVALID_CURSOR, RequestError

T = TypeVar("T")


class ListResource(BaseModel, Generic[T]):
    """A page of results; pass `next_cursor` back as `cursor` for the next page."""

    object: str = "list"
    data: list[T]
    has_more: bool
    next_cursor: str | None = None


def encode_cursor(position: dict[str, Any]) -> str:
    """An opaque cursor for a position."""
    return (
        base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The position inside a cursor; raises a catalogued error when malformed."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise RequestError("The cursor is malformed.", code=INVALID_CURSOR) from exc
    if not isinstance(value, dict) or not all(_position_value(v) for v in value.values()):
        raise RequestError("The cursor is malformed.", code=INVALID_CURSOR)
    return value


def _position_value(value: Any) -> bool:
    """What a position may hold: what `paginate` puts there (ids, ISO times, versions)."""
    if isinstance(value, str):
        return len(value) <= 200 and "\x00" not in value
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31


def created_before(position: dict[str, Any] | None) -> tuple[datetime, str] | None:
    """The `(created_at, id)` a newest-first cursor points at (`{"c": iso time, "id"}`)."""
    if not position or "c" not in position or "id" not in position:
        return None
    try:
        created = datetime.fromisoformat(str(position["c"]))
    except ValueError:
        raise RequestError("The cursor is malformed.", code=INVALID_CURSOR) from None
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created, str(position["id"])


class PageParams(BaseModel):
    """Parsed pagination parameters."""

    limit: int
    position: dict[str, Any] | None


async def page_params(  # async: FastAPI runs it on the loop, not in the thread pool
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
    ] = None,
) -> PageParams:
    """Pagination query parameters."""
    return PageParams(limit=limit, position=decode_cursor(cursor) if cursor else None)


Page = Annotated[PageParams, Depends(page_params)]


def paginate(items: list[T], limit: int, key: Any) -> ListResource[T]:
    """Build a page from `limit + 1` fetched items; `key(item)` gives the cursor position."""
    has_more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor(key(items[-1])) if has_more and items else None
    return ListResource[T](data=items, has_more=has_more, next_cursor=next_cursor)
