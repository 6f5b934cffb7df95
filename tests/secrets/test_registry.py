"""The secret-path registry: complete, and rendered into the Vault-path reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import vocalis
from vocalis.adapters.env_secrets import env_name
from vocalis.adapters.vault_secrets import kv_location
from vocalis.secrets.registry import SECRET_PATHS, declare, vault_paths
from vocalis.settings import Settings
from vocalis.webhooks.secret_box import SECRET_PATH as WEBHOOK_KEY_PATH

SOURCE = Path(vocalis.__file__).parent
LITERAL_READ = re.compile(r"""secrets\.get(?:_optional)?\(\s*["']([^"']+)["']""")


def _pattern(declared: str) -> re.Pattern[str]:
    """`<placeholder>` matches one path segment (or part of one); the rest is literal."""
    parts = re.split(r"(<[^>]+>)", declared)
    return re.compile("".join("[^/]+" if p.startswith("<") else re.escape(p) for p in parts))


def _declared(path: str) -> bool:
    return any(_pattern(declared).fullmatch(path) for declared in SECRET_PATHS)


def test_every_literal_secret_path_in_the_code_is_declared() -> None:
    used = {
        path for module in SOURCE.rglob("*.py") for path in LITERAL_READ.findall(module.read_text())
    }
    assert used, "the scan found no secret reads at all: the pattern is broken"
    assert sorted(p for p in used if not _declared(p)) == []


def test_every_secret_path_setting_default_is_declared() -> None:
    defaults = [
        field.default
        for name, field in Settings.model_fields.items()
        if name.endswith("_secret") and isinstance(field.default, str) and field.default
    ]
    assert sorted(p for p in defaults if not _declared(p)) == []


def test_the_webhook_encryption_key_is_declared() -> None:
    assert WEBHOOK_KEY_PATH in SECRET_PATHS


def test_an_agents_llm_key_is_covered_by_the_org_pattern() -> None:
    assert _declared("orgs/org_123/llm/openai_api_key")
    assert not _declared("llm/openai_api_key")


def test_a_path_cannot_be_declared_twice() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        declare("s3/access_key_id", "again", used_by="x", rotation="y")


def test_the_reference_lists_each_path_with_its_vault_location_and_env_name() -> None:
    text = vault_paths(kv_location=kv_location, env_name=env_name)
    assert "| `llm/openai_api_key`" not in text
    assert "`secret/vocalis/s3` → `access_key_id`" in text
    assert "`VOCALIS_SECRET_WEBHOOKS__ENCRYPTION_KEY`" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(SECRET_PATHS)
