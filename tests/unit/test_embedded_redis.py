"""The embedded Redis keeps its socket path within the unix-socket length limit."""

from __future__ import annotations

from pathlib import Path

from vocalis.adapters import embedded_redis


def test_socket_lives_in_the_data_dir_when_short(tmp_path: Path) -> None:
    assert embedded_redis.socket_path(tmp_path) == (tmp_path / "redis.sock").resolve()


def test_deep_data_dirs_get_a_short_stable_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = embedded_redis.socket_path(deep)
    assert len(str(path).encode()) <= 100
    assert path == embedded_redis.socket_path(deep)
    assert path != embedded_redis.socket_path(tmp_path / ("f" * 60) / ("e" * 60))


def test_a_deep_data_dir_still_starts_a_server(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    try:
        url = embedded_redis.ensure_running(deep)
        assert url.startswith("unix:///") and embedded_redis.is_running(deep)
    finally:
        embedded_redis.stop(deep)
