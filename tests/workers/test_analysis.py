"""Post-conversation analysis: the model fills the plan; a deterministic heuristic otherwise."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.api.conftest import Api, Tenant
from vocalis.agents import service as agents
from vocalis.agents.extractive import ExtractiveResponder
from vocalis.agents.providers import FallbackChatModel
from vocalis.agents.runtime import get_runtime
from vocalis.agents.schemas import AgentConfig, AnalysisPlan, ModelSettings
from vocalis.conversations import store
from vocalis.conversations.analysis import (
    agent_model,
    analyze_conversation,
    heuristic_analysis,
    heuristic_outcome,
    heuristic_sentiment,
)
from vocalis.core.backends import Backends
from vocalis.core.db import utcnow
from vocalis.events.models import OutboxEvent
from vocalis.ports.llm import ChatModel, ChatResult, ProviderUnavailable, ToolCall

PLAN = AnalysisPlan(
    structured_data_schema={
        "type": "object",
        "properties": {
            "contact_email": {"type": "string"},
            "product": {"type": "string", "enum": ["router", "modem"]},
        },
        "required": ["product"],
    }
)


def _message(role: str, content: str, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


def _conversation(**extra: Any) -> dict[str, Any]:
    return {"_id": "cnv_1", "agent_id": "agt_1", "channel": "chat", "status": "ended", **extra}


class ScriptedModel:
    """A chat model answering one scripted result (or raising)."""

    provider = "scripted"
    model = "scripted-1"

    def __init__(self, answer: ChatResult | Exception) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    async def complete(self, messages: Sequence[Any], **kwargs: Any) -> ChatResult:
        self.calls.append({"messages": messages, **kwargs})
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def _tool_answer(arguments: dict[str, Any]) -> ChatResult:
    return ChatResult(
        content="",
        tool_calls=(ToolCall("call_1", "record_analysis", json.dumps(arguments)),),
        model="scripted-1",
    )


# --- heuristic ----------------------------------------------------------------------------
def test_a_handoff_is_escalated() -> None:
    messages = [_message("user", "I need a person"), _message("assistant", "Transferring you.")]
    assert heuristic_outcome(_conversation(handoff={"reason": "asked"}), messages) == "escalated"


def test_a_user_left_unanswered_is_abandoned() -> None:
    assert heuristic_outcome(_conversation(), []) == "abandoned"
    assert heuristic_outcome(_conversation(), [_message("user", "hello?")]) == "abandoned"
    answered = [_message("user", "hi"), _message("assistant", "Hello!")]
    assert heuristic_outcome(_conversation(ended_reason="timeout"), answered) == "abandoned"


def test_an_answered_conversation_is_resolved() -> None:
    messages = [_message("user", "Opening hours?"), _message("assistant", "9 to 5.")]
    assert heuristic_outcome(_conversation(ended_reason="user_ended"), messages) == "resolved"


@pytest.mark.parametrize(
    ("text", "sentiment"),
    [
        ("Thanks, that works now, perfect!", "positive"),
        ("This is useless and I am frustrated", "negative"),
        ("What are your opening hours?", "neutral"),
    ],
)
def test_sentiment_follows_the_users_words(text: str, sentiment: str) -> None:
    assert heuristic_sentiment([_message("user", text), _message("assistant", "ok")]) == sentiment


def test_the_heuristic_fills_plan_fields_stated_plainly() -> None:
    messages = [
        _message("user", "My modem is broken, write to jane@example.com"),
        _message("assistant", "Sorry to hear that."),
    ]
    analysis = heuristic_analysis(_conversation(), messages, PLAN)
    assert analysis.fields == {"contact_email": "jane@example.com", "product": "modem"}
    assert analysis.method == "heuristic"
    assert "My modem is broken" in analysis.summary


def test_the_heuristic_is_deterministic() -> None:
    messages = [_message("user", "Thanks for the help"), _message("assistant", "You're welcome")]
    first = heuristic_analysis(_conversation(duration_s=12.0), messages, PLAN)
    second = heuristic_analysis(_conversation(duration_s=12.0), messages, PLAN)
    assert first == second


# --- with the store, an agent and the outbox ---------------------------------------------
@pytest.fixture
async def ended(admin_api: Api) -> AsyncIterator[tuple[Tenant, str]]:
    """An organisation with an agent (analysis plan) and one ended conversation."""
    tenant = await admin_api.tenant()
    async with admin_api.backends.database.session() as session:
        view = await agents.create_agent(
            session=session,
            org_id=tenant.org_id,
            config=AgentConfig(name="Support", analysis_plan=PLAN),
        )
    documents = admin_api.backends.documents
    now = store.iso(utcnow())
    await documents.insert(
        "conversations",
        tenant.org_id,
        {
            "_id": "cnv_ended",
            "agent_id": view.agent.id,
            "agent_version": 1,
            "channel": "chat",
            "status": "ended",
            "ended_reason": "user_ended",
            "created_at": now,
        },
    )
    for sequence, (role, text) in enumerate(
        [("user", "Is my router covered? Thanks!"), ("assistant", "Yes, for two years.")], 1
    ):
        await documents.insert(
            "messages",
            tenant.org_id,
            {
                "_id": f"msg_{sequence}",
                "conversation_id": "cnv_ended",
                "sequence": sequence,
                "role": role,
                "content": text,
                "created_at": now,
            },
        )
    yield tenant, "cnv_ended"


def _model(model: ChatModel | None) -> Any:
    return lambda backends, org_id, config: model


async def _analyzed_events(backends: Backends) -> int:
    async with backends.database.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.type == "conversation.analyzed")
        )
    return int(count or 0)


async def test_the_configured_model_fills_the_plan_and_the_result_is_stored(
    admin_api: Api, ended: tuple[Tenant, str]
) -> None:
    tenant, conversation_id = ended
    model = ScriptedModel(
        _tool_answer(
            {
                "summary": "Warranty question answered.",
                "outcome": "resolved",
                "sentiment": "positive",
                "fields": {"product": "router"},
            }
        )
    )
    result = await analyze_conversation(
        admin_api.backends,
        org_id=tenant.org_id,
        conversation_id=conversation_id,
        model_for=_model(model),
    )
    assert result is not None
    assert result["method"] == "model" and result["model"] == "scripted-1"
    assert result["fields"] == {"product": "router"}
    [call] = model.calls
    assert call["tool_choice"] == "record_analysis"
    assert call["tools"][0].parameters["properties"]["fields"] == PLAN.structured_data_schema
    doc = await store.get_conversation(admin_api.backends.documents, tenant.org_id, conversation_id)
    assert doc is not None and doc["analysis"]["summary"] == "Warranty question answered."


async def test_an_answer_outside_the_schema_falls_back_to_the_heuristic(
    admin_api: Api, ended: tuple[Tenant, str]
) -> None:
    tenant, conversation_id = ended
    model = ScriptedModel(
        _tool_answer({"summary": "x", "outcome": "great", "sentiment": "positive", "fields": {}})
    )
    result = await analyze_conversation(
        admin_api.backends,
        org_id=tenant.org_id,
        conversation_id=conversation_id,
        model_for=_model(model),
    )
    assert result is not None
    assert result["method"] == "heuristic"
    assert result["outcome"] == "resolved"
    assert "does not match the schema" in result["model_error"]


async def test_a_model_outage_is_retried_and_the_last_try_falls_back(
    admin_api: Api, ended: tuple[Tenant, str]
) -> None:
    tenant, conversation_id = ended
    down = ScriptedModel(ProviderUnavailable("503 from the model server"))
    with pytest.raises(ProviderUnavailable):
        await analyze_conversation(
            admin_api.backends,
            org_id=tenant.org_id,
            conversation_id=conversation_id,
            model_for=_model(down),
        )
    result = await analyze_conversation(
        admin_api.backends,
        org_id=tenant.org_id,
        conversation_id=conversation_id,
        model_for=_model(down),
        fallback_on_model_failure=True,
    )
    assert result is not None and result["method"] == "heuristic"


async def test_without_a_model_the_heuristic_analyses_it(
    admin_api: Api, ended: tuple[Tenant, str]
) -> None:
    tenant, conversation_id = ended
    result = await analyze_conversation(
        admin_api.backends, org_id=tenant.org_id, conversation_id=conversation_id
    )
    assert result is not None
    assert (result["method"], result["outcome"], result["sentiment"]) == (
        "heuristic",
        "resolved",
        "positive",
    )
    assert result["fields"] == {"product": "router"}


async def test_analysing_twice_stores_one_analysis_and_emits_one_event(
    admin_api: Api, ended: tuple[Tenant, str]
) -> None:
    tenant, conversation_id = ended
    first = await analyze_conversation(
        admin_api.backends, org_id=tenant.org_id, conversation_id=conversation_id
    )
    second = await analyze_conversation(
        admin_api.backends, org_id=tenant.org_id, conversation_id=conversation_id
    )
    assert first == second
    assert await _analyzed_events(admin_api.backends) == 1


async def test_an_active_conversation_is_not_analysed(admin_api: Api) -> None:
    tenant = await admin_api.tenant()
    await admin_api.backends.documents.insert(
        "conversations",
        tenant.org_id,
        {"_id": "cnv_live", "agent_id": "agt_x", "status": "active", "created_at": "x"},
    )
    result = await analyze_conversation(
        admin_api.backends, org_id=tenant.org_id, conversation_id="cnv_live"
    )
    assert result is None
    assert await _analyzed_events(admin_api.backends) == 0


async def test_one_off_chat_completion_conversations_are_not_analysed(admin_api: Api) -> None:
    tenant = await admin_api.tenant()
    await admin_api.backends.documents.insert(
        "conversations",
        tenant.org_id,
        {"_id": "cnv_once", "agent_id": "agt_x", "status": "ended", "ephemeral": True},
    )
    result = await analyze_conversation(
        admin_api.backends, org_id=tenant.org_id, conversation_id="cnv_once"
    )
    assert result is None


async def test_the_analysis_reaches_an_agents_endpoints_through_the_apis_breakers_and_ledger(
    admin_api: Api,
) -> None:
    config = AgentConfig(
        name="Support",
        model=ModelSettings(provider="openai", model="llama3", base_url="http://llm.test/v1"),
    )
    turn = get_runtime(admin_api.app).chat_model("org_1", config)
    analysis = agent_model(admin_api.backends, "org_1", config)
    assert isinstance(turn, FallbackChatModel) and isinstance(analysis, FallbackChatModel)
    assert analysis.breakers is turn.breakers  # an endpoint the agents found down stays skipped
    assert analysis.ledger is turn.ledger  # one cost account per process
    [endpoint] = analysis.providers
    assert turn.providers[0] is endpoint  # one pooled client per endpoint
    assert isinstance(turn.providers[-1], ExtractiveResponder)  # turns end with it; analysis not
