"""Post-conversation analysis: summary, outcome, sentiment and the agent's plan fields.

When the agent has a model configured (an OpenAI-compatible endpoint), the model fills a
forced `record_analysis` function call whose JSON schema includes the analysis plan's
`structured_data_schema`; its answer is validated against that schema. Without a model,
or when the model's answer does not validate, a deterministic heuristic produces the
analysis (`method: heuristic`), so every ended conversation gets one.

The model reads the redacted transcript when one is stored (`content_redacted`), so PII
reaches neither the model provider nor the stored summary unless the organisation turned
transcript redaction off.

Ephemeral conversations (one-off `/v1/chat/completions` calls) are not analysed.

The analysis is stored on the conversation document (`analysis`) and `conversation.analyzed`
is recorded with an idempotency key, so a retried or redelivered task never produces a
second analysis or a second event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from jsonschema import Draft202012Validator

from vocalis.agents.chains import chat_endpoints, default_endpoint
from vocalis.agents.schemas import AgentConfig, AnalysisPlan
from vocalis.conversations import service as conversations
from vocalis.conversations import store
from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.events.outbox import record_event
from vocalis.events.registry import CONVERSATION_ANALYZED
from vocalis.ports.document_store import Document
from vocalis.ports.llm import ChatMessage, ChatModel, ProviderError, ToolSpec

log = structlog.get_logger(__name__)

OUTCOMES = ("resolved", "escalated", "abandoned")
SENTIMENTS = ("positive", "neutral", "negative")
ANALYSIS_TOOL = "record_analysis"
MAX_TRANSCRIPT_CHARS = 24_000
SNIPPET_CHARS = 160

ModelFor = Callable[[Backends, str, AgentConfig], ChatModel | None]

_POSITIVE = re.compile(
    r"\b(thanks?|thank you|great|perfect|awesome|excellent|helpful|appreciate[ds]?|"
    r"wonderful|brilliant|amazing|love (it|this)|solved|that works|works now)\b",
    re.IGNORECASE,
)
_NEGATIVE = re.compile(
    r"\b(angry|terrible|awful|useless|horrible|frustrat\w*|annoy\w*|hate|worst|"
    r"ridiculous|disappoint\w*|unacceptable|complain\w*|not working|doesn'?t work|"
    r"still broken|waste of time|cancel my)\b",
    re.IGNORECASE,
)
_ABANDONED_REASONS = ("timeout", "idle", "disconnect", "abandon", "hangup", "hung_up", "error")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+?\d[\d ()-]{7,}\d")


@dataclass
class Analysis:
    """The result for one conversation."""

    summary: str
    outcome: str
    sentiment: str
    fields: dict[str, Any] = field(default_factory=dict)
    method: str = "heuristic"
    model: str | None = None
    model_error: str | None = None

    def as_document(self) -> dict[str, Any]:
        """How it is stored on the conversation."""
        return {
            "summary": self.summary,
            "outcome": self.outcome,
            "sentiment": self.sentiment,
            "fields": self.fields,
            "method": self.method,
            "model": self.model,
            "model_error": self.model_error,
            "analyzed_at": store.iso(utcnow()),
        }


# --- heuristic ----------------------------------------------------------------------------
def _text(message: Document) -> str:
    return str(message.get("content_redacted") or message.get("content") or "")


def heuristic_outcome(conversation: Document, messages: Sequence[Document]) -> str:
    """Escalated on a handoff; abandoned when the user left unanswered; else resolved."""
    reason = str(conversation.get("ended_reason") or "").lower()
    if conversation.get("handoff") or any(m.get("handoff") for m in messages):
        return "escalated"
    if "handoff" in reason or "transfer" in reason:
        return "escalated"
    user_messages = [m for m in messages if m.get("role") == "user"]
    if not user_messages or any(word in reason for word in _ABANDONED_REASONS):
        return "abandoned"
    if messages and messages[-1].get("role") == "user":
        return "abandoned"  # the user's last message was never answered
    return "resolved"


def heuristic_sentiment(messages: Sequence[Document]) -> str:
    """Positive or negative by the user's words, neutral when they balance."""
    text = " ".join(_text(m) for m in messages if m.get("role") == "user")
    score = len(_POSITIVE.findall(text)) - len(_NEGATIVE.findall(text))
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"


