"""A one-off chat completion (no `user`): the conversation is written once, when it is over.

A completion without `user` starts a conversation nobody else knows the id of, answers
one turn and ends it. Going through the general conversation machinery would write the
conversation, the user message, three conversation updates, the reply, the checkpoints
and two separately committed events for every request. Here the turn runs on a copy of
the agent graph whose checkpoints stay in memory (seeded with the request's history), and
when it is over — answered or failed — the same records are written in three operations:
the ended conversation, its messages (`insert_many`), and its events (`conversation.started`,
any raised during the turn such as `handoff.requested`, then `conversation.ended`, in that
order, held in one outbox transaction before the writes: see `vocalis.ports.events`). When
the document store is the JSON table of the outbox's own database (the embedded default,
or PostgreSQL without a document-store URL), all of it is one transaction instead
(`OutboxSink.record_with_documents`).

What is stored is what the general path stores: the same documents, fields and events,
with `ephemeral: true` and `ended_reason` `completed` (or the agent's own ending).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from langgraph.checkpoint.memory import InMemorySaver

from vocalis.agents import service as agents
from vocalis.agents.events import AgentEvent, FinalMessage, ToolCallEvent, ToolResultEvent
from vocalis.agents.graph import AgentContext, AgentState, GenerationOptions, Message, new_turn
from vocalis.agents.runtime import AgentRuntime, Graph
from vocalis.agents.schemas import AgentConfig
from vocalis.agents.tools.client import ClientTool, ToolOutput
from vocalis.conversations import service as conversations
from vocalis.conversations import store
from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.core.ids import new_id
from vocalis.core.redaction import redact
from vocalis.ports.document_store import Document
from vocalis.ports.events import Witness, emit_with_change
from vocalis.webhooks.dispatch import settle_undeliverable

log = structlog.get_logger(__name__)

# One in-memory-checkpointed copy of each runtime's graph (threads are deleted after use).
_MEMORY_GRAPHS: dict[int, tuple[Graph, Graph]] = {}


def memory_graph(runtime: AgentRuntime) -> Graph:
    """The runtime's graph with checkpoints kept in process memory."""
    key = id(runtime.graph)
    cached = _MEMORY_GRAPHS.get(key)
    if cached is None or cached[0] is not runtime.graph:
        copy: Graph = runtime.graph.copy(update={"checkpointer": InMemorySaver()})
        cached = _MEMORY_GRAPHS[key] = (runtime.graph, copy)
    return cached[1]


def _message(
    conversation_id: str, sequence: int, role: str, content: str, redacted: bool, **more: Any
) -> Document:
    return {
        "_id": more.pop("message_id", None) or new_id("msg"),
        "conversation_id": conversation_id,
        "sequence": sequence,
        "role": role,
        "content": content,
        "content_redacted": redact(content) if redacted else None,
        "created_at": store.iso(utcnow()),
        **more,
    }


