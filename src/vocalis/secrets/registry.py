"""The one registry of secret paths Vocalis reads; the docs' Vault-path table comes from it.

A path is what code passes to the secrets port (`SecretProvider.get`). In Vault (KV v2) its
last segment is the key inside the KV secret at the parent path, under the configured base
path: `llm/openai_api_key` is the key `openai_api_key` of `<mount>/<base>/llm`. With the
environment provider it is `VOCALIS_SECRET_LLM__OPENAI_API_KEY`. Secrets that agents
reference are read under the organisation's own prefix `orgs/<org_id>/`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SecretPath:
    """One secret (or a pattern of secrets), who reads it and how to rotate it."""

    path: str
    description: str
    used_by: str
    rotation: str


SECRET_PATHS: dict[str, SecretPath] = {}


def declare(path: str, description: str, *, used_by: str, rotation: str) -> str:
    """Declare a secret path (or `<placeholder>` pattern) once and return it."""
    if path in SECRET_PATHS:
        raise ValueError(f"secret path {path!r} declared twice")
    SECRET_PATHS[path] = SecretPath(path, description, used_by, rotation)
    return path


# Read once per process (at start-up or first use): a new value needs a rolling restart.
_ROLL = "roll every API and worker pod (`kubectl rollout restart`: read once per process)"

S3_ACCESS_KEY_ID = declare(
    "s3/access_key_id",
    "Access key id for the S3 object store (`VOCALIS_OBJECT_STORE_URL=s3://…`); empty = "
    "the default AWS credential chain (instance role, IRSA).",
    used_by="object store (`core/backends.py`), API and workers",
    rotation=f"create a second key pair; write both keys in one KV write; {_ROLL}; "
    "then delete the old key pair",
)
S3_SECRET_ACCESS_KEY = declare(
    "s3/secret_access_key",
    "Secret access key paired with `s3/access_key_id`.",
    used_by="object store (`core/backends.py`), API and workers",
    rotation="together with `s3/access_key_id` (same KV secret `s3`)",
)
WEBHOOK_ENCRYPTION_KEY = declare(
    "webhooks/encryption_key",
    "Fernet key(s) encrypting webhook signing secrets at rest; several comma-separated "
    "keys: the first encrypts, all decrypt. Required in production.",
    used_by="webhooks (`webhooks/secret_box.py`), API and webhook workers",
    rotation=f"prepend a new key and keep the old ones; {_ROLL}; drop an old key only "
    "when nothing encrypted with it remains",
)
KNOWLEDGE_OPENAI_API_KEY = declare(
    "knowledge/openai_api_key",
    "API key of the OpenAI-compatible embeddings endpoint "
    "(path set by `VOCALIS_KNOWLEDGE_OPENAI_API_KEY_SECRET`).",
    used_by="knowledge embeddings (`VOCALIS_KNOWLEDGE_EMBEDDER=openai`), API and ingest workers",
    rotation=f"write a new version; {_ROLL}; then revoke the old key at the provider",
)
KNOWLEDGE_WEAVIATE_API_KEY = declare(
    "knowledge/weaviate_api_key",
    "Weaviate API key; missing = no authentication "
    "(path set by `VOCALIS_KNOWLEDGE_WEAVIATE_API_KEY_SECRET`).",
    used_by="vector store (`VOCALIS_KNOWLEDGE_VECTOR_STORE=weaviate`), API and ingest workers",
    rotation=f"add the new key to Weaviate, write it here; {_ROLL}; then remove the old key",
)
VOICE_OPENAI_API_KEY = declare(
    "voice/openai_api_key",
    "API key of the OpenAI-compatible speech-to-text and text-to-speech endpoints "
    "(path set by `VOCALIS_VOICE_OPENAI_API_KEY_SECRET`).",
    used_by="voice pipeline and audio endpoints (API)",
    rotation=f"write a new version; {_ROLL}; then revoke the old key at the provider",
)
ORG_LLM_API_KEY = declare(
    "orgs/<org_id>/llm/<provider>_api_key",
    "API key of an OpenAI-compatible model endpoint, referenced by an agent's "
    "`model.api_key_secret` as `llm/<provider>_api_key` (e.g. `llm/openai_api_key`).",
    used_by="agent runtime and analysis worker (`agents/chains.py`, `conversations/analysis.py`)",
    rotation="write a new version; picked up within `VOCALIS_VAULT_CACHE_TTL_SECONDS`; "
    "revoke the old key at the provider after that",
)
ORG_TOOL_SECRET = declare(
    "orgs/<org_id>/<folder>/<name>",
    "Any other secret an agent references by its own path, e.g. `{{secret:crm/api_token}}` "
    "in an HTTP tool header; always under the organisation's prefix (the folder may be "
    "nested, or absent: then `<name>` is a key of the KV secret `orgs/<org_id>`).",
    used_by="agent tools (`agents/tools/http_request.py`)",
    rotation="write a new version; picked up within `VOCALIS_VAULT_CACHE_TTL_SECONDS`",
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class KvLocation(Protocol):
    """Where a secret path lives in Vault: the KV secret and the key inside it."""

    @property
    def path(self) -> str:
        """The KV secret's path under the mount."""
        ...

    @property
    def key(self) -> str:
        """The key inside the KV secret."""
        ...


def vault_paths(
    *,
    kv_location: Callable[[str, str], KvLocation],
    env_name: Callable[[str], str],
    mount: str = "secret",
    base_path: str = "vocalis",
) -> str:
    """The Markdown reference of every secret path: Vault location, env name, rotation.

    The adapters own the mapping (`kv_location`, `env_name`); the docs generator passes them.
    """
    lines = [
        "# Vault secret paths",
        "",
        f"Read through the secrets port. In Vault (KV v2, mount `{mount}`, base path "
        f"`{base_path}` by default) the last segment of a path is the key inside the KV "
        "secret at its parent path. With `VOCALIS_SECRETS_BACKEND=env` each path is an "
        "environment variable. Vault reads are cached for `VOCALIS_VAULT_CACHE_TTL_SECONDS`.",
        "",
        "| Path | Vault KV secret → key | Environment variable | Description | Used by "
        "| Rotation |",
        "|---|---|---|---|---|---|",
    ]
    for entry in SECRET_PATHS.values():
        location = kv_location(entry.path, base_path)
        cells = [
            f"`{entry.path}`",
            f"`{mount}/{location.path}` → `{location.key}`",
            f"`{env_name(entry.path)}`",
            entry.description,
            entry.used_by,
            entry.rotation,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
