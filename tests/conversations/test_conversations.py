"""Conversations over REST: start, talk, transcript, list, end; events, tenancy, redaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.agents_api.harness import REFUND_PASSAGES, AgentApi
from vocalis.conversations.store import TURN_LOCK, TurnLock
from vocalis.flags.registry import PII_REDACTION_IN_TRANSCRIPTS
from vocalis.flags.service import set_org_overrides


async def test_a_new_user_gets_a_sensible_reply_with_no_model_configured(
    agent_api: AgentApi,
) -> None:
    acme = await agent_api.tenant("Acme")
    agent = await agent_api.agent(acme)
    conversation = await agent_api.conversation(acme, agent["id"])
    assert conversation["id"].startswith("cnv_")
    assert conversation["status"] == "active"
    response = await agent_api.say(acme, conversation["id"], "Hello!")
    assert response.status_code == 200
    reply = response.json()
    assert reply["role"] == "assistant"
    assert reply["content"] == "Hello! How can I help you today?"
    assert reply["citations"] == []
    assert reply["usage"]["provider"] == "extractive"
    assert reply["usage"]["total_tokens"] > 0
    assert reply["latency_ms"]["total"] > 0


async def test_an_answer_from_the_knowledge_bases_cites_its_passages(agent_api: AgentApi) -> None:
    acme = await agent_api.tenant("Acme")
    agent_api.retriever.add(acme.org_id, "kb_policies", REFUND_PASSAGES)
    agent = await agent_api.agent(acme, knowledge_base_ids=["kb_policies"])
    conversation = await agent_api.conversation(acme, agent["id"])
    reply = (
        await agent_api.say(acme, conversation["id"], "How many days do I have for refunds?")
    ).json()
    assert "30 days" in reply["content"]
    assert "[1]" in reply["content"]
    assert reply["citations"][0]["n"] == 1
    assert reply["citations"][0]["document_name"] == "refund-policy.md"
    assert "retrieve" in reply["latency_ms"]


async def test_the_transcript_holds_every_message_in_sequence(agent_api: AgentApi) -> None:
    acme = await agent_api.tenant("Acme")
    agent = await agent_api.agent(acme, first_message="Welcome to Acme!")
    conversation = await agent_api.conversation(acme, agent["id"])
    assert [m["content"] for m in conversation["messages"]] == ["Welcome to Acme!"]
    await agent_api.say(acme, conversation["id"], "Hi there")
    await agent_api.say(acme, conversation["id"], "Thanks!")
    read = (
        await agent_api.client.get(f"/v1/conversations/{conversation['id']}", headers=acme.headers)
    ).json()
    assert [(m["sequence"], m["role"]) for m in read["messages"]] == [
        (1, "assistant"),
        (2, "user"),
        (3, "assistant"),
        (4, "user"),
        (5, "assistant"),
    ]
    assert read["message_count"] == 5
    assert read["agent_version"] == agent["version"]
    assert read["usage"]["prompt_tokens"] > 0


async def test_a_conversation_keeps_running_on_the_version_it_started_on(
    sqlite_agent_api: AgentApi,
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)
    conversation = await api.conversation(acme, agent["id"])
    await api.client.patch(
        f"/v1/agents/{agent['id']}",
        json={"end_of_conversation_phrases": ["hello"]},
        headers=acme.headers,
    )
    await api.say(acme, conversation["id"], "hello")
    read = (
        await api.client.get(f"/v1/conversations/{conversation['id']}", headers=acme.headers)
    ).json()
    assert read["agent_version"] == 1
    assert read["status"] == "active"  # version 2's end phrase does not apply


async def test_conversations_are_listed_newest_first_with_filters_and_a_cursor(
    agent_api: AgentApi,
) -> None:
    acme = await agent_api.tenant("Acme")
    support = await agent_api.agent(acme, name="Support")
    sales = await agent_api.agent(acme, name="Sales")
    first = await agent_api.conversation(acme, support["id"])
    second = await agent_api.conversation(acme, sales["id"], channel="chat")
    third = await agent_api.conversation(acme, support["id"])
    await agent_api.client.post(f"/v1/conversations/{third['id']}/end", headers=acme.headers)

    async def ids(query: str) -> list[str]:
        response = await agent_api.client.get(f"/v1/conversations?{query}", headers=acme.headers)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["data"]]

    assert await ids("") == [third["id"], second["id"], first["id"]]
    assert await ids(f"agent_id={support['id']}") == [third["id"], first["id"]]
    assert await ids("status=active") == [second["id"], first["id"]]
    assert await ids("channel=chat") == [second["id"]]
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert await ids(f"created_after={later}") == []
    assert await ids(f"created_before={later}") == [third["id"], second["id"], first["id"]]
    page = (await agent_api.client.get("/v1/conversations?limit=2", headers=acme.headers)).json()
    assert [c["id"] for c in page["data"]] == [third["id"], second["id"]]
    rest = await ids(f"limit=2&cursor={page['next_cursor']}")
    assert rest == [first["id"]]


async def test_ending_a_conversation_emits_conversation_ended_and_refuses_more_messages(
    agent_api: AgentApi,
) -> None:
    acme = await agent_api.tenant("Acme")
    agent = await agent_api.agent(acme)
    conversation = await agent_api.conversation(acme, agent["id"])
    ended = await agent_api.client.post(
        f"/v1/conversations/{conversation['id']}/end",
        json={"reason": "user_ended"},
        headers=acme.headers,
    )
    assert ended.status_code == 200
    assert ended.json()["status"] == "ended"
    assert ended.json()["ended_reason"] == "user_ended"
    [event] = agent_api.events.named("conversation.ended")
    assert event["conversation_id"] == conversation["id"]
    assert event["reason"] == "user_ended"
    refused = await agent_api.say(acme, conversation["id"], "Hello?")
    assert refused.status_code == 409
    assert refused.json()["code"] == "conversation_ended"
    again = await agent_api.client.post(
        f"/v1/conversations/{conversation['id']}/end", headers=acme.headers
    )
    assert again.status_code == 200
    assert len(agent_api.events.named("conversation.ended")) == 1  # ending twice: one event


async def test_starting_a_conversation_emits_conversation_started(
    sqlite_agent_api: AgentApi,
) -> None:
    acme = await sqlite_agent_api.tenant("Acme")
    agent = await sqlite_agent_api.agent(acme)
    conversation = await sqlite_agent_api.conversation(acme, agent["id"], metadata={"ref": "42"})
    [event] = sqlite_agent_api.events.named("conversation.started")
    assert event["conversation_id"] == conversation["id"]
    assert event["org_id"] == acme.org_id
    assert event["channel"] == "api"
    assert event["metadata"] == {"ref": "42"}


async def test_a_message_while_the_agent_is_still_answering_is_refused_as_busy(
    sqlite_agent_api: AgentApi,
) -> None:
    acme = await sqlite_agent_api.tenant("Acme")
    agent = await sqlite_agent_api.agent(acme)
    conversation = await sqlite_agent_api.conversation(acme, agent["id"])
    lock = TurnLock(sqlite_agent_api.backends.redis, conversation["id"])
    assert await lock.acquire()
    try:
        refused = await sqlite_agent_api.say(acme, conversation["id"], "Hello")
        assert refused.status_code == 409
        assert refused.json()["code"] == "conversation_busy"
    finally:
        await lock.release()
    assert (await sqlite_agent_api.say(acme, conversation["id"], "Hello")).status_code == 200


async def test_a_held_turn_lock_still_answers_unknown_and_ended_before_busy(
    sqlite_agent_api: AgentApi,
) -> None:
    """The turn takes the lock before it reads the conversation: a taken lock is read about
    first, so another organisation's or an unknown conversation is 404, an ended one
    `conversation_ended`, and only an active one `conversation_busy`; the lock stays its
    holder's."""
    api = sqlite_agent_api
    acme, other = await api.tenant("Acme"), await api.tenant("Other")
    agent = await api.agent(acme)
    conversation = await api.conversation(acme, agent["id"])
    lock = TurnLock(api.backends.redis, conversation["id"])
    assert await lock.acquire()
    try:
        foreign = await api.say(other, conversation["id"], "Hello")
        assert foreign.status_code == 404
        busy = await api.say(acme, conversation["id"], "Hello")
        assert busy.json()["code"] == "conversation_busy"
        ended = await api.client.post(
            f"/v1/conversations/{conversation['id']}/end", headers=acme.headers
        )
        assert ended.status_code == 200
        refused = await api.say(acme, conversation["id"], "Hello?")
        assert refused.status_code == 409
        assert refused.json()["code"] == "conversation_ended"
        held = TURN_LOCK.format(conversation_id=conversation["id"])
        assert await api.backends.redis.exists(held) == 1  # still its holder's
    finally:
        await lock.release()
    unknown = await api.say(acme, "cnv_does_not_exist", "Hello")
    assert unknown.status_code == 404
    # The lock a refused turn took is given back.
    assert (
        await api.backends.redis.exists(TURN_LOCK.format(conversation_id="cnv_does_not_exist")) == 0
    )
    assert (await api.say(other, conversation["id"], "Hello")).status_code == 404


