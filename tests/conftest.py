"""Suite-wide fixtures; the service fixtures live in tests/fixtures/."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.services",
]
