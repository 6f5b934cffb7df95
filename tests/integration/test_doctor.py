"""`vocalis doctor` checks every backend and explains failures in plain words."""

from __future__ import annotations

from pathlib import Path

from vocalis.settings import Settings
from vocalis.wiring.doctor import diagnose


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


async def test_doctor_names_the_fallbacks_production_would_refuse(
    tmp_path: Path, redis_url: str
) -> None:
    lines: list[str] = []
    settings = Settings(data_dir=tmp_path, redis_url=redis_url, env="production")
    failing = await diagnose(settings, echo=lines.append)
    assert failing[0] == "production"
    refusal = next(line for line in lines if line.startswith("FAIL production"))
    assert "sqlite" in refusal and "embedded_redis" not in refusal