async def test_an_end_of_conversation_phrase_ends_it_after_the_reply(
    sqlite_agent_api: AgentApi,
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme, end_of_conversation_phrases=["that is all"])
    conversation = await api.conversation(acme, agent["id"])
    reply = await api.say(acme, conversation["id"], "Thanks, That is  all for today")
    assert reply.status_code == 200
    read = (
        await api.client.get(f"/v1/conversations/{conversation['id']}", headers=acme.headers)
    ).json()
    assert read["status"] == "ended"
    assert read["ended_reason"] == "end_phrase"


async def test_a_goodbye_ends_the_conversation_through_the_end_conversation_tool(
    sqlite_agent_api: AgentApi,
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme, tools=[{"type": "end_conversation"}])
    conversation = await api.conversation(acme, agent["id"])
    reply = (await api.say(acme, conversation["id"], "Goodbye")).json()
    assert reply["end_conversation"] is True
    assert reply["tool_calls"][0]["name"] == "end_conversation"
    [event] = api.events.named("conversation.ended")
    assert event["reason"] == "agent_ended"


async def test_asking_for_a_person_hands_the_conversation_over(sqlite_agent_api: AgentApi) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme, tools=[{"type": "transfer_to_human"}])
    conversation = await api.conversation(acme, agent["id"])
    reply = (await api.say(acme, conversation["id"], "Can I talk to a human please?")).json()
    assert reply["handoff"] is True
    assert reply["tool_calls"][0]["name"] == "transfer_to_human"
    assert reply["tool_results"][0]["name"] == "transfer_to_human"
    [event] = api.events.named("handoff.requested")
    assert event["conversation_id"] == conversation["id"]
    read = (
        await api.client.get(f"/v1/conversations/{conversation['id']}", headers=acme.headers)
    ).json()
    assert read["handoff"]["reason"] == "The user asked to speak with a person."


