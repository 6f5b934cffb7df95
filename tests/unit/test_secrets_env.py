"""The environment secrets provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from vocalis.adapters.env_secrets import EnvSecretProvider, env_name
from vocalis.ports.secrets import SecretNotFound


def test_secret_paths_map_to_environment_names() -> None:
    assert env_name("llm/openai_api_key") == "VOCALIS_SECRET_LLM__OPENAI_API_KEY"
    assert env_name("/crm/api-token.v2") == "VOCALIS_SECRET_CRM__API_TOKEN_V2"


async def test_reads_the_environment_before_the_dotenv_file(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("VOCALIS_SECRET_A__B=from-file\nVOCALIS_SECRET_C=file-only\n")
    provider = EnvSecretProvider(environ={"VOCALIS_SECRET_A__B": "from-env"}, dotenv=dotenv)
    assert await provider.get("a/b") == "from-env"
    assert await provider.get("c") == "file-only"


async def test_missing_secret_raises_or_returns_none() -> None:
    provider = EnvSecretProvider(environ={})
    assert await provider.get_optional("nope") is None
    with pytest.raises(SecretNotFound):
        await provider.get("nope")
