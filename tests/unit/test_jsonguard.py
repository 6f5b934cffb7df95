"""The JSON nesting and NUL rules every client document passes (core/jsonguard.py)."""

from __future__ import annotations

import json

import pytest

from vocalis.core import jsonguard
from vocalis.core.jsonguard import MAX_DEPTH, JsonRejected


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_nesting_up_to_the_limit_passes_and_one_more_level_is_refused() -> None:
    assert jsonguard.loads(_nested(MAX_DEPTH)) is not None
    with pytest.raises(JsonRejected, match="nested deeper"):
        jsonguard.loads(_nested(MAX_DEPTH + 1))
    with pytest.raises(JsonRejected, match="nested deeper"):
        jsonguard.check_raw(_nested(MAX_DEPTH + 1).encode())


def test_a_million_brackets_are_refused_without_a_recursion_error() -> None:
    with pytest.raises(JsonRejected):
        jsonguard.loads(_nested(1_000_000))
    with pytest.raises(JsonRejected):
        jsonguard.check_raw(_nested(1_000_000).encode())


def test_nul_in_a_value_or_a_key_is_refused_with_its_location() -> None:
    with pytest.raises(JsonRejected) as in_value:
        jsonguard.loads(json.dumps({"a": [{"b": "x\u0000"}]}))
    assert in_value.value.loc == ["a", "0", "b"]
    with pytest.raises(JsonRejected) as in_key:
        jsonguard.check_raw(json.dumps({"k\u0000": 1}).encode())
    assert in_key.value.loc == ["k\u0000"]


def test_text_that_only_looks_like_nul_passes() -> None:
    assert jsonguard.loads(json.dumps({"a": "\\u0000"})) == {"a": "\\u0000"}
    jsonguard.check_raw(json.dumps({"a": "\\u0000"}).encode())


def test_text_that_is_not_json_is_left_to_the_parser() -> None:
    jsonguard.check_raw(b"{not json [[[[" + b"[" * 100)
    with pytest.raises(ValueError) as raised:
        jsonguard.loads("{not json")
    assert not isinstance(raised.value, JsonRejected)
