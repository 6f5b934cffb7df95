"""The glue between stored agents and the agent graph: one `AgentRuntime` per process.

It builds, for each turn, what the graph needs from an agent version: the model chain
(configured endpoints → fallbacks → the extractive responder, sharing one set of circuit
breakers and one cost ledger per process), the tools, the retriever and the event sink;
it owns the compiled graph and its checkpointer on the configured database.

Started by `runtime_lifespan`, which every router that needs it declares; it is
reference-counted so the runtime is built once however many of those routers are mounted.

Secrets that agents reference (a model's `api_key_secret`, `{{secret:…}}` in tool headers)
are read under the organisation's own prefix, `orgs/<org_id>/<path>`, so one tenant can
never make the platform send another tenant's (or the platform's own) secrets anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from vocalis.adapters.openai_chat import OpenAIChatModel
from vocalis.agents.events import AgentEvent
from vocalis.agents.extractive import ExtractiveResponder
from vocalis.agents.graph import (
    AgentContext,
    AgentSpec,
    AgentState,
    build_agent_graph,
    open_checkpointer,
    run_agent,
)
from vocalis.agents.providers import (
    CircuitBreakers,
    CostLedger,
    FallbackChatModel,
    ProviderConfig,
)
from vocalis.agents.schemas import AgentConfig, ModelEndpoint
from vocalis.agents.tools.base import EventSink, build_toolbox
from vocalis.core.backends import Backends
from vocalis.core.db import Database
from vocalis.core.ids import new_id
from vocalis.core.ssrf import Allowlist
from vocalis.events.outbox import record_event
from vocalis.ports.llm import ChatModel
from vocalis.ports.retriever import NullRetriever, Retriever
from vocalis.ports.secrets import SecretNotFound, SecretProvider
from vocalis.settings import Settings

log = structlog.get_logger(__name__)

Graph = CompiledStateGraph[AgentState, AgentContext, AgentState, AgentState]

# `backends.extras` keys other parts of the system may fill.
RETRIEVER_EXTRA = "retriever"  # a `Retriever` (the knowledge service's)
EVENT_SINK_EXTRA = "event_sink"  # an `EventSink` replacing the outbox (tests, embedding)


def outbox_sink(database: Database) -> EventSink:
    """An event sink writing to the transactional outbox (webhooks), one transaction each.

    Conversations live in the document store, so the event cannot share their transaction;
    a failure to record is logged and does not fail the conversation.
    """

    async def record(name: str, payload: Mapping[str, Any]) -> None:
        data = {k: v for k, v in payload.items() if k != "org_id"}
        try:
            async with database.session() as session:
                await record_event(
                    session=session, org_id=str(payload["org_id"]), type=name, data=data
                )
        except Exception:
            log.exception("event_not_recorded", event=name)

    return record


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
class AgentRuntime:
    """What every conversation turn in this process shares."""

    graph: Graph
    backends: Backends
    breakers: CircuitBreakers = field(default_factory=CircuitBreakers)
    ledger: CostLedger = field(default_factory=CostLedger)
    checkpointer: BaseCheckpointSaver[Any] | None = None
    _models: dict[tuple[str, ...], OpenAIChatModel] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        """The process's settings."""
        return self.backends.settings

    @property
    def retriever(self) -> Retriever:
        """The knowledge retriever, when the knowledge service registered one."""
        retriever = self.backends.extras.get(RETRIEVER_EXTRA)
        return retriever if isinstance(retriever, Retriever) else NullRetriever()

    @property
    def events(self) -> EventSink:
        """Where lifecycle events (`handoff.requested`, `conversation.*`) go."""
        sink = self.backends.extras.get(EVENT_SINK_EXTRA)
        if callable(sink):
            return sink
        return outbox_sink(self.backends.database)

    def _endpoint_model(self, org_id: str, endpoint: ModelEndpoint) -> OpenAIChatModel:
        key = (
            org_id,
            endpoint.model,
            endpoint.base_url or "",
            endpoint.api_key_secret or "",
            str(endpoint.timeout_s),
        )
        model = self._models.get(key)
        if model is None:
            config = ProviderConfig(
                model=endpoint.model,
                base_url=endpoint.base_url,
                api_key_secret=endpoint.api_key_secret,
                timeout_s=endpoint.timeout_s,
            )
            secrets = OrgSecrets(self.backends.secrets, org_id)
            model = self._models[key] = OpenAIChatModel(config.adapter_config(), secrets)
        return model

    def chat_model(self, org_id: str, config: AgentConfig) -> ChatModel:
        """The agent's chain: its endpoints in order, then the extractive responder."""
        chain: list[ChatModel] = [self._endpoint_model(org_id, e) for e in config.model.endpoints()]
        chain.append(ExtractiveResponder())
        return FallbackChatModel(chain, breakers=self.breakers, ledger=self.ledger)

    def context(
        self,
        *,
        org_id: str,
        conversation_id: str,
        agent_id: str,
        config: AgentConfig,
        events: EventSink | None = None,
    ) -> AgentContext:
        """The graph's run context for one turn of a conversation."""
        model = config.model
        return AgentContext(
            org_id=org_id,
            conversation_id=conversation_id,
            agent=AgentSpec(
                agent_id=agent_id,
                instructions=config.instructions,
                knowledge_base_ids=tuple(config.knowledge_base_ids),
                temperature=model.temperature,
                max_tokens=model.max_tokens,
                timeout_s=model.timeout_s,
                tool_choice=model.tool_choice,
            ),
            model=self.chat_model(org_id, config),
            toolbox=build_toolbox(config.tools),
            retriever=self.retriever,
            secrets=OrgSecrets(self.backends.secrets, org_id),
            outbound_allowlist=Allowlist(self.settings.outbound_allowlist_entries),
            events=events or self.events,
            ledger=self.ledger,
        )

    def run(self, ctx: AgentContext, user_text: str) -> AsyncIterator[AgentEvent]:
        """Run one turn; yields the graph's events, a `FinalMessage` last."""
        return run_agent(self.graph, ctx, user_text)

    async def seed_history(self, conversation_id: str, messages: Sequence[tuple[str, str]]) -> None:
        """Put earlier (role, content) messages into a conversation's checkpointed history."""
        if not messages:
            return
        values = {
            "messages": [
                {"id": new_id("msg"), "role": role, "content": content}
                for role, content in messages
            ]
        }
        # As if written by the last node: the next turn starts from the graph's entry.
        await self.graph.aupdate_state(
            {"configurable": {"thread_id": conversation_id}}, values, as_node="output_guard"
        )

    async def forget(self, conversation_id: str) -> None:
        """Drop a conversation's checkpoints (ephemeral conversations)."""
        if self.checkpointer is not None:
            await self.checkpointer.adelete_thread(conversation_id)

    async def aclose(self) -> None:
        """Close the model clients."""
        clients = [m._client for m in self._models.values()]
        self._models.clear()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


