"""Conversations: start, list, read, end, and run one agent turn with its transcript.

A turn is split in two so that transports can answer errors properly before they start
streaming: `begin_turn` checks the conversation (404, ended → 409, busy → 409), takes the
conversation's turn lock and stores the user's message; `Turn.events()` then runs the agent
and yields its events, stores the assistant's message and ends with a `TurnResult`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import structlog

from vocalis.agents import service as agents
from vocalis.agents.events import AgentEvent, FinalMessage, ToolCallEvent, ToolResultEvent
from vocalis.agents.graph import GenerationOptions
from vocalis.agents.runtime import AgentRuntime
from vocalis.agents.schemas import AgentConfig
from vocalis.agents.tools.base import EventSink, Toolbox, ToolContext, ToolResult, build_toolbox
from vocalis.agents.tools.client import (
    ClientTool,
    ToolOutput,
    ToolOutputNotAwaited,
    check_client_tools,
    check_tool_choice,
)
from vocalis.conversations import store
from vocalis.conversations.errors import ConversationBusy, ConversationEnded
from vocalis.core.backends import Backends
from vocalis.core.db import Database, utcnow
from vocalis.core.errors import NotFound
from vocalis.core.ids import new_id
from vocalis.core.redaction import redact
from vocalis.flags.registry import PII_REDACTION_IN_TRANSCRIPTS
from vocalis.flags.service import flag_value
from vocalis.ports.document_store import Document, insert_then_update
from vocalis.ports.events import Witness, emit_with_change
from vocalis.ports.llm import ToolCall

log = structlog.get_logger(__name__)

_CONFIG_CACHE: OrderedDict[tuple[str, str, int], AgentConfig] = OrderedDict()
_CONFIG_CACHE_SIZE = 256


@dataclass(frozen=True)
class TurnResult:
    """The end of a successful turn: the stored assistant message and its effects."""

    message: Document
    final: FinalMessage
    conversation_ended: bool

    @property
    def awaiting_tool_calls(self) -> tuple[str, ...]:
        """Ids of the client tool calls whose outputs the next turn must bring."""
        return self.final.awaiting_tool_calls


TurnEvent = AgentEvent | TurnResult


def _not_found(conversation_id: str) -> NotFound:
    return NotFound(f"No conversation {conversation_id!r}.")


def redaction_on(backends: Backends, org_id: str) -> bool:
    """Whether messages of this organisation get a redacted copy."""
    return backends.settings.redact_pii and flag_value(PII_REDACTION_IN_TRANSCRIPTS, org_id)


async def agent_config(
    database: Database, *, org_id: str, agent_id: str, version: int
) -> AgentConfig:
    """One agent version's configuration (versions are immutable, so they are cached)."""
    key = (org_id, agent_id, version)
    cached = _CONFIG_CACHE.get(key)
    if cached is not None:
        _CONFIG_CACHE.move_to_end(key)
        return cached
    async with database.session() as session:
        row = await agents.get_version(
            session=session, org_id=org_id, agent_id=agent_id, version=version
        )
    config = AgentConfig.model_validate(row.config)
    _CONFIG_CACHE[key] = config
    if len(_CONFIG_CACHE) > _CONFIG_CACHE_SIZE:
        _CONFIG_CACHE.popitem(last=False)
    return config


def _message_doc(
    *,
    conversation_id: str,
    sequence: int,
    role: str,
    content: str,
    redacted: bool,
    message_id: str | None = None,
) -> Document:
    return {
        "_id": message_id or new_id("msg"),
        "conversation_id": conversation_id,
        "sequence": sequence,
        "role": role,
        "content": content,
        "content_redacted": redact(content) if redacted else None,
        "created_at": store.iso(utcnow()),
    }


