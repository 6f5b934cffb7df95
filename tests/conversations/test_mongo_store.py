"""The conversation flow with MongoDB as the document store (the production adapter)."""

from __future__ import annotations

from tests.agents_api.harness import AgentApi


async def test_a_conversation_is_stored_listed_and_ended_in_mongodb(
    mongo_agent_api: AgentApi,
) -> None:
    api = mongo_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme, first_message="Hi!")
    conversation = await api.conversation(acme, agent["id"], channel="chat")
    reply = await api.say(acme, conversation["id"], "Hello, my email is jane@example.com")
    assert reply.status_code == 200
    listed = (
        await api.client.get(
            f"/v1/conversations?agent_id={agent['id']}&channel=chat&status=active",
            headers=acme.headers,
        )
    ).json()["data"]
    assert [c["id"] for c in listed] == [conversation["id"]]
    ended = await api.client.post(
        f"/v1/conversations/{conversation['id']}/end", headers=acme.headers
    )
    assert ended.json()["status"] == "ended"
    read = (
        await api.client.get(f"/v1/conversations/{conversation['id']}", headers=acme.headers)
    ).json()
    assert [m["sequence"] for m in read["messages"]] == [1, 2, 3]
    assert "jane@example.com" not in read["messages"][1]["content_redacted"]
    assert read["message_count"] == 3