RuntimeFactory = Callable[[Backends], Awaitable[AgentRuntime]]


@asynccontextmanager
async def open_runtime(backends: Backends) -> AsyncIterator[AgentRuntime]:
    """A runtime whose graph checkpoints on the configured database."""
    async with open_checkpointer(backends.settings.resolved_database_url) as checkpointer:
        runtime = AgentRuntime(
            graph=build_agent_graph(checkpointer),
            backends=backends,
            ledger=CostLedger(backends.settings.llm_prices),
            checkpointer=checkpointer,
        )
        try:
            yield runtime
        finally:
            await runtime.aclose()


_STATE_KEY = "agent_runtime"
_STACK_KEY = "agent_runtime_stack"
_USERS_KEY = "agent_runtime_users"


@asynccontextmanager
async def runtime_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the process's agent runtime with the first router that needs it."""
    state = app.state
    users = getattr(state, _USERS_KEY, 0)
    if users == 0:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            runtime = await stack.enter_async_context(open_runtime(state.backends))
        except BaseException:
            await stack.aclose()
            raise
        setattr(state, _STACK_KEY, stack)
        setattr(state, _STATE_KEY, runtime)
        await _ensure_document_indexes(state.backends)
    setattr(state, _USERS_KEY, users + 1)
    try:
        yield
    finally:
        remaining = getattr(state, _USERS_KEY) - 1
        setattr(state, _USERS_KEY, remaining)
        if remaining == 0:
            stack = getattr(state, _STACK_KEY)
            setattr(state, _STATE_KEY, None)
            await stack.aclose()


async def _ensure_document_indexes(backends: Backends) -> None:
    from vocalis.conversations.store import ensure_indexes

    await ensure_indexes(backends.documents)


def get_runtime(app: Any) -> AgentRuntime:
    """The running agent runtime (started by `runtime_lifespan`)."""
    runtime = getattr(app.state, _STATE_KEY, None)
    if runtime is None:
        raise RuntimeError(
            "the agent runtime is not running: mount a router using runtime_lifespan"
        )
    assert isinstance(runtime, AgentRuntime)
    return runtime


def _runtime_of(request: Request) -> AgentRuntime:
    return get_runtime(request.app)


RuntimeDep = Annotated[AgentRuntime, Depends(_runtime_of)]
