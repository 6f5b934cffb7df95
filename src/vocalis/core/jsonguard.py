"""What every JSON document a client sends must respect, checked before anything parses it
for real: at most `MAX_DEPTH` levels of nesting, and no NUL character in any string or key.

Deep nesting makes the recursive parts of the platform (Pydantic, JSON Schema checks,
serialisers) overflow Python's stack; NUL cannot be stored by PostgreSQL (text or JSONB).
Both are refused up front, for HTTP bodies (the request middleware) and realtime frames
alike, so no handler ever sees them.

The common case costs two `bytes.count` calls and one `in`: a document with fewer opening
brackets than `MAX_DEPTH` and no `\\u0000` escape cannot break either rule.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
NUL = "\x00"


class JsonRejected(ValueError):
    """A JSON document that breaks one of the rules; `loc` is the path to the offender."""

    def __init__(self, message: str, loc: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc


def _may_break(raw: bytes | str) -> bool:
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{") >= MAX_DEPTH or "\\u0000" in raw or NUL in raw
    return raw.count(b"[") + raw.count(b"{") >= MAX_DEPTH or b"\\u0000" in raw or b"\0" in raw


def check_value(value: Any) -> None:
    """Raise `JsonRejected` when a parsed document nests too deeply or holds NUL."""
    stack: list[tuple[Any, int, list[str]]] = [(value, 1, [])]
    while stack:
        node, depth, loc = stack.pop()
        if isinstance(node, str):
            if NUL in node:
                raise JsonRejected("NUL characters (\\u0000) are not allowed in text.", loc)
            continue
        if not isinstance(node, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise JsonRejected(f"JSON nested deeper than {MAX_DEPTH} levels.", loc)
        if isinstance(node, dict):
            for key, child in node.items():
                if NUL in key:
                    raise JsonRejected(
                        "NUL characters (\\u0000) are not allowed in keys.", [*loc, key]
                    )
                stack.append((child, depth + 1, [*loc, key]))
        else:
            stack.extend((child, depth + 1, [*loc, str(i)]) for i, child in enumerate(node))


def check_raw(raw: bytes | str) -> None:
    """Raise `JsonRejected` when `raw` (a JSON text) nests too deeply or holds NUL.

    Text that is not JSON at all passes: the parser that comes next reports it as such.
    """
    if not _may_break(raw):
        return
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonRejected(f"JSON nested deeper than {MAX_DEPTH} levels.", []) from None
    except ValueError:
        return
    check_value(value)


def loads(raw: bytes | str) -> Any:
    """`json.loads` that raises `JsonRejected` (a `ValueError`) for documents breaking the
    rules, and `ValueError` for text that is not JSON."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonRejected(f"JSON nested deeper than {MAX_DEPTH} levels.", []) from None
    if _may_break(raw):
        check_value(value)
    return value