def heuristic_summary(conversation: Document, messages: Sequence[Document], outcome: str) -> str:
    """A short factual summary: who said how much, what was asked, how it ended."""
    users = [m for m in messages if m.get("role") == "user"]
    agents = [m for m in messages if m.get("role") == "assistant"]
    parts = [f"{len(users)} user and {len(agents)} agent message(s)"]
    duration = conversation.get("duration_s")
    if isinstance(duration, int | float):
        parts[0] += f" over {duration:.0f} s"
    parts[0] += f" on the {conversation.get('channel', 'api')} channel."
    if users:
        parts.append(f'The user opened with: "{_snippet(_text(users[0]))}".')
    if agents:
        parts.append(f'The agent\'s last reply: "{_snippet(_text(agents[-1]))}".')
    parts.append(f"Outcome: {outcome}.")
    return " ".join(parts)


def heuristic_fields(plan: AnalysisPlan, messages: Sequence[Document]) -> dict[str, Any]:
    """Plan fields the transcript states plainly: e-mail, phone, enum values named by the user."""
    schema = plan.structured_data_schema or {}
    properties = schema.get("properties") or {}
    user_text = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")
    found: dict[str, Any] = {}
    for name, prop in properties.items():
        if not isinstance(prop, dict):
            continue
        lowered = name.lower()
        if "enum" in prop:
            for option in prop["enum"]:
                if isinstance(option, str) and re.search(
                    rf"\b{re.escape(option)}\b", user_text, re.IGNORECASE
                ):
                    found[name] = option
                    break
        elif prop.get("type") == "string" and ("email" in lowered or prop.get("format") == "email"):
            match = _EMAIL.search(user_text)
            if match:
                found[name] = match.group(0)
        elif prop.get("type") == "string" and "phone" in lowered:
            match = _PHONE.search(user_text)
            if match:
                found[name] = match.group(0)
    return found


def heuristic_analysis(
    conversation: Document, messages: Sequence[Document], plan: AnalysisPlan
) -> Analysis:
    """The deterministic analysis used when no model is configured (or it failed)."""
    outcome = heuristic_outcome(conversation, messages)
    return Analysis(
        summary=heuristic_summary(conversation, messages, outcome) if plan.summary else "",
        outcome=outcome,
        sentiment=heuristic_sentiment(messages),
        fields=heuristic_fields(plan, messages),
    )


# --- model ------------------------------------------------------------------------------
def analysis_schema(plan: AnalysisPlan) -> dict[str, Any]:
    """The JSON schema of the forced function call (and of a valid answer)."""
    properties: dict[str, Any] = {
        "summary": {"type": "string", "description": "A few sentences on what happened."},
        "outcome": {
            "type": "string",
            "enum": list(OUTCOMES),
            "description": "resolved: the user's need was met; escalated: handed to a person "
            "or needs one; abandoned: the user left before it was met.",
        },
        "sentiment": {"type": "string", "enum": list(SENTIMENTS)},
    }
    required = ["summary", "outcome", "sentiment"]
    if plan.structured_data_schema:
        properties["fields"] = plan.structured_data_schema
        required.append("fields")
    return {"type": "object", "properties": properties, "required": required}


def _prompt(conversation: Document, messages: Sequence[Document], plan: AnalysisPlan) -> str:
    lines = [
        "You analyse a finished conversation between a user and an AI agent.",
        f"Call {ANALYSIS_TOOL} exactly once with the analysis.",
    ]
    if plan.summary_instructions:
        lines.append(f"Summary instructions: {plan.summary_instructions}")
    if plan.success_criteria:
        lines.append(f"The conversation is resolved when: {plan.success_criteria}")
    if conversation.get("handoff"):
        lines.append("The agent handed the conversation to a person.")
    lines.append(f"It ended because: {conversation.get('ended_reason') or 'unknown'}.")
    return "\n".join(lines)


def _transcript(messages: Sequence[Document]) -> str:
    text = "\n".join(f"{m.get('role', '?')}: {_text(m)}" for m in messages)
    # Keep the end: how a conversation ended matters most for its outcome.
    return text[-MAX_TRANSCRIPT_CHARS:]


def _parse_answer(content: str, tool_arguments: str | None) -> dict[str, Any]:
    raw = tool_arguments if tool_arguments is not None else content
    match = re.search(r"\{.*\}", raw, re.DOTALL)
    if not match:
        raise ValueError("the model returned no JSON object")
    value = json.loads(match.group(0))
    if not isinstance(value, dict):
        raise ValueError("the model's answer is not a JSON object")
    return value