# --- lifecycle ----------------------------------------------------------------------------
async def start_conversation(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    agent_id: str,
    channel: str = "api",
    metadata: Mapping[str, str] | None = None,
    external_user: str | None = None,
    ephemeral: bool = False,
    greet: bool = True,
) -> Document:
    """A new active conversation on the agent's current version (404 for unknown agents).

    The agent's first message, when configured (and `greet`), is stored as message 1 and
    put in the model's history.
    """
    async with backends.database.session() as session:
        view = await agents.get_agent(session=session, org_id=org_id, agent_id=agent_id)
    config = view.config
    now = store.iso(utcnow())
    doc: Document = {
        "_id": new_id("cnv"),
        "agent_id": agent_id,
        "agent_version": view.agent.version,
        "channel": channel,
        "status": "active",
        "created_at": now,
        "last_message_at": None,
        "ended_at": None,
        "ended_reason": None,
        "duration_s": None,
        "message_count": 0,
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0},
        "handoff": None,
        "external_user": external_user,
        "ephemeral": ephemeral,
        "metadata": dict(metadata or {}),
    }
    if config.first_message and greet:
        first = _message_doc(
            conversation_id=doc["_id"],
            sequence=1,
            role="assistant",
            content=config.first_message,
            redacted=redaction_on(backends, org_id),
        )
        doc["message_count"] = 1
        doc["last_message_at"] = now
        await store.insert_message(backends.documents, org_id, first)
        await runtime.seed_history(doc["_id"], [("assistant", config.first_message)])

    async def insert() -> bool:
        await store.insert_conversation(backends.documents, org_id, doc)
        return True

    # `conversation.started` is held in the outbox before the insert: never lost, never
    # sent for a conversation that was not stored.
    await emit_with_change(
        runtime.events,
        [("conversation.started", _started_payload(org_id, doc))],
        Witness(store.CONVERSATIONS, doc["_id"]),
        insert,
    )
    log.info("conversation_started", conversation_id=doc["_id"], agent_id=agent_id, channel=channel)
    return doc


def _started_payload(org_id: str, doc: Document) -> dict[str, Any]:
    """`conversation.started` data (see vocalis.events.registry)."""
    return {
        "org_id": org_id,
        "conversation_id": doc["_id"],
        "agent_id": doc["agent_id"],
        "agent_version": doc["agent_version"],
        "channel": doc["channel"],
        "started_at": doc["created_at"],
        "metadata": doc.get("metadata", {}),
    }


def _ended_payload(org_id: str, doc: Document) -> dict[str, Any]:
    """`conversation.ended` data (see vocalis.events.registry)."""
    return {
        "org_id": org_id,
        "conversation_id": doc["_id"],
        "agent_id": doc["agent_id"],
        "agent_version": doc["agent_version"],
        "channel": doc["channel"],
        "ended_at": doc["ended_at"],
        "reason": doc["ended_reason"],
        "message_count": doc.get("message_count", 0),
        "duration_s": doc.get("duration_s"),
        "call": call_facts(doc),
    }


AGENT_ENDINGS = ("agent_ended", "end_phrase")


def call_facts(doc: Document) -> dict[str, Any] | None:
    """A phone call's facts (`call`), with the hang-up side when the agent ended it."""
    call = doc.get("call")
    if not call:
        return None
    facts = dict(call)
    if facts.get("hangup_side") is None and doc.get("ended_reason") in AGENT_ENDINGS:
        facts["hangup_side"] = "agent"
    if facts.get("duration_s") is None:  # ended by the agent's turn, before the call settled
        facts["duration_s"] = doc.get("duration_s")
    return facts


async def get_conversation(backends: Backends, *, org_id: str, conversation_id: str) -> Document:
    """One conversation of the organisation; NotFound otherwise."""
    doc = await store.get_conversation(backends.documents, org_id, conversation_id)
    if doc is None:
        raise _not_found(conversation_id)
    return doc


async def list_conversations(
    backends: Backends,
    *,
    org_id: str,
    limit: int,
    before_id: str | None = None,
    agent_id: str | None = None,
    status: str | None = None,
    channel: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
) -> list[Document]:
    """Conversations, newest first, filtered."""
    filter: dict[str, Any] = {}
    for name, value in (("agent_id", agent_id), ("status", status), ("channel", channel)):
        if value is not None:
            filter[name] = value
    created: dict[str, str] = {}
    if created_after is not None:
        created["$gt"] = created_after
    if created_before is not None:
        created["$lt"] = created_before
    if created:
        filter["created_at"] = created
    return await store.find_conversations(
        backends.documents, org_id, filter, limit=limit, before_id=before_id
    )


