"""The layer contract: every import-linter contract in pyproject.toml holds.

Domains -> ports <- adapters; only the composition root (`vocalis.wiring`), the CLI and
the docs generator import adapters; the top-level packages form layers with no cycles;
the voice conversation imports no transport. In-function imports count.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
    "contracts"
]


@pytest.mark.parametrize("contract", CONTRACTS, ids=[c["id"] for c in CONTRACTS])
def test_the_contract_holds(contract: dict[str, object]) -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--contract", str(contract["id"])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{contract['name']} is broken:\n{result.stdout}"


def test_every_top_level_package_has_its_place_in_the_layers() -> None:
    [layers] = [c for c in CONTRACTS if c["id"] == "layers"]
    assert layers.get("exhaustive") is True, "a new package must be placed in a layer"


def test_a_crossed_layer_breaks_the_contract(tmp_path: Path) -> None:
    """A copy of the package with one in-function import from core into a domain."""
    copy = tmp_path / "src" / "vocalis"
    shutil.copytree(ROOT / "src" / "vocalis", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "core" / "layer_probe.py").write_text(
        "def probe() -> None:\n    from vocalis.agents import runtime  # noqa: F401\n"
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--contract", "layers"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "vocalis.core.layer_probe -> vocalis.agents.runtime" in result.stdout
