"""Generated reference docs: regenerated from the code, drift is detected."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from vocalis.cli import app
from vocalis.docs_gen import GENERATORS, generate

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_reference_docs_match_the_code() -> None:
    assert generate(DOCS, check=True) == []


def test_check_reports_a_hand_edited_table(tmp_path: Path) -> None:
    shutil.copytree(DOCS, tmp_path / "docs")
    target = tmp_path / "docs" / "reference" / "environment.md"
    target.write_text(target.read_text().replace("VOCALIS_PORT", "VOCALIS_PORTX"))
    result = CliRunner().invoke(app, ["docs", "--check", "--root", str(tmp_path / "docs")])
    assert result.exit_code == 1
    assert "environment.md" in result.output


def test_regenerating_writes_every_reference_file(tmp_path: Path) -> None:
    written = generate(tmp_path, check=False)
    assert {p.name for p in written} == set(GENERATORS)
    assert generate(tmp_path, check=True) == []


def test_every_setting_is_in_the_environment_table() -> None:
    from vocalis.settings import Settings

    table = (DOCS / "reference" / "environment.md").read_text()
    for name in Settings.model_fields:
        assert f"`VOCALIS_{name.upper()}`" in table
