"""Events an agent turn streams to its caller (REST/SSE, WebSocket, chat completions).

A turn yields, in order: zero or more `TextDelta`s, `ToolCallEvent`/`ToolResultEvent`
pairs, `GuardFlag`s, perhaps a `HandoffEvent`, and always one `FinalMessage` last. A call
of a client-side tool (`ToolCallEvent.client`) has no result event: the turn ends with a
`FinalMessage` whose `awaiting_tool_calls` names the calls the caller must answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vocalis.ports.retriever import Passage


@dataclass(frozen=True)
class Citation:
    """A passage the answer cites as `[n]`, or — `attributed` — one the output guard found
    the answer draws on when the model wrote no marker (see `vocalis.agents.attribution`)."""

    n: int
    document_id: str
    document_name: str
    chunk_id: str
    text: str
    score: float = 0.0
    page: int | None = None
    section: str | None = None
    attributed: bool = False

    @classmethod
    def of(cls, n: int, passage: Passage, *, attributed: bool = False) -> Citation:
        """The citation for passage number `n`."""
        return cls(
            n=n,
            document_id=passage.document_id,
            document_name=passage.document_name,
            chunk_id=passage.chunk_id,
            text=passage.text,
            score=passage.score,
            page=passage.page,
            section=passage.section,
            attributed=attributed,
        )


@dataclass(frozen=True)
class TextDelta:
    """A piece of the assistant's reply as it is generated."""

    text: str
    type: Literal["text.delta"] = "text.delta"


@dataclass(frozen=True)
class ToolCallEvent:
    """The model called a tool; its arguments are complete."""

    id: str
    name: str
    arguments: str
    client: bool = False  # a client-side tool: the caller runs it and sends its output
    type: Literal["tool.call"] = "tool.call"


@dataclass(frozen=True)
class ToolResultEvent:
    """A tool finished."""

    id: str
    name: str
    content: str
    is_error: bool = False
    type: Literal["tool.result"] = "tool.result"


@dataclass(frozen=True)
class GuardFlag:
    """A guard noticed something (suspected prompt injection, oversize input…)."""

    flag: str
    detail: str = ""
    type: Literal["guard.flag"] = "guard.flag"


@dataclass(frozen=True)
class HandoffEvent:
    """The conversation was handed to a person (`handoff.requested` was emitted)."""

    reason: str
    type: Literal["handoff.requested"] = "handoff.requested"


@dataclass(frozen=True)
class TurnUsage:
    """Tokens and cost of a turn, and which provider/model answered last."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    estimated: bool = False
    provider: str = ""
    model: str = ""


@dataclass(frozen=True)
class FinalMessage:
    """The assistant's message for the turn: authoritative text, citations, usage, timing.

    `replaced` is true when the output guard changed text that was already streamed:
    clients should show `content` instead of what the deltas spelled.
    """

    message_id: str
    content: str
    citations: tuple[Citation, ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()
    usage: TurnUsage = field(default_factory=TurnUsage)
    latency_ms: dict[str, float] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    handoff: bool = False
    end_conversation: bool = False
    replaced: bool = False
    # Ids of client tool calls the turn ended waiting for; `content` is then only what the
    # model said alongside the calls (often nothing), not a reply.
    awaiting_tool_calls: tuple[str, ...] = ()
    # Why the model's last generation ended: `stop`, `length` (max_tokens), `tool_calls`…
    finish_reason: str = "stop"
    type: Literal["message.final"] = "message.final"


AgentEvent = TextDelta | ToolCallEvent | ToolResultEvent | GuardFlag | HandoffEvent | FinalMessage
