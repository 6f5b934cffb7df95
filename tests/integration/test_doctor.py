"""`vocalis doctor` checks every backend and explains failures in plain words."""

from __future__ import annotations

from pathlib import Path

from vocalis.core.doctor import diagnose
from vocalis.settings import Settings


async def test_doctor_reports_every_backend_ok(tmp_path: Path, redis_url: str) -> None:
    lines: list[str] = []
    settings = Settings(data_dir=tmp_path, redis_url=redis_url)
    assert await diagnose(settings, echo=lines.append) == []
    assert any(line.startswith("ok   database") for line in lines)
    assert lines[-1] == "all backends answer"


async def test_doctor_names_an_unreachable_redis_with_a_hint(tmp_path: Path) -> None:
    lines: list[str] = []
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")
    assert await diagnose(settings, echo=lines.append) == ["redis"]
    failing = next(line for line in lines if line.startswith("FAIL redis"))
    assert "Connect" in failing or "connect" in failing
    assert any("VOCALIS_REDIS_URL" in line for line in lines)


async def test_doctor_names_a_wrong_database_url(tmp_path: Path, redis_url: str) -> None:
    lines: list[str] = []
    settings = Settings(
        data_dir=tmp_path,
        redis_url=redis_url,
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
    )
    assert "database" in await diagnose(settings, echo=lines.append)
