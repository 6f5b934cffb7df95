"""Feature flags: registry defaults, deployment overrides, organisation overrides."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vocalis.flags.registry import FLAGS, RATE_LIMITING
from vocalis.flags.service import configure_flags, flag_value, set_org_overrides


@pytest.fixture(autouse=True)
def reset_flags() -> Iterator[None]:
    yield
    configure_flags({})
    set_org_overrides([])


def test_flag_defaults_come_from_the_registry() -> None:
    configure_flags({})
    assert flag_value(RATE_LIMITING) is True


def test_deployment_settings_override_the_default() -> None:
    configure_flags({"api.rate_limiting": False})
    assert flag_value(RATE_LIMITING) is False


def test_an_organisation_override_wins_for_that_organisation_only() -> None:
    configure_flags({"api.rate_limiting": True})
    set_org_overrides([("org_a", "api.rate_limiting", False)])
    assert flag_value(RATE_LIMITING, "org_a") is False
    assert flag_value(RATE_LIMITING, "org_b") is True


def test_unknown_flags_in_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown feature flags"):
        configure_flags({"no.such.flag": True})


def test_every_flag_is_documented() -> None:
    for flag in FLAGS.values():
        assert flag.description and flag.impact