async def transcript(backends: Backends, *, org_id: str, conversation_id: str) -> list[Document]:
    """A conversation's messages in order."""
    return await store.list_messages(backends.documents, org_id, conversation_id)


async def end_conversation(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    conversation_id: str,
    reason: str,
) -> Document:
    """End an active conversation and emit `conversation.ended` (ending twice is a no-op)."""
    doc = await get_conversation(backends, org_id=org_id, conversation_id=conversation_id)
    if doc["status"] == "ended":
        return doc
    ended = utcnow()
    started = store.parse_iso(doc["created_at"]) or ended
    changes = {
        "status": "ended",
        "ended_at": store.iso(ended),
        "ended_reason": reason,
        "duration_s": round((ended - started).total_seconds(), 3),
    }
    doc = {**doc, **changes}

    async def update() -> bool:
        return await store.update_conversation(
            backends.documents,
            org_id,
            conversation_id,
            {"$set": changes},
            only_if={"status": "active"},
        )

    # Held before the update, released only if this end won (a concurrent end emitted its
    # own event otherwise); its `ended_at` tells the reconciler which end happened.
    matched = await emit_with_change(
        runtime.events,
        [("conversation.ended", _ended_payload(org_id, doc))],
        Witness(store.CONVERSATIONS, conversation_id, {"ended_at": changes["ended_at"]}),
        update,
    )
    if matched:
        log.info("conversation_ended", conversation_id=conversation_id, reason=reason)
    return doc


# --- turns --------------------------------------------------------------------------------
class SpeculationRefused(Exception):
    """This turn cannot be prepared speculatively (it would change something before it is
    kept, e.g. consume client tool outputs); it runs once the turn is confirmed."""


@dataclass(eq=False)
class Speculation:
    """The undecided state of a speculative turn: held events and its scratch graph."""

    decided: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    held: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    graph: Any = None
    seed: list[dict[str, Any]] = field(default_factory=list)
    _sink: EventSink | None = None

    async def kept(self) -> bool:
        """Wait for the decision: True once committed, False when discarded."""
        return await asyncio.shield(self.decided)

    def hold(self, sink: EventSink) -> EventSink:
        """An event sink that holds events until the turn is kept."""
        self._sink = sink

        async def held(name: str, payload: Mapping[str, Any]) -> None:
            if self.decided.done() and self.decided.result() and not self.held:
                await sink(name, payload)
            else:
                self.held.append((name, payload))

        return held

    async def release(self) -> None:
        """The turn is kept: send the events it held."""
        held, self.held = self.held, []
        if self._sink is not None:
            for name, payload in held:
                await self._sink(name, payload)


class _GatedToolbox(Toolbox):
    """A toolbox whose calls wait until the speculative turn is kept."""

    def __init__(self, inner: Toolbox, kept: Callable[[], Awaitable[bool]]) -> None:
        super().__init__()
        self.tools = inner.tools
        self._inner, self._kept = inner, kept

    async def execute(self, call: ToolCall, ctx: ToolContext) -> ToolResult:
        if not await self._kept():
            raise asyncio.CancelledError  # discarded: the turn is being closed
        return await self._inner.execute(call, ctx)


def says_end_phrase(text: str, phrases: list[str]) -> bool:
    """Whether a user message contains one of the agent's end-of-conversation phrases."""
    folded = " ".join(text.casefold().split())
    return any(" ".join(p.casefold().split()) in folded for p in phrases if p.strip())


