"""The PII and credential redactor: what it hides, what it leaves alone, and how fast."""

from __future__ import annotations

import random
import string
import time
from typing import Any

import pytest

from tests.unit.redaction_corpus import NEGATIVE, POSITIVE
from vocalis.core.redaction import (
    FALLBACK,
    RULES,
    SECRET,
    iban_valid,
    is_secret_key,
    luhn_valid,
    redact,
    redact_value,
)


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in POSITIVE], ids=[c[0] for c in POSITIVE]
)
def test_redacts(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [c[1] for c in NEGATIVE], ids=[c[0] for c in NEGATIVE])
def test_leaves_unchanged(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in POSITIVE], ids=[c[0] for c in POSITIVE]
)
def test_redacting_twice_changes_nothing_more(text: str, expected: str) -> None:
    assert redact(redact(text)) == expected


def test_corpus_is_large_enough_to_mean_something() -> None:
    assert len(POSITIVE) >= 40
    assert len(NEGATIVE) >= 25


# --- the registry the documentation is generated from ---------------------------------------


def test_rule_names_are_unique() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_each_rules_example_is_redacted_to_its_placeholder(rule: Any) -> None:
    redacted = redact(rule.example)
    assert rule.placeholder in redacted
    assert redacted != rule.example


def test_registry_covers_every_documented_placeholder() -> None:
    placeholders = {rule.placeholder for rule in RULES}
    assert placeholders >= {
        "[EMAIL]",
        "[PHONE]",
        "[CARD]",
        "[SSN]",
        "[IBAN]",
        "[API_KEY]",
        "[TOKEN]",
        "[JWT]",
        "[SECRET]",
    }


def test_every_rule_has_a_description_and_a_kind() -> None:
    for rule in RULES:
        assert rule.description.strip()
        assert rule.kind in ("pii", "credential")


# --- validators ---------------------------------------------------------------------------


def test_luhn_accepts_a_published_test_card() -> None:
    assert luhn_valid("4111 1111 1111 1111")


def test_luhn_rejects_a_changed_last_digit() -> None:
    assert not luhn_valid("4111 1111 1111 1112")


def test_iban_check_accepts_a_published_example() -> None:
    assert iban_valid("GB82 WEST 1234 5698 7654 32")


def test_iban_check_rejects_a_changed_digit() -> None:
    assert not iban_valid("GB82 WEST 1234 5698 7654 31")


# --- credentials-only mode ----------------------------------------------------------------


def test_pii_off_keeps_emails_and_phone_numbers() -> None:
    text = "jane@example.com called from +44 20 7946 0958"
    assert redact(text, pii=False) == text


def test_pii_off_still_hides_credentials() -> None:
    assert redact("password=hunter2 key sk-abcdefghijklmnopqrstuvwxyz0123", pii=False) == (
        "password=[SECRET] key [API_KEY]"
    )


# --- structures ---------------------------------------------------------------------------


def test_redact_value_walks_nested_dicts_and_lists() -> None:
    value = {"user": {"email": "jane@example.com", "phones": ["+1 415 555 2671", "n/a"]}}
    assert redact_value(value) == {"user": {"email": "[EMAIL]", "phones": ["[PHONE]", "n/a"]}}


def test_redact_value_hides_values_under_secret_keys_whatever_they_look_like() -> None:
    value = {"password": "hunter2", "headers": {"Authorization": "opaque", "X-Api-Key": 12345}}
    assert redact_value(value) == {
        "password": SECRET,
        "headers": {"Authorization": SECRET, "X-Api-Key": SECRET},
    }


def test_redact_value_hides_secret_keys_even_with_pii_off() -> None:
    value = {"email": "jane@example.com", "refresh_token": "abc"}
    assert redact_value(value, pii=False) == {"email": "jane@example.com", "refresh_token": SECRET}


def test_redact_value_keeps_empty_and_boolean_secret_values() -> None:
    assert redact_value({"password": "", "token": None, "has_secret": True}) == {
        "password": "",
        "token": None,
        "has_secret": True,
    }


