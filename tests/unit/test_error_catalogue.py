"""The error catalogue is complete and consistent."""

from __future__ import annotations

import pytest

from vocalis.app import create_app
from vocalis.core.errors import CATALOGUE, VocalisError


def test_every_code_has_status_title_and_explanation() -> None:
    create_app()
    for entry in CATALOGUE.values():
        assert 400 <= entry.status < 600
        assert entry.title and entry.when
        assert entry.code == entry.code.lower() and " " not in entry.code


def test_raising_an_uncatalogued_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="uncatalogued"):
        VocalisError(code="made_up")


def test_every_error_class_maps_to_a_catalogued_code() -> None:
    def walk(cls: type[VocalisError]) -> list[type[VocalisError]]:
        return [cls] + [s for sub in cls.__subclasses__() for s in walk(sub)]

    for cls in walk(VocalisError):
        assert cls.code in CATALOGUE, cls