@dataclass
class Turn:
    """One agent turn whose user message is stored and whose lock is held."""

    backends: Backends
    runtime: AgentRuntime
    org_id: str
    conversation: Document
    config: AgentConfig
    user_message: Document
    lock: store.TurnLock
    # The id the assistant's message will be stored under; transports that announce the
    # reply before it is stored (the realtime protocol's items) may set it.
    reply_id: str = field(default_factory=lambda: new_id("msg"))
    client_tools: tuple[ClientTool, ...] = ()
    tool_outputs: tuple[ToolOutput, ...] = ()
    tool_choice: str | None = None  # overrides the agent's for this turn
    generation: GenerationOptions | None = None  # a caller's max_tokens, stop, response format
    # The turn goes on from client tool outputs alone: `user_message` is then the assistant
    # message that made the calls (no user message was stored).
    continued: bool = False
    # A speculative turn (`begin_turn(speculative=True)`) stores nothing — no message, no
    # checkpoint, no event — until `commit`; `discard` (or closing `events`) leaves no trace.
    speculation: Speculation | None = None

    @property
    def speculative(self) -> bool:
        """Whether this turn still waits to be committed or discarded."""
        return self.speculation is not None and not self.speculation.decided.done()

    async def commit(self) -> None:
        """Keep a speculative turn: its user message now, its reply and events when it ends."""
        spec = self.speculation
        if spec is None or spec.decided.done():
            return
        await _insert_user_message(self.backends, self.org_id, self.conversation, self.user_message)
        spec.decided.set_result(True)

    def discard(self) -> None:
        """Drop a speculative turn (close `events` too, which gives the lock back)."""
        spec = self.speculation
        if spec is not None and not spec.decided.done():
            spec.decided.set_result(False)

    @property
    def conversation_id(self) -> str:
        """The conversation's id."""
        return str(self.conversation["_id"])

    async def events(self) -> AsyncIterator[TurnEvent]:
        """Run the agent: its events, then a `TurnResult` (the lock is released at the end)."""
        try:
            final: FinalMessage | None = None
            calls: list[ToolCallEvent] = []
            results: list[ToolResultEvent] = []
            spec = self.speculation
            ctx = self.runtime.context(
                org_id=self.org_id,
                conversation_id=self.conversation_id,
                agent_id=self.conversation["agent_id"],
                config=self.config,
                events=self._sink if spec is None else spec.hold(self._sink),
                client_tools=self.client_tools,
                tool_choice=self.tool_choice,
                generation=self.generation,
            )
            graph = None
            if spec is not None:
                # Tools act on the world: they wait until the turn is kept (the MCP
                # servers' tools too, listed now so that the gate covers them).
                ctx = await self.runtime.with_mcp_tools(ctx)
                gated = _GatedToolbox(ctx.toolbox, spec.kept)
                ctx = replace(ctx, toolbox=gated, mcp_servers=())
                graph, spec.seed = await self.runtime.scratch_graph(self.conversation_id)
                spec.graph = graph
            text = "" if self.continued else self.user_message["content"]
            async for event in self.runtime.run(ctx, text, self.tool_outputs, graph=graph):
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
            if spec is not None:
                if not await spec.kept():
                    return  # discarded: nothing of it was stored
                await self.runtime.keep_scratch(self.conversation_id, spec.graph, spec.seed)
                await spec.release()
            message = await self._store_reply(final, calls, results)
            ended = await self._end_if_due(final)
            yield TurnResult(message, final, ended)
        finally:
            await self.lock.release()

    async def release(self) -> None:
        """Give the lock back without running (the caller gave up before `events`)."""
        await self.lock.release()

    async def _sink(self, name: str, payload: Mapping[str, Any]) -> None:
        if name != "handoff.requested":
            await self.runtime.events(name, payload)
            return
        handoff = {"requested_at": store.iso(utcnow()), "reason": payload.get("reason", "")}

        async def mark() -> bool:
            return await store.update_conversation(
                self.backends.documents,
                self.org_id,
                self.conversation_id,
                {"$set": {"handoff": handoff}},
            )

        await emit_with_change(
            self.runtime.events,
            [(name, {**payload, "requested_at": handoff["requested_at"]})],
            Witness(
                store.CONVERSATIONS,
                self.conversation_id,
                {"handoff.requested_at": handoff["requested_at"]},
            ),
            mark,
        )

    async def _store_reply(
        self,
        final: FinalMessage,
        calls: list[ToolCallEvent],
        results: list[ToolResultEvent],
    ) -> Document:
        doc = _message_doc(
            message_id=self.reply_id,
            conversation_id=self.conversation_id,
            sequence=self.user_message["sequence"] + 1,
            role="assistant",
            content=final.content,
            redacted=redaction_on(self.backends, self.org_id),
        )
        usage = final.usage
        doc.update(
            {
                "citations": [asdict(c) for c in final.citations],
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls
                ],
                "tool_results": [
                    {"id": r.id, "name": r.name, "content": r.content, "is_error": r.is_error}
                    for r in results
                ],
                "usage": {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                    "cost_usd": usage.cost_usd,
                    "estimated": usage.estimated,
                    "provider": usage.provider,
                    "model": usage.model,
                },
                "latency_ms": dict(final.latency_ms),
                "flags": list(final.flags),
                "handoff": final.handoff,
                "end_conversation": final.end_conversation,
                "replaced": final.replaced,
                "awaiting_tool_calls": list(final.awaiting_tool_calls),
            }
        )
        awaiting = [
            {"id": c.id, "name": c.name, "message_id": doc["_id"]}
            for c in calls
            if c.id in final.awaiting_tool_calls
        ]
        # The reply and the conversation's counters: one transaction where the store can.
        await insert_then_update(
            self.backends.documents,
            store.MESSAGES,
            self.org_id,
            doc,
            store.CONVERSATIONS,
            {"_id": self.conversation_id},
            {
                "$set": {"last_message_at": doc["created_at"], "awaiting_tool_calls": awaiting},
                "$inc": {
                    "message_count": 1,
                    "usage.prompt_tokens": usage.prompt_tokens,
                    "usage.completion_tokens": usage.completion_tokens,
                    "usage.cost_usd": usage.cost_usd,
                },
            },
        )
        return doc

    async def _end_if_due(self, final: FinalMessage) -> bool:
        reason: str | None = None
        if final.end_conversation:
            reason = "agent_ended"
        elif self.continued or final.awaiting_tool_calls:
            return False  # a turn awaiting tool outputs stays open; a continued one has no words
        elif says_end_phrase(self.user_message["content"], self.config.end_of_conversation_phrases):
            reason = "end_phrase"
        if reason is None:
            return False
        await end_conversation(
            backends=self.backends,
            runtime=self.runtime,
            org_id=self.org_id,
            conversation_id=self.conversation_id,
            reason=reason,
        )
        return True


