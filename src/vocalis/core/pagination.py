"""Cursor pagination shared by every list endpoint: `?limit=&cursor=` → `ListResource`."""

from __future__ import annotations

import base64
import binascii
import json
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
    if not isinstance(value, dict):
        raise RequestError("The cursor is malformed.", code=INVALID_CURSOR)
    return value


class PageParams(BaseModel):
    """Parsed pagination parameters."""

    limit: int
    position: dict[str, Any] | None


def page_params(
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
