"""Every error code the realtime WebSocket sends comes from the one error catalogue, and the
generated documentation lists it."""

from __future__ import annotations

import ast
from pathlib import Path

import vocalis
from vocalis.core.errors import CATALOGUE
from vocalis.docs_gen import error_codes, load_every_module

SOURCES = Path(vocalis.__file__).parent
SENDING_PACKAGES = ("realtime", "voice")
# Calls whose code (first argument or `code=`) ends up in an `error` event.
CODE_TAKERS = {"error", "ClientEventError", "ErrorFrame", "StatusError", "TranscriptionError"}
# The codes every realtime session can send (the WebSocket reference lists them).
REALTIME_CODES = {
    "invalid_json",
    "invalid_event",
    "unknown_event",
    "invalid_value",
    "unsupported_session_field",
    "unsupported_frame",
    "no_input",
    "conversation_already_has_active_response",
    "response_cancel_not_active",
    "responses_unavailable",
    "item_retrieve_invalid_item_id",
    "item_delete_invalid_item_id",
    "item_truncate_invalid_item_id",
    "item_not_deletable",
    "item_not_truncatable",
    "audio_frame_too_large",
    "input_audio_buffer_full",
    "input_audio_buffer_commit_unavailable",
    "input_audio_buffer_commit_empty",
    "conversation_ended",
    "conversation_busy",
    "internal_error",
}


def _name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        logger = isinstance(func.value, ast.Name) and func.value.id == "log"
        return "" if logger else func.attr
    return getattr(func, "id", "")


def _literal_codes(path: Path) -> list[str]:
    """`file:line code` for each code typed as a string literal where an error is sent."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or _name(node) not in CODE_TAKERS:
            continue
        candidates = [kw.value for kw in node.keywords if kw.arg == "code"]
        if _name(node) != "StatusError" and node.args:
            candidates.append(node.args[0])
        for value in candidates:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.append(f"{path.relative_to(SOURCES)}:{node.lineno} {value.value}")
    return found


def test_realtime_and_voice_code_send_codes_from_the_catalogue_not_literals() -> None:
    literals = [
        hit
        for package in SENDING_PACKAGES
        for path in sorted((SOURCES / package).rglob("*.py"))
        for hit in _literal_codes(path)
    ]
    assert literals == [], "use the constants of vocalis.core.errors: " + ", ".join(literals)


def test_every_realtime_code_is_catalogued_and_documented() -> None:
    load_every_module()
    assert set(CATALOGUE) >= REALTIME_CODES
    table = error_codes()
    for code in REALTIME_CODES:
        assert f"`{code}`" in table, code