async def begin_turn(
    *,
    backends: Backends,
    runtime: AgentRuntime,
    org_id: str,
    conversation_id: str,
    content: str,
    message_id: str | None = None,
    client_tools: Sequence[ClientTool] = (),
    tool_outputs: Sequence[ToolOutput] = (),
    tool_choice: str | None = None,
    speculative: bool = False,
) -> Turn:
    """Check the conversation, take its turn lock and store the user's message.

    With `speculative` nothing is stored: the user's message waits for `Turn.commit`, the
    agent runs on a scratch copy of the history and its events are held (a turn with tool
    outputs to take raises `SpeculationRefused`).

    `client_tools` are offered to the model beside the agent's own (a name clash is refused);
    `tool_outputs` answer the client tool calls the previous turn ended awaiting. With
    outputs and no `content`, no user message is stored and the model goes on from them.
    `tool_choice` (`auto`, `none`, `required` or an offered tool's name) overrides the
    agent's for this turn.
    """
    # The lock first, then one read under it (the sequence and status must be current). A
    # lock that is taken already is read about before answering: an unknown conversation
    # is 404 and an ended one 409 `conversation_ended`, busy or not, as before.
    lock = store.TurnLock(backends.redis, conversation_id)
    if not await lock.acquire():
        doc = await get_conversation(backends, org_id=org_id, conversation_id=conversation_id)
        if doc["status"] != "active":
            raise ConversationEnded(f"Conversation {conversation_id!r} has ended.")
        raise ConversationBusy(f"Conversation {conversation_id!r} is answering another message.")
    try:
        doc = await get_conversation(backends, org_id=org_id, conversation_id=conversation_id)
        if doc["status"] != "active":
            raise ConversationEnded(f"Conversation {conversation_id!r} has ended.")
        config = await agent_config(
            backends.database,
            org_id=org_id,
            agent_id=doc["agent_id"],
            version=int(doc["agent_version"]),
        )
        own = build_toolbox(config.tools).tools
        check_client_tools(client_tools, own)
        check_tool_choice(tool_choice, [*own, *(t.name for t in client_tools)])
        user: Document | None
        if speculative:
            if tool_outputs or doc.get("awaiting_tool_calls"):
                raise SpeculationRefused("The turn takes client tool outputs.")
            user = _user_message(backends, org_id, doc, content, message_id)
            continued = False
        else:
            caller = await _take_tool_outputs(backends, org_id, doc, tool_outputs)
            continued = caller is not None and not content.strip()
            user = (
                caller
                if continued
                else await _store_user_message(backends, org_id, doc, content, message_id)
            )
    except BaseException:
        await lock.release()
        raise
    assert user is not None
    return Turn(
        backends,
        runtime,
        org_id,
        doc,
        config,
        user,
        lock,
        client_tools=tuple(client_tools),
        tool_outputs=tuple(tool_outputs),
        tool_choice=tool_choice,
        continued=continued,
        speculation=Speculation() if speculative else None,
    )