def test_redact_value_leaves_numbers_and_counts_alone() -> None:
    value = {"max_tokens": 512, "prompt_tokens": 120, "latency_ms": 12.5, "ok": True}
    assert redact_value(value) == value


def test_redact_value_redacts_keys_that_are_pii() -> None:
    assert redact_value({"jane@example.com": 3}) == {"[EMAIL]": 3}


def test_redact_value_keeps_tuples_and_sets_as_such() -> None:
    assert redact_value(("a@b.io", 1)) == ("[EMAIL]", 1)
    assert redact_value({"a@b.io"}) == {"[EMAIL]"}


def test_redact_value_does_not_mutate_its_input() -> None:
    value = {"items": ["jane@example.com"], "password": "x"}
    redact_value(value)
    assert value == {"items": ["jane@example.com"], "password": "x"}


def test_redact_value_returns_other_objects_untouched() -> None:
    marker = object()
    assert redact_value(marker) is marker


def test_redact_value_withholds_cyclic_structures_instead_of_recursing_forever() -> None:
    cyclic: list[Any] = ["jane@example.com"]
    cyclic.append(cyclic)
    redacted = redact_value(cyclic)
    assert redacted[0] == "[EMAIL]"
    assert FALLBACK in repr(redacted)


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "DB_PASSWORD",
        "client_secret",
        "access_token",
        "api_key",
        "x-api-key",
        "Authorization",
        "set-cookie",
        "cookies",
        "private_key",
        "credentials",
    ],
)
def test_secret_key_names_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    ["max_tokens", "token_count", "password_hash", "secret_ref", "api_key_id", "user", 3],
)
def test_ordinary_key_names_are_not_secret(key: object) -> None:
    assert not is_secret_key(key)


# --- robustness and speed -----------------------------------------------------------------


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_redact_never_raises_on_an_object_that_cannot_be_stringified() -> None:
    assert redact(_Unprintable()) == FALLBACK  # type: ignore[arg-type]


def test_redact_stringifies_non_strings() -> None:
    assert redact(12345) == "12345"  # type: ignore[arg-type]


def test_redact_never_raises_on_random_input() -> None:
    rng = random.Random(20240115)
    alphabet = string.printable + "+@:=\"'-_.()[]{}é€٣\u0000\ud800"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))
        assert isinstance(redact(text), str)


@pytest.mark.parametrize(
    "text",
    [
        "cookie: x" + " " * 20_000 + "y",
        'password:"' * 2_000,
        "-----BEGIN PRIVATE KEY-----" * 200,
        "+1" + " 1" * 10_000,
        "a" * 100 + "@" + "b." * 10_000,
        "://a:" * 4_000,
    ],
    ids=[
        "header-whitespace",
        "unclosed-quotes",
        "unclosed-pem",
        "phone-groups",
        "email-labels",
        "url-userinfo",
    ],
)
def test_adversarial_input_is_handled_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 0.25


def _ten_kilobytes_of_log_text() -> str:
    line = (
        "Customer jane.doe@example.com called from +44 20 7946 0958 about order #12345 on "
        "2024-01-15T10:30:00Z; paid $1,234.56 with 4111 1111 1111 1111, token=abc123, "
        "release 1.2.3, trace 4bf92f3577b34da6a3ce929d0e0e4736.\n"
    )
    return (line * (10_240 // len(line) + 1))[:10_240]


def test_ten_kilobytes_are_redacted_in_well_under_five_milliseconds() -> None:
    text = _ten_kilobytes_of_log_text()
    redact(text)  # warm-up
    best = min(_timed(redact, text) for _ in range(5))
    assert best < 0.005, f"best of 5 runs took {best * 1000:.2f} ms"


def _timed(fn: Any, arg: str) -> float:
    started = time.perf_counter()
    fn(arg)
    return time.perf_counter() - started
