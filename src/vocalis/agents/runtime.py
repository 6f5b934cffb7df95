"""The glue between stored agents and the agent graph: one `AgentRuntime` per process.

It builds, for each turn, what the graph needs from an agent version: the model chain
(from `backends.models`: configured endpoints → fallbacks → the extractive responder,
sharing one set of circuit breakers and one cost ledger per process), the tools, the
retriever and the event sink (`backends.retriever`, `backends.events`); it owns the
compiled graph and its checkpointer on the configured database.

The app factory opens it (`open_runtime`) with the backends from the composition root,
whatever routers are mounted. Secrets that agents reference (`{{secret:…}}` in tool
headers) are read under the organisation's own prefix (`OrgSecrets`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any

import structlog
from fastapi import Depends, Request
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph

from vocalis.agents import service as agents_service
from vocalis.agents.chains import OrgSecrets, chat_endpoints, default_endpoint
from vocalis.agents.events import AgentEvent
from vocalis.agents.graph import (
    AgentContext,
    AgentSpec,
    AgentState,
    GenerationOptions,
    build_agent_graph,
    conversation_messages,
    open_checkpointer,
    run_agent,
    run_agent_unsaved,
)
from vocalis.agents.mcp_servers import McpGateway, McpServerUse
from vocalis.agents.providers import FallbackChatModel
from vocalis.agents.runtimes.base import (
    AGENT_RUNTIME_UNAVAILABLE,
    CLIENT_TOOLS_UNSUPPORTED,
    CREWAI_INSTALL,
    require_runtime,
)
from vocalis.agents.schemas import AgentConfig
from vocalis.agents.tools.base import EventSink, Toolbox, build_toolbox
from vocalis.agents.tools.client import ClientTool, ToolOutput
from vocalis.core.backends import Backends
from vocalis.core.errors import NotFound, RequestError
from vocalis.core.ids import new_id
from vocalis.core.ssrf import Allowlist
from vocalis.ports.llm import ChatModel
from vocalis.ports.retriever import Retriever
from vocalis.settings import Settings

if TYPE_CHECKING:
    from vocalis.agents.runtimes.openai_agents import OpenAIAgentsEngine

log = structlog.get_logger(__name__)

Graph = CompiledStateGraph[AgentState, AgentContext, AgentState, AgentState]


@dataclass
class AgentRuntime:
    """What every conversation turn in this process shares."""

    graph: Graph
    backends: Backends
    checkpointer: BaseCheckpointSaver[Any] | None = None
    _mcp: McpGateway | None = field(default=None, init=False, repr=False)
    _openai_agents: OpenAIAgentsEngine | None = field(default=None, init=False, repr=False)

    @property
    def openai_agents(self) -> OpenAIAgentsEngine:
        """The OpenAI Agents SDK runtime (built on first use)."""
        if self._openai_agents is None:
            # Imported on first use: the SDK takes seconds to import, and most processes
            # (workers, the CLI, agents on langgraph) never need it.
            from vocalis.agents.runtimes.openai_agents import OpenAIAgentsEngine

            self._openai_agents = OpenAIAgentsEngine(
                load_agent=self.load_agent, chain_for=self.chat_model
            )
        return self._openai_agents

    async def load_agent(self, org_id: str, agent_id: str) -> AgentConfig | None:
        """The current configuration of one of the organisation's live agents, or None."""
        async with self.backends.database.session() as session:
            try:
                view = await agents_service.get_agent(
                    session=session, org_id=org_id, agent_id=agent_id
                )
            except NotFound:
                return None
            return view.config

    @property
    def mcp(self) -> McpGateway:
        """The gateway to organisations' MCP servers (built on first use)."""
        if self._mcp is None:
            self._mcp = McpGateway(
                client=self.backends.mcp,
                database=self.backends.database,
                cipher=self.backends.secret_box,
                settings=self.settings,
            )
        return self._mcp

    @property
    def settings(self) -> Settings:
        """The process's settings."""
        return self.backends.settings

    @property
    def retriever(self) -> Retriever:
        """The knowledge retriever (the composition root's, whatever routers are mounted)."""
        return self.backends.retriever

    @property
    def events(self) -> EventSink:
        """Where lifecycle events (`handoff.requested`, `conversation.*`) go."""
        return self.backends.events

    def chat_model(self, org_id: str, config: AgentConfig) -> ChatModel:
        """The agent's chain: its endpoints in order, then the extractive responder."""
        endpoints = chat_endpoints(config.model, default_endpoint(self.settings))
        return self.backends.models.chain(org_id, endpoints)

    def context(
        self,
        *,
        org_id: str,
        conversation_id: str,
        agent_id: str,
        config: AgentConfig,
        events: EventSink | None = None,
        client_tools: Sequence[ClientTool] = (),
        tool_choice: str | None = None,
        generation: GenerationOptions | None = None,
    ) -> AgentContext:
        """The graph's run context for one turn (`tool_choice` overrides the agent's;
        `generation` adds a caller's max_tokens, stop strings and response format)."""
        ctx = self._context(
            org_id, conversation_id, agent_id, config, events, client_tools, tool_choice
        )
        if generation is None:
            return ctx
        return replace(ctx, agent=generation.apply(ctx.agent))

    def _context(
        self,
        org_id: str,
        conversation_id: str,
        agent_id: str,
        config: AgentConfig,
        events: EventSink | None,
        client_tools: Sequence[ClientTool],
        tool_choice: str | None,
    ) -> AgentContext:
        model = config.model
        model_chain = self.chat_model(org_id, config)
        return AgentContext(
            org_id=org_id,
            conversation_id=conversation_id,
            agent=AgentSpec(
                agent_id=agent_id,
                instructions=config.instructions,
                name=config.name,
                runtime=config.runtime,
                handoffs=tuple(config.handoffs),
                crew=config.crew.model_dump(mode="json") if config.crew is not None else None,
                knowledge_base_ids=tuple(config.knowledge_base_ids),
                temperature=model.temperature,
                max_tokens=model.max_tokens,
                timeout_s=model.timeout_s,
                tool_choice=tool_choice or model.tool_choice,
            ),
            model=model_chain,
            toolbox=build_toolbox(config.tools),
            retriever=self.retriever,
            secrets=OrgSecrets(self.backends.secrets, org_id),
            outbound_allowlist=Allowlist(self.settings.outbound_allowlist_entries),
            events=events or self.events,
            ledger=model_chain.ledger if isinstance(model_chain, FallbackChatModel) else None,
            client_tools=tuple(client_tools),
            mcp_servers=tuple(
                McpServerUse(
                    s.server_id, tuple(s.allowed_tools) if s.allowed_tools is not None else None
                )
                for s in config.mcp_servers
            ),
        )

    async def run(
        self,
        ctx: AgentContext,
        user_text: str,
        tool_outputs: Sequence[ToolOutput] = (),
        *,
        graph: Graph | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Run one turn; yields the graph's events, a `FinalMessage` last.

        `graph` is a scratch copy (`scratch_graph`) for a turn that must not be checkpointed
        unless it is kept. The agent's MCP servers' tools join its toolbox first (listed
        live, or from a listing a few seconds old); a server that cannot be listed is left
        out of the turn.
        """
        ctx = await self.with_mcp_tools(ctx)
        events = self._engine_events(ctx, user_text, tool_outputs, graph or self.graph)
        try:
            async for event in events:
                yield event
        finally:
            close = getattr(events, "aclose", None)  # a caller that stops early ends the turn
            if close is not None:
                await close()

    async def run_unsaved(
        self,
        ctx: AgentContext,
        user_text: str,
        tool_outputs: Sequence[ToolOutput] = (),
        *,
        state: AgentState | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """One turn of a langgraph agent whose state is never kept (a one-off chat
        completion), on `state` (its history): the graph's nodes and edges run directly
        (`run_agent_unsaved`), with its MCP tools as in `run`."""
        ctx = await self.with_mcp_tools(ctx)
        # A caller that stops early ends the turn.
        async with aclosing(run_agent_unsaved(ctx, user_text, tool_outputs, state=state)) as events:
            async for event in events:
                yield event

    def _engine_events(
        self,
        ctx: AgentContext,
        user_text: str,
        tool_outputs: Sequence[ToolOutput],
        graph: Graph,
    ) -> AsyncIterator[AgentEvent]:
        """The events of the turn from the agent's runtime."""
        if ctx.agent.runtime == "openai_agents":
            return self._sdk_turn(ctx, user_text, graph)
        if ctx.agent.runtime == "crewai":
            return self._crew_turn(ctx, user_text, graph)
        return run_agent(graph, ctx, user_text, tool_outputs)

    async def _sdk_turn(
        self, ctx: AgentContext, user_text: str, graph: Graph
    ) -> AsyncIterator[AgentEvent]:
        if ctx.client_tools:  # said plainly rather than silently dropped
            raise RequestError(
                "This agent's runtime (openai_agents) does not run client-side tools yet; "
                "use the langgraph runtime for them.",
                code=CLIENT_TOOLS_UNSUPPORTED,
            )
        config: Any = {"configurable": {"thread_id": ctx.conversation_id}}
        history = await conversation_messages(graph, ctx.conversation_id)

        async def remember(messages: list[dict[str, Any]]) -> None:
            await graph.aupdate_state(config, {"messages": messages}, as_node="output_guard")

        async for event in self.openai_agents.run(
            ctx, user_text, history=history, remember=remember
        ):
            yield event

    async def _crew_turn(
        self, ctx: AgentContext, user_text: str, graph: Graph
    ) -> AsyncIterator[AgentEvent]:
        require_runtime("crewai")  # the clear install line while the extra is absent
        if ctx.client_tools:  # said plainly rather than silently dropped
            raise RequestError(
                "This agent's runtime (crewai) does not run client-side tools; "
                "use the langgraph runtime for them.",
                code=CLIENT_TOOLS_UNSUPPORTED,
            )
        # Imported on first use: CrewAI is an optional extra and takes seconds to import.
        try:
            from vocalis.agents.runtimes.crew import CrewEngine, plan_of
        except ImportError as exc:  # installed, but not whole
            raise RequestError(
                f"The 'crewai' runtime cannot be loaded ({exc}); the operator reinstalls it "
                f"with `{CREWAI_INSTALL}`.",
                code=AGENT_RUNTIME_UNAVAILABLE,
            ) from None

        config: Any = {"configurable": {"thread_id": ctx.conversation_id}}
        history = await conversation_messages(graph, ctx.conversation_id)

        async def remember(messages: list[dict[str, Any]]) -> None:
            await graph.aupdate_state(config, {"messages": messages}, as_node="output_guard")

        plan = plan_of(ctx.agent.crew, ctx.agent.name, ctx.agent.instructions)
        async for event in CrewEngine().run(
            ctx, user_text, plan, history=history, remember=remember
        ):
            yield event

    async def with_mcp_tools(self, ctx: AgentContext) -> AgentContext:
        """The context with its MCP servers' tools in the toolbox."""
        if not ctx.mcp_servers:
            return ctx
        taken = set(ctx.toolbox.tools) | {t.name for t in ctx.client_tools}
        extra = await self.mcp.agent_tools(ctx.org_id, ctx.mcp_servers, taken)
        toolbox = Toolbox([*ctx.toolbox.tools.values(), *extra])
        return replace(ctx, toolbox=toolbox)

    async def scratch_graph(self, conversation_id: str) -> tuple[Graph, list[dict[str, Any]]]:
        """A copy of the graph whose checkpoints stay in memory, seeded with the
        conversation's history (returned too): a speculative turn runs on it and leaves no
        checkpoint behind until `keep_scratch` copies its outcome."""
        scratch: Graph = self.graph.copy(update={"checkpointer": InMemorySaver()})
        config: Any = {"configurable": {"thread_id": conversation_id}}
        values = dict((await self.graph.aget_state(config)).values or {})
        if values:
            await scratch.aupdate_state(config, values, as_node="output_guard")
        return scratch, [dict(m) for m in values.get("messages", [])]

    async def keep_scratch(
        self, conversation_id: str, scratch: Graph, seed: Sequence[dict[str, Any]]
    ) -> None:
        """Write what a turn on `scratch` changed into the conversation's checkpointed history."""
        config: Any = {"configurable": {"thread_id": conversation_id}}
        after = dict((await scratch.aget_state(config)).values or {})
        before = {m["id"]: m for m in seed}
        changed = [m for m in after.get("messages", []) if before.get(m["id"]) != m]
        update: dict[str, Any] = {"messages": changed}
        if "turn" in after:
            update["turn"] = after["turn"]
        await self.graph.aupdate_state(config, update, as_node="output_guard")

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


@asynccontextmanager
async def open_runtime(backends: Backends) -> AsyncIterator[AgentRuntime]:
    """A runtime whose graph checkpoints on the configured database."""
    async with open_checkpointer(backends.settings.resolved_database_url) as checkpointer:
        yield AgentRuntime(
            graph=build_agent_graph(checkpointer), backends=backends, checkpointer=checkpointer
        )


RUNTIME_STATE = "agent_runtime"  # where the app factory keeps the runtime on `app.state`


def get_runtime(app: Any) -> AgentRuntime:
    """The app's agent runtime (opened by the app factory's lifespan)."""
    runtime = getattr(app.state, RUNTIME_STATE, None)
    if runtime is None:
        raise RuntimeError("the agent runtime is not running: the app's lifespan opens it")
    assert isinstance(runtime, AgentRuntime)
    return runtime


async def _runtime_of(request: Request) -> AgentRuntime:  # async: no thread-pool hop
    return get_runtime(request.app)


RuntimeDep = Annotated[AgentRuntime, Depends(_runtime_of)]