def _user_message(
    backends: Backends, org_id: str, doc: Document, content: str, message_id: str | None
) -> Document:
    return _message_doc(
        message_id=message_id,
        conversation_id=doc["_id"],
        sequence=int(doc.get("message_count", 0)) + 1,
        role="user",
        content=content,
        redacted=redaction_on(backends, org_id),
    )


async def _store_user_message(
    backends: Backends, org_id: str, doc: Document, content: str, message_id: str | None
) -> Document:
    user = _user_message(backends, org_id, doc, content, message_id)
    await _insert_user_message(backends, org_id, doc, user)
    return user


async def _insert_user_message(
    backends: Backends, org_id: str, doc: Document, user: Document
) -> None:
    await insert_then_update(
        backends.documents,
        store.MESSAGES,
        org_id,
        user,
        store.CONVERSATIONS,
        {"_id": doc["_id"]},
        {"$set": {"last_message_at": user["created_at"]}, "$inc": {"message_count": 1}},
    )


async def _take_tool_outputs(
    backends: Backends, org_id: str, doc: Document, outputs: Sequence[ToolOutput]
) -> Document | None:
    """Record client tool outputs on the message that made the calls; returns that message.

    Any new turn ends the wait: calls left unanswered are told so to the model.
    """
    awaiting = {c["id"]: c for c in doc.get("awaiting_tool_calls") or ()}
    answered = [o.call_id for o in outputs]
    stray = [i for i in answered if i not in awaiting] or sorted(
        {i for i in answered if answered.count(i) > 1}
    )
    if stray:
        raise ToolOutputNotAwaited(
            f"No function call {stray[0]!r} awaits an output in this conversation."
        )
    if not awaiting:
        return None
    await store.update_conversation(
        backends.documents, org_id, doc["_id"], {"$set": {"awaiting_tool_calls": []}}
    )
    if not outputs:
        return None
    message_id = next(iter(awaiting.values()))["message_id"]
    results = [
        {
            "id": o.call_id,
            "name": awaiting[o.call_id]["name"],
            "content": o.output,
            "is_error": False,
            "client": True,
        }
        for o in outputs
    ]
    await backends.documents.update_one(
        store.MESSAGES,
        org_id,
        {"_id": message_id},
        {"$push": {"tool_results": {"$each": results}}, "$set": {"awaiting_tool_calls": []}},
    )
    return await backends.documents.get(store.MESSAGES, org_id, message_id)
