"""The API's GIL switch interval comes from settings (issue 11: SQLite threads hand over)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from vocalis.app import create_app
from vocalis.settings import Settings


@pytest.fixture
def restored_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("restored_interval")
@pytest.mark.parametrize(("ms", "expected_s"), [(0.5, 0.0005), (5, 0.005), (0, 0.00005)])
def test_the_app_sets_the_configured_switch_interval(ms: float, expected_s: float) -> None:
    create_app(Settings(gil_switch_interval_ms=ms))
    assert sys.getswitchinterval() == pytest.approx(expected_s)


def test_the_default_is_half_a_millisecond() -> None:
    assert Settings().gil_switch_interval_ms == 0.5
