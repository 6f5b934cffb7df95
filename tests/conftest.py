"""Suite-wide fixtures; the real-server fixtures live in tests/fixtures/."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.seaweedfs",
    "tests.fixtures.mongo_wire",
    "tests.fixtures.llama_server",
    "tests.fixtures.embeddings",
    "tests.fixtures.openbao",
    "tests.fixtures.audio_server",
    "tests.fixtures.redis_server",
]
