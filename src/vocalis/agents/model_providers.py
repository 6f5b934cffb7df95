"""Model providers an organisation registers: an OpenAI-compatible server and its API key.

`POST /v1/model-providers` `{"name", "kind": "openai_compatible", "base_url", "api_key",
"models"}` stores the key encrypted with the secret box (Fernet; the same keys as webhook
secrets) and never returns it: responses say only whether a key is set and its last four
characters. Agents reference a provider by id (`model.provider_id`, or a fallback's); the
chain then reads the base URL and decrypts the key on every request, so a changed key or URL
applies to the next call without a restart. The base URL passes the SSRF guard when saved
and again on every request (redirects included) — see `vocalis.core.ssrf`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator
from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from vocalis.core.db import Base, Database, Timestamps, utcnow
from vocalis.core.errors import Conflict, NotFound, RequestError, register
from vocalis.core.ids import new_id
from vocalis.core.lazy import Lazy
from vocalis.core.ssrf import Allowlist, Resolver, check_url
from vocalis.ports.llm import ChatEndpoint
from vocalis.ports.secrets import SecretCipher, SecretNotFound

MODEL_PROVIDER_NOT_FOUND = register(
    "model_provider_not_found",
    422,
    "Unknown model provider",
    "An agent references a model provider id that its organisation has not registered "
    "(or has deleted).",
)
MODEL_NOT_OFFERED = register(
    "model_not_offered",
    422,
    "Model not offered by the provider",
    "An agent names a model that is not in its model provider's `models` list.",
)

KEY_PATH = "model_provider/api_key"  # what the chain asks the provider's key store for
MAX_PROVIDERS_PER_ORG = 50

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
HttpBaseUrl = Annotated[
    str, StringConstraints(pattern=r"^https?://[^\s/?#]+[^\s]*$", max_length=500)
]


# --- table --------------------------------------------------------------------------------
class ModelProvider(Timestamps, Base):
    """An organisation's OpenAI-compatible model server."""

    __tablename__ = "model_providers"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        Index("ix_model_providers_org_id_id", "org_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("mpr"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40), default="openai_compatible")
    base_url: Mapped[str] = mapped_column(String(500))
    api_key_encrypted: Mapped[str | None] = mapped_column(
        Text, default=None, comment="The API key, Fernet-encrypted; null = keyless server."
    )
    api_key_last4: Mapped[str | None] = mapped_column(String(4), default=None)
    models: Mapped[list[Any]] = mapped_column(
        default=list, comment="Model names agents may use; empty = any."
    )


# --- API shapes ---------------------------------------------------------------------------
class ModelProviderCreate(BaseModel):
    """A new model provider."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["our-vllm"])
    kind: Literal["openai_compatible"] = Field(
        default="openai_compatible",
        description="The protocol spoken: OpenAI's chat completions (OpenAI, Ollama, vLLM, "
        "llama.cpp, LiteLLM…).",
    )
    base_url: HttpBaseUrl = Field(
        description="The server's `/v1` base URL; passes the SSRF guard.",
        examples=["https://api.openai.com/v1"],
    )
    api_key: SecretStr | None = Field(
        default=None,
        max_length=4096,
        description="Stored encrypted, never returned; empty for keyless servers.",
    )
    models: list[ModelName] = Field(
        default_factory=list,
        max_length=200,
        description="Model names agents may pick; empty = any name the server accepts.",
    )

    @field_validator("models")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class ModelProviderUpdate(BaseModel):
    """A change: given fields replace the current ones (`api_key: null` removes the key)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    base_url: HttpBaseUrl | None = None
    api_key: SecretStr | None = Field(default=None, max_length=4096)
    models: list[ModelName] | None = Field(default=None, max_length=200)


class ModelProviderOut(BaseModel):
    """A model provider; its key is never shown, only whether one is set."""

    object: Literal["model_provider"] = "model_provider"
    id: str
    name: str
    kind: str
    base_url: str
    has_api_key: bool
    api_key_last4: str | None = Field(
        default=None, description="The key's last four characters, to tell keys apart."
    )
    models: list[str]
    created_at: datetime
    updated_at: datetime


def provider_out(row: ModelProvider) -> ModelProviderOut:
    """The API view of a provider (no key)."""
    return ModelProviderOut(
        id=row.id,
        name=row.name,
        kind=row.kind,
        base_url=row.base_url,
        has_api_key=row.api_key_encrypted is not None,
        api_key_last4=row.api_key_last4,
        models=list(row.models or []),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# --- service ------------------------------------------------------------------------------
async def check_base_url(
    url: str, allowlist: Allowlist | Sequence[str], resolver: Resolver | None = None
) -> str:
    """The URL if the SSRF guard lets it through (raises `OutboundUrlForbidden`)."""
    return (await check_url(url, allowlist, resolver=resolver)).url


def _encrypt(cipher: SecretCipher, key: SecretStr | None) -> tuple[str | None, str | None]:
    if key is None or not key.get_secret_value():
        return None, None
    plain = key.get_secret_value()
    return cipher.encrypt(plain), plain[-4:] if len(plain) >= 8 else None


async def create_provider(
    *,
    session: AsyncSession,
    cipher: SecretCipher,
    org_id: str,
    body: ModelProviderCreate,
    allowlist: Allowlist | Sequence[str],
) -> ModelProvider:
    """Register a provider (its URL checked, its key encrypted)."""
    count = len((await session.scalars(_org_query(org_id))).all())
    if count >= MAX_PROVIDERS_PER_ORG:
        raise Conflict(f"An organisation may register at most {MAX_PROVIDERS_PER_ORG} providers.")
    base_url = await check_base_url(body.base_url, allowlist)
    encrypted, last4 = _encrypt(cipher, body.api_key)
    row = ModelProvider(
        org_id=org_id,
        name=body.name,
        kind=body.kind,
        base_url=base_url.rstrip("/"),
        api_key_encrypted=encrypted,
        api_key_last4=last4,
        models=list(body.models),
    )
    session.add(row)
    await _flush_named(session, body.name)
    return row


async def _flush_named(session: AsyncSession, name: str) -> None:
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"A model provider named {name!r} already exists.") from None


def _org_query(org_id: str) -> Any:
    return select(ModelProvider).where(ModelProvider.org_id == org_id)


async def get_provider(*, session: AsyncSession, org_id: str, provider_id: str) -> ModelProvider:
    """One provider of the organisation, or NotFound."""
    row = await session.scalar(_org_query(org_id).where(ModelProvider.id == provider_id))
    if row is None:
        raise NotFound(f"No model provider {provider_id!r}.")
    return row


async def list_providers(
    *, session: AsyncSession, org_id: str, limit: int, after: str | None = None
) -> list[ModelProvider]:
    """The organisation's providers, newest first."""
    query = _org_query(org_id).order_by(ModelProvider.id.desc())
    if after:
        query = query.where(ModelProvider.id < after)
    return list((await session.scalars(query.limit(limit))).all())


async def update_provider(
    *,
    session: AsyncSession,
    cipher: SecretCipher,
    org_id: str,
    provider_id: str,
    body: ModelProviderUpdate,
    allowlist: Allowlist | Sequence[str],
) -> ModelProvider:
    """Change a provider; a new URL passes the SSRF guard, a new key is encrypted."""
    row = await get_provider(session=session, org_id=org_id, provider_id=provider_id)
    given = body.model_fields_set
    if body.name is not None:
        row.name = body.name
    if body.base_url is not None:
        row.base_url = (await check_base_url(body.base_url, allowlist)).rstrip("/")
    if "api_key" in given:
        row.api_key_encrypted, row.api_key_last4 = _encrypt(cipher, body.api_key)
    if body.models is not None:
        row.models = list(dict.fromkeys(body.models))
    row.updated_at = utcnow()
    await _flush_named(session, row.name)
    return row


async def delete_provider(*, session: AsyncSession, org_id: str, provider_id: str) -> None:
    """Delete a provider; agents that reference it fail over to their next endpoint."""
    row = await get_provider(session=session, org_id=org_id, provider_id=provider_id)
    await session.delete(row)
    await session.flush()


async def check_agent_providers(
    *, session: AsyncSession, org_id: str, references: Sequence[tuple[str, str]]
) -> None:
    """Refuse an agent whose `(provider_id, model)` pairs name unknown providers or models."""
    for provider_id, model in references:
        row = await session.scalar(_org_query(org_id).where(ModelProvider.id == provider_id))
        if row is None:
            raise RequestError(
                f"No model provider {provider_id!r} in this organisation.",
                code=MODEL_PROVIDER_NOT_FOUND,
            )
        if row.models and model not in row.models:
            raise RequestError(
                f"Model provider {row.name!r} does not offer {model!r}; "
                f"it offers {', '.join(row.models)}.",
                code=MODEL_NOT_OFFERED,
            )


# --- resolving an agent's reference at call time -----------------------------------------
@dataclass(frozen=True)
class ResolvedProvider:
    """Where an organisation's provider lives now, and a store holding its key."""

    endpoint: ChatEndpoint
    keys: ProviderKey


class ProviderKey:
    """A one-secret store: the provider's decrypted key, read from the table on each call."""

    name = "model-provider"

    def __init__(self, directory: ModelProviderDirectory, org_id: str, provider_id: str) -> None:
        self._directory = directory
        self._org_id = org_id
        self._provider_id = provider_id

    async def get(self, path: str) -> str:
        """The key (raises `SecretNotFound` when the provider has none or is gone)."""
        key = await self.get_optional(path)
        if key is None:
            raise SecretNotFound(path)
        return key

    async def get_optional(self, path: str) -> str | None:
        """The key, or None."""
        row = await self._directory.row(self._org_id, self._provider_id)
        if row is None or row.api_key_encrypted is None:
            return None
        return (await self._directory.cipher.get()).decrypt(row.api_key_encrypted)

    async def ping(self) -> None:
        """Nothing to reach beyond the database."""


class ModelProviderDirectory:
    """Looks up an organisation's providers for the model chains (one per process)."""

    def __init__(self, database: Database, cipher: Lazy[SecretCipher]) -> None:
        self.database = database
        self.cipher = cipher

    async def row(self, org_id: str, provider_id: str) -> ModelProvider | None:
        """The provider's current row (None when deleted)."""
        async with self.database.session() as session:
            row = await session.scalar(_org_query(org_id).where(ModelProvider.id == provider_id))
            if row is not None:
                session.expunge(row)
            return row

    async def resolve(self, org_id: str, endpoint: ChatEndpoint) -> ResolvedProvider | None:
        """The endpoint with the provider's base URL and key store; None when it is gone."""
        assert endpoint.provider_id is not None
        row = await self.row(org_id, endpoint.provider_id)
        if row is None:
            return None
        resolved = ChatEndpoint(
            model=endpoint.model,
            base_url=row.base_url,
            api_key_secret=KEY_PATH if row.api_key_encrypted is not None else None,
            provider=endpoint.provider,
            timeout_s=endpoint.timeout_s,
            stream_usage=endpoint.stream_usage,
            provider_id=row.id,
        )
        return ResolvedProvider(resolved, ProviderKey(self, org_id, row.id))