async def model_analysis(
    model: ChatModel,
    conversation: Document,
    messages: Sequence[Document],
    plan: AnalysisPlan,
) -> Analysis:
    """Ask the model; raises ValueError when its answer does not fit the schema."""
    schema = analysis_schema(plan)
    result = await model.complete(
        [
            ChatMessage(role="system", content=_prompt(conversation, messages, plan)),
            ChatMessage(role="user", content=_transcript(messages)),
        ],
        tools=[ToolSpec(ANALYSIS_TOOL, "Record the conversation's analysis.", schema)],
        tool_choice=ANALYSIS_TOOL,
        temperature=0.0,
    )
    call = next((c for c in result.tool_calls if c.name == ANALYSIS_TOOL), None)
    answer = _parse_answer(result.content, call.arguments if call else None)
    errors = sorted(Draft202012Validator(schema).iter_errors(answer), key=str)
    if errors:
        raise ValueError(f"the model's answer does not match the schema: {errors[0].message}")
    return Analysis(
        summary=str(answer["summary"]) if plan.summary else "",
        outcome=str(answer["outcome"]),
        sentiment=str(answer["sentiment"]),
        fields=dict(answer.get("fields") or {}),
        method="model",
        model=result.model or getattr(model, "model", None),
    )


def agent_model(backends: Backends, org_id: str, config: AgentConfig) -> ChatModel | None:
    """The agent's configured endpoints as one chain (the process's breakers and cost
    ledger, as the API's turns use), or None when it has none."""
    endpoints = chat_endpoints(config.model, default_endpoint(backends.settings))
    if not endpoints:
        return None
    return backends.models.chain(org_id, endpoints, extractive=False)


# --- the job ----------------------------------------------------------------------------
async def _config(backends: Backends, org_id: str, conversation: Document) -> AgentConfig | None:
    from vocalis.conversations.service import agent_config

    try:
        return await agent_config(
            backends.database,
            org_id=org_id,
            agent_id=str(conversation["agent_id"]),
            version=int(conversation.get("agent_version") or 1),
        )
    except Exception as exc:  # a deleted agent still gets a heuristic analysis
        log.info("analysis_without_agent_config", error=f"{type(exc).__name__}: {exc}")
        return None


async def _produce(
    backends: Backends,
    org_id: str,
    conversation: Document,
    model_for: ModelFor,
    fallback_on_model_failure: bool,
) -> Analysis:
    messages = await store.list_messages(backends.documents, org_id, str(conversation["_id"]))
    config = await _config(backends, org_id, conversation)
    plan = (config.analysis_plan if config else None) or AnalysisPlan()
    model = model_for(backends, org_id, config) if config else None
    if model is None:
        return heuristic_analysis(conversation, messages, plan)
    try:
        return await model_analysis(model, conversation, messages, plan)
    except ValueError as exc:  # an answer we cannot use: the heuristic is better than none
        error = str(exc)
    except ProviderError as exc:
        if not fallback_on_model_failure:
            raise  # transient: the task retries; the last retry falls back
        error = f"{type(exc).__name__}: {exc.detail}"
    log.warning("analysis_model_failed", conversation_id=conversation["_id"], error=error)
    analysis = heuristic_analysis(conversation, messages, plan)
    analysis.model_error = error[:500]
    return analysis


async def analyze_conversation(
    backends: Backends,
    *,
    org_id: str,
    conversation_id: str,
    model_for: ModelFor = agent_model,
    fallback_on_model_failure: bool = False,
) -> dict[str, Any] | None:
    """Analyse an ended conversation once, store it and emit `conversation.analyzed`."""
    conversation = await store.get_conversation(backends.documents, org_id, conversation_id)
    if conversation is None or conversation.get("status") != "ended":
        return None
    if conversation.get("ephemeral"):
        return None  # one-off chat completions: a model call each would cost more than it tells
    stored = conversation.get("analysis")
    if not stored:
        analysis = await _produce(
            backends, org_id, conversation, model_for, fallback_on_model_failure
        )
        stored = analysis.as_document()
        won = await store.update_conversation(
            backends.documents,
            org_id,
            conversation_id,
            {"$set": {"analysis": stored}},
            only_if={"analysis": None},
        )
        if not won:  # a concurrent run stored its analysis first; report that one
            conversation = await store.get_conversation(backends.documents, org_id, conversation_id)
            stored = (conversation or {}).get("analysis") or stored
    async with backends.database.session() as session:
        await record_event(
            session=session,
            org_id=org_id,
            type=CONVERSATION_ANALYZED.name,
            data={
                "conversation_id": conversation_id,
                "agent_id": conversation["agent_id"] if conversation else "",
                "summary": stored["summary"],
                "outcome": stored["outcome"],
                "sentiment": stored["sentiment"],
                "fields": stored["fields"],
                "method": stored["method"],
                "analyzed_at": stored["analyzed_at"],
                "call": conversations.call_facts(conversation) if conversation else None,
            },
            idempotency_key=conversation_id,
        )
    log.info(
        "conversation_analyzed",
        conversation_id=conversation_id,
        outcome=stored["outcome"],
        method=stored["method"],
    )
    return dict(stored)
