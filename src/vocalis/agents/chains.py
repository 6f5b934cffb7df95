"""The process's model chains: configured endpoints → fallbacks → the extractive responder.

One `AgentModelChains` per process, built by the composition root with the adapter that
speaks to an endpoint (`connect`): every chain it builds — an agent's turn in the API, a
conversation's analysis in a worker — shares its circuit breakers, its cost ledger and
its pooled endpoint clients.

Secrets that agents reference (a model's `api_key_secret`) are read under the
organisation's own prefix, `orgs/<org_id>/<path>`, so one tenant can never make the
platform send another tenant's (or the platform's own) secrets anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from vocalis.agents.extractive import ExtractiveResponder
from vocalis.agents.model_providers import ModelProviderDirectory
from vocalis.agents.providers import CircuitBreakers, CostLedger, FallbackChatModel
from vocalis.agents.schemas import ModelSettings
from vocalis.ports.llm import (
    ChatDelta,
    ChatEndpoint,
    ChatMessage,
    ChatModel,
    ChatResult,
    ProviderBadRequest,
    ResponseFormat,
    ToolChoice,
    ToolSpec,
    collect,
)
from vocalis.ports.secrets import SecretNotFound, SecretProvider
from vocalis.settings import Settings

# Builds the adapter for one endpoint (the composition root passes the OpenAI client's).
Connect = Callable[[ChatEndpoint, SecretProvider], ChatModel]


class OrgSecrets:
    """A secrets provider confined to one organisation's prefix, `orgs/<org_id>/`."""

    name = "org-scoped"

    def __init__(self, inner: SecretProvider, org_id: str) -> None:
        self._inner = inner
        self._prefix = f"orgs/{org_id}/"

    def path_for(self, path: str) -> str:
        """The store path of an agent-referenced secret."""
        parts = path.strip("/").split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise SecretNotFound(path)
        return self._prefix + "/".join(parts)

    async def get(self, path: str) -> str:
        """The organisation's secret at `path`."""
        return await self._inner.get(self.path_for(path))

    async def get_optional(self, path: str) -> str | None:
        """The organisation's secret at `path`, or None."""
        return await self._inner.get_optional(self.path_for(path))

    async def ping(self) -> None:
        """Ping the underlying store."""
        await self._inner.ping()


@dataclass
class AgentModelChains:
    """Builds fallback chains sharing one set of breakers, one ledger and pooled clients."""

    connect: Connect
    secrets: SecretProvider
    breakers: CircuitBreakers = field(default_factory=CircuitBreakers)
    ledger: CostLedger = field(default_factory=CostLedger)
    providers: ModelProviderDirectory | None = None  # organisations' registered providers
    _models: dict[tuple[str, ChatEndpoint], ChatModel] = field(default_factory=dict)

    def endpoint_model(self, org_id: str, endpoint: ChatEndpoint) -> ChatModel:
        """The (pooled) model of one organisation's endpoint."""
        if endpoint.provider_id is not None:
            return ProviderModel(self, org_id, endpoint)
        key = (org_id, endpoint)
        model = self._models.get(key)
        if model is None:
            secrets = self.secrets if endpoint.deployment else OrgSecrets(self.secrets, org_id)
            model = self._models[key] = self.connect(endpoint, secrets)
        return model

    async def provider_model(self, org_id: str, endpoint: ChatEndpoint) -> ChatModel:
        """The model of a registered provider as it is now (its URL and key re-read)."""
        resolved = await self.providers.resolve(org_id, endpoint) if self.providers else None
        if resolved is None:
            raise ProviderBadRequest(
                f"The model provider {endpoint.provider_id!r} no longer exists.",
                provider=endpoint.provider,
                model=endpoint.model,
            )
        key = (org_id, resolved.endpoint)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = self.connect(resolved.endpoint, resolved.keys)
        return model

    def chain(
        self, org_id: str, endpoints: Sequence[ChatEndpoint], *, extractive: bool = True
    ) -> FallbackChatModel:
        """The endpoints in order, then (when `extractive`) the extractive responder."""
        chain = [self.endpoint_model(org_id, e) for e in endpoints]
        if extractive:
            chain.append(ExtractiveResponder())
        return FallbackChatModel(chain, breakers=self.breakers, ledger=self.ledger)

    async def aclose(self) -> None:
        """Close the endpoint clients."""
        models = list(self._models.values())
        self._models.clear()
        closers = [aclose() for m in models if (aclose := getattr(m, "aclose", None))]
        await asyncio.gather(*closers, return_exceptions=True)


class ProviderModel:
    """A `ChatModel` over an organisation's registered provider, resolved on each call.

    The chain is built synchronously per turn; the provider's URL and key live in the
    database, so they are looked up when the call starts (a deleted provider is a bad request,
    an edited one applies at once). Its circuit is the provider's, by id and model.
    """

    def __init__(self, chains: AgentModelChains, org_id: str, endpoint: ChatEndpoint) -> None:
        self._chains = chains
        self._org_id = org_id
        self.endpoint = endpoint
        self.provider = endpoint.provider
        self.model = endpoint.model
        self.breaker_key = f"{endpoint.provider}|{endpoint.provider_id}|{endpoint.model}"

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        stop: Sequence[str] = (),
        response_format: ResponseFormat | None = None,
    ) -> ChatResult:
        """The whole answer at once."""
        return await collect(
            self.stream(
                messages,
                tools=tools,
                tool_choice=tool_choice,
                temperature=temperature,
                max_tokens=max_tokens,
                timeout=timeout,
                stop=stop,
                response_format=response_format,
            )
        )

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        stop: Sequence[str] = (),
        response_format: ResponseFormat | None = None,
    ) -> AsyncIterator[ChatDelta]:
        """The provider's stream."""
        model = await self._chains.provider_model(self._org_id, self.endpoint)
        deltas = model.stream(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=timeout,
            stop=stop,
            response_format=response_format,
        )
        try:
            async for delta in deltas:
                yield delta
        finally:
            close = getattr(deltas, "aclose", None)
            if close is not None:
                await close()


def default_endpoint(settings: Settings) -> ChatEndpoint | None:
    """The deployment's default model (`VOCALIS_LLM_*`), or None when none is configured."""
    if not settings.llm_model:
        return None
    return ChatEndpoint(
        model=settings.llm_model,
        base_url=settings.llm_base_url or None,
        api_key_secret=settings.llm_api_key_secret or None,
        timeout_s=settings.llm_timeout_s,
        deployment=True,
    )


def chat_endpoints(model: ModelSettings, default: ChatEndpoint | None = None) -> list[ChatEndpoint]:
    """An agent's OpenAI-compatible endpoints, in chain order.

    An agent on provider `default` gets the deployment's model (`default`), when one is
    configured, before its fallbacks.
    """
    endpoints = [
        ChatEndpoint(
            model=e.model,
            base_url=e.base_url,
            api_key_secret=e.api_key_secret,
            timeout_s=e.timeout_s,
            provider_id=e.provider_id,
        )
        for e in model.endpoints()
    ]
    if model.provider == "default" and default is not None:
        endpoints.insert(0, default)
    return endpoints
