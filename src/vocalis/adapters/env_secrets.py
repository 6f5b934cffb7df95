"""Secrets from the environment (and `.env`): the embedded default.

A secret path such as `llm/openai_api_key` is read from `VOCALIS_SECRET_LLM__OPENAI_API_KEY`:
upper-cased, `/` → `__`, `-` and `.` → `_`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from vocalis.ports.secrets import SecretNotFound

PREFIX = "VOCALIS_SECRET_"


def env_name(path: str) -> str:
    """The environment variable that holds the secret at `path`."""
    return PREFIX + re.sub(r"[-.]", "_", path.strip("/").replace("/", "__")).upper()


class EnvSecretProvider:
    """Reads secrets from process environment first, then a `.env` file."""

    name = "env"

    def __init__(
        self, environ: Mapping[str, str] | None = None, dotenv: Path | None = None
    ) -> None:
        self._environ = environ if environ is not None else os.environ
        file_values = dotenv_values(dotenv) if dotenv and dotenv.exists() else {}
        self._file = {k: v for k, v in file_values.items() if v is not None}

    async def get(self, path: str) -> str:
        value = await self.get_optional(path)
        if value is None:
            raise SecretNotFound(path)
        return value

    async def get_optional(self, path: str) -> str | None:
        name = env_name(path)
        return self._environ.get(name) or self._file.get(name)

    async def ping(self) -> None:
        return None