@dataclass
class OneOffTurn:
    """The one turn of a one-off conversation; stored when `events` ends (or on `close`)."""

    backends: Backends
    runtime: AgentRuntime
    org_id: str
    conversation: Document
    config: AgentConfig
    history: list[Message]  # graph messages before the turn (client tool exchanges too)
    user_message: Document
    reply_id: str = field(default_factory=lambda: new_id("msg"))
    client_tools: tuple[ClientTool, ...] = ()
    tool_choice: str | None = None
    generation: GenerationOptions | None = None
    # Outputs of the client tool calls that end `history` (the turn goes on from them).
    tool_outputs: tuple[ToolOutput, ...] = ()
    awaiting: list[dict[str, str]] = field(default_factory=list)
    _messages: list[Document] = field(default_factory=list)
    _events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _stored: bool = False

    @property
    def conversation_id(self) -> str:
        """The conversation's id."""
        return str(self.conversation["_id"])

    async def events(self) -> AsyncIterator[conversations.TurnEvent]:
        """Run the agent: its events, then a `TurnResult`; everything is stored at the end."""
        try:
            final: FinalMessage | None = None
            calls: list[ToolCallEvent] = []
            results: list[ToolResultEvent] = []
            ctx = self.runtime.context(
                org_id=self.org_id,
                conversation_id=self.conversation_id,
                agent_id=self.conversation["agent_id"],
                config=self.config,
                events=self._sink,
                client_tools=self.client_tools,
                tool_choice=self.tool_choice,
                generation=self.generation,
            )
            seed: AgentState = {}
            if self.history:
                seed["messages"] = self.history
                if self.awaiting:  # the previous turn ended on these client calls
                    seed["turn"] = {
                        **new_turn(self.user_message["content"]),
                        "awaiting": self.awaiting,
                    }
            text = "" if self.tool_outputs else self.user_message["content"]
            async for event in self._run(ctx, text, seed):
                if isinstance(event, FinalMessage):
                    final = event
                    continue
                if isinstance(event, ToolCallEvent):
                    calls.append(event)
                elif isinstance(event, ToolResultEvent):
                    results.append(event)
                yield event
            if final is None:  # pragma: no cover - the graph always ends with one
                raise RuntimeError("the agent turn ended without a final message")
            reply = self._reply(final, calls, results)
            ended_by_agent = self._ending(final)
            await self._store(reply, ended_by_agent)
            yield conversations.TurnResult(reply, final, ended_by_agent is not None)
        finally:
            await self.close()

    def _run(self, ctx: AgentContext, text: str, seed: AgentState) -> AsyncIterator[AgentEvent]:
        """The turn's events. Nothing of it is kept, so a langgraph agent's turn runs the
        graph's nodes directly on the seed (`AgentRuntime.run_unsaved`: no Pregel loop, no
        checkpoints; its events are iterated as they come, with no generator of ours in
        between); the SDK runtimes keep their history in a graph, here one with in-memory
        checkpoints, deleted after the turn."""
        if ctx.agent.runtime == "langgraph":
            return self.runtime.run_unsaved(ctx, text, self.tool_outputs, state=seed or None)
        return self._run_checkpointed(ctx, text, seed)

    async def _run_checkpointed(
        self, ctx: AgentContext, text: str, seed: AgentState
    ) -> AsyncIterator[AgentEvent]:
        graph = memory_graph(self.runtime)
        thread: Any = {"configurable": {"thread_id": self.conversation_id}}
        if seed:
            await graph.aupdate_state(thread, seed, as_node="output_guard")
        try:
            async for event in self.runtime.run(ctx, text, self.tool_outputs, graph=graph):
                yield event
        finally:
            checkpointer = graph.checkpointer
            if isinstance(checkpointer, InMemorySaver):
                await checkpointer.adelete_thread(self.conversation_id)

    async def close(self) -> None:
        """Store the conversation if `events` did not (it failed or never ran)."""
        await self._store(None, None)

    async def _sink(self, name: str, payload: Mapping[str, Any]) -> None:
        # Held until the conversation is stored, so that `conversation.started` comes first.
        if name == "handoff.requested":
            handoff = {"requested_at": store.iso(utcnow()), "reason": payload.get("reason", "")}
            self.conversation["handoff"] = handoff
            payload = {**payload, "requested_at": handoff["requested_at"]}
        self._events.append((name, dict(payload)))

    def _reply(
        self, final: FinalMessage, calls: list[ToolCallEvent], results: list[ToolResultEvent]
    ) -> Document:
        usage = final.usage
        return _message(
            self.conversation_id,
            self.user_message["sequence"] + 1,
            "assistant",
            final.content,
            self.user_message["content_redacted"] is not None,
            message_id=self.reply_id,
            citations=[asdict(c) for c in final.citations],
            tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls],
            tool_results=[
                {"id": r.id, "name": r.name, "content": r.content, "is_error": r.is_error}
                for r in results
            ],
            usage={
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                "cost_usd": usage.cost_usd,
                "estimated": usage.estimated,
                "provider": usage.provider,
                "model": usage.model,
            },
            latency_ms=dict(final.latency_ms),
            flags=list(final.flags),
            handoff=final.handoff,
            end_conversation=final.end_conversation,
            replaced=final.replaced,
            awaiting_tool_calls=list(final.awaiting_tool_calls),
        )

    def _ending(self, final: FinalMessage) -> str | None:
        """The agent's own reason to end the conversation, as the general path decides it."""
        if final.end_conversation:
            return "agent_ended"
        if final.awaiting_tool_calls:
            return None
        phrases = self.config.end_of_conversation_phrases
        if conversations.says_end_phrase(self.user_message["content"], phrases):
            return "end_phrase"
        return None

    async def _store(self, reply: Document | None, reason: str | None) -> None:
        if self._stored:
            return
        self._stored = True
        doc = self.conversation
        messages = [self.user_message] if reply is None else [self.user_message, reply]
        ended = utcnow()
        started = store.parse_iso(doc["created_at"]) or ended
        doc.update(
            status="ended",
            ended_at=store.iso(ended),
            ended_reason=reason or "completed",
            duration_s=round((ended - started).total_seconds(), 3),
            message_count=len(messages),
            last_message_at=messages[-1]["created_at"],
            awaiting_tool_calls=[],
        )
        if reply is not None:
            usage = reply["usage"]
            doc["usage"] = {
                "prompt_tokens": usage["prompt_tokens"],
                "completion_tokens": usage["completion_tokens"],
                "cost_usd": usage["cost_usd"],
            }
        events = [
            ("conversation.started", conversations._started_payload(self.org_id, doc)),
            *self._events,
            ("conversation.ended", conversations._ended_payload(self.org_id, doc)),
        ]

        async def insert() -> bool:
            # Messages first: the conversation document is the witness of the whole write.
            await self.backends.documents.insert_many(store.MESSAGES, self.org_id, messages)
            await store.insert_conversation(self.backends.documents, self.org_id, doc)
            return True

        # With the document store in the outbox's database (the embedded default) the
        # events, messages and conversation are one transaction; otherwise the events are
        # held in the outbox (one transaction) before the writes.
        shared = getattr(self.backends.events, "record_with_documents", None)
        inserts = [
            (store.MESSAGES, self.org_id, messages),
            (store.CONVERSATIONS, self.org_id, [doc]),
        ]
        # Events nothing would be dispatched to (no webhook endpoint, no consumer) are
        # marked dispatched in that transaction: no dispatch task (`settle_undeliverable`).
        if shared is None or not await shared(
            events, self.backends.documents, inserts, settle=settle_undeliverable
        ):
            await emit_with_change(
                self.backends.events, events, Witness(store.CONVERSATIONS, doc["_id"]), insert
            )
        log.info(
            "conversation_started",
            conversation_id=doc["_id"],
            agent_id=doc["agent_id"],
            channel=doc["channel"],
        )
        log.info("conversation_ended", conversation_id=doc["_id"], reason=doc["ended_reason"])


async def begin_one_off(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    agent_id: str,
    history: list[Message],
    content: str,
    metadata: Mapping[str, str],
) -> OneOffTurn:
    """Check the agent (404) and prepare the turn; nothing is stored yet."""
    # The current version (one read); its configuration is immutable and cached by version.
    version = await agents.current_version(
        database=backends.database, org_id=org_id, agent_id=agent_id
    )
    config = await conversations.agent_config(
        backends.database, org_id=org_id, agent_id=agent_id, version=version
    )
    now = store.iso(utcnow())
    conversation_id = new_id("cnv")
    doc: Document = {
        "_id": conversation_id,
        "agent_id": agent_id,
        "agent_version": version,
        "channel": "api",
        "status": "active",
        "created_at": now,
        "last_message_at": None,
        "ended_at": None,
        "ended_reason": None,
        "duration_s": None,
        "message_count": 0,
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0},
        "handoff": None,
        "external_user": None,
        "ephemeral": True,
        "metadata": dict(metadata),
    }
    user = _message(
        conversation_id, 1, "user", content, conversations.redaction_on(backends, org_id)
    )
    return OneOffTurn(backends, runtime, org_id, doc, config, history, user)
