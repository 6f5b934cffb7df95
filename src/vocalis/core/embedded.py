"""Where embedded mode's Redis listens: one layout for the adapter that starts the server
and for every process (API, worker, beat) that connects to it."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

REDIS_SOCKET_NAME = "redis.sock"
_MAX_SOCKET_PATH = 100  # unix socket paths are limited to ~104 bytes


def redis_socket_path(data_dir: Path) -> Path:
    """The embedded server's unix socket (in the temp directory when the data dir is deep)."""
    path = (data_dir / REDIS_SOCKET_NAME).resolve()
    if len(str(path).encode()) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"vocalis-redis-{digest}.sock"


def redis_url(data_dir: Path) -> str:
    """The redis-py URL of the embedded server."""
    return f"unix://{redis_socket_path(data_dir)}"