async def test_another_organisations_conversation_is_not_found(agent_api: AgentApi) -> None:
    acme = await agent_api.tenant("Acme")
    globex = await agent_api.tenant("Globex")
    agent = await agent_api.agent(acme)
    conversation = await agent_api.conversation(acme, agent["id"])
    await agent_api.say(acme, conversation["id"], "Hello")
    path = f"/v1/conversations/{conversation['id']}"
    assert (await agent_api.client.get(path, headers=globex.headers)).status_code == 404
    assert (await agent_api.say(globex, conversation["id"], "Hi")).status_code == 404
    assert (await agent_api.client.post(f"{path}/end", headers=globex.headers)).status_code == 404
    assert (await agent_api.client.get("/v1/conversations", headers=globex.headers)).json()[
        "data"
    ] == []
    started = await agent_api.client.post(
        f"/v1/agents/{agent['id']}/conversations", headers=globex.headers
    )
    assert started.status_code == 404
    assert (await agent_api.client.get(path, headers=acme.headers)).json()["status"] == "active"


async def test_the_stored_transcript_redacts_emails_and_card_numbers_when_redaction_is_on(
    agent_api: AgentApi,
) -> None:
    acme = await agent_api.tenant("Acme")
    agent = await agent_api.agent(acme)
    conversation = await agent_api.conversation(acme, agent["id"])
    text = "I'm jane.doe@example.com and my card is 4111 1111 1111 1111, refund please"
    await agent_api.say(acme, conversation["id"], text)
    stored = (
        await agent_api.client.get(f"/v1/conversations/{conversation['id']}", headers=acme.headers)
    ).json()["messages"][0]
    assert stored["content"] == text
    redacted = stored["content_redacted"]
    assert "jane.doe@example.com" not in redacted
    assert "4111" not in redacted
    assert "refund please" in redacted


async def test_no_redacted_copy_is_stored_when_the_organisation_turns_redaction_off(
    sqlite_agent_api: AgentApi,
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)
    conversation = await api.conversation(acme, agent["id"])
    set_org_overrides([(acme.org_id, PII_REDACTION_IN_TRANSCRIPTS.key, False)])
    try:
        await api.say(acme, conversation["id"], "Mail me at jane.doe@example.com")
    finally:
        set_org_overrides([])
    stored = (
        await api.client.get(f"/v1/conversations/{conversation['id']}", headers=acme.headers)
    ).json()["messages"][0]
    assert stored["content_redacted"] is None


async def test_messages_need_the_conversations_write_scope(sqlite_agent_api: AgentApi) -> None:
    from vocalis.core.scopes import Role

    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    viewer = await api.key_for(acme, Role.VIEWER)
    agent = await api.agent(acme)
    conversation = await api.conversation(acme, agent["id"])
    refused = await api.say(viewer, conversation["id"], "Hello")
    assert refused.status_code == 403
    readable = await api.client.get(
        f"/v1/conversations/{conversation['id']}", headers=viewer.headers
    )
    assert readable.status_code == 200
