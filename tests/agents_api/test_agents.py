"""/v1/agents: create, read, list, change (new versions), delete; scopes and tenancy."""

from __future__ import annotations

from tests.agents_api.harness import AgentApi, knowledge_base_rows
from vocalis.core.scopes import Role

HTTP_TOOL = {
    "type": "http_request",
    "name": "lookup_order",
    "description": "Look an order up.",
    "method": "GET",
    "url": "https://crm.example.com/orders/{order_id}",
    "parameters": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
    "headers": {"Authorization": "Bearer {{secret:crm/token}}"},
}


async def test_creating_an_agent_with_the_minimal_body_answers_201_with_defaults(
    agent_api: AgentApi,
) -> None:
    acme = await agent_api.tenant("Acme")
    await knowledge_base_rows(agent_api.backends, acme.org_id, "kb_1")
    response = await agent_api.client.post(
        "/v1/agents",
        json={"name": "Support", "instructions": "Be brief.", "knowledge_base_ids": ["kb_1"]},
        headers=acme.headers,
    )
    assert response.status_code == 201
    agent = response.json()
    assert agent["id"].startswith("agt_")
    assert agent["object"] == "agent"
    assert agent["version"] == 1
    assert agent["model"]["provider"] == "default"  # the deployment's model, else extractive
    assert agent["knowledge_base_ids"] == ["kb_1"]
    assert agent["tools"] == []


async def test_an_agent_can_be_read_back_with_its_whole_configuration(agent_api: AgentApi) -> None:
    acme = await agent_api.tenant("Acme")
    created = await agent_api.agent(
        acme,
        first_message="Hi! How can I help?",
        tools=[HTTP_TOOL, {"type": "transfer_to_human"}],
        voice={"voice": "alloy", "language": "en-GB"},
        end_of_conversation_phrases=["that's all"],
        analysis_plan={
            "summary": True,
            "structured_data_schema": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
            },
        },
        model={"provider": "extractive", "temperature": 0.2, "max_tokens": 300},
    )
    response = await agent_api.client.get(f"/v1/agents/{created['id']}", headers=acme.headers)
    assert response.status_code == 200
    assert response.json() == created
    assert created["tools"][0]["headers"] == {"Authorization": "Bearer {{secret:crm/token}}"}
    assert created["voice"] == {"voice": "alloy", "language": "en-GB"}


async def test_agents_are_listed_newest_first_with_a_cursor(agent_api: AgentApi) -> None:
    acme = await agent_api.tenant("Acme")
    ids = [(await agent_api.agent(acme, name=f"Agent {i}"))["id"] for i in range(3)]
    first = (await agent_api.client.get("/v1/agents?limit=2", headers=acme.headers)).json()
    assert [a["id"] for a in first["data"]] == ids[::-1][:2]
    assert first["has_more"] is True
    second = (
        await agent_api.client.get(
            f"/v1/agents?limit=2&cursor={first['next_cursor']}", headers=acme.headers
        )
    ).json()
    assert [a["id"] for a in second["data"]] == [ids[0]]
    assert second["has_more"] is False


async def test_every_update_creates_a_new_immutable_version(agent_api: AgentApi) -> None:
    acme = await agent_api.tenant("Acme")
    agent = await agent_api.agent(acme, instructions="Version one.")
    response = await agent_api.client.patch(
        f"/v1/agents/{agent['id']}", json={"instructions": "Version two."}, headers=acme.headers
    )
    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert response.json()["instructions"] == "Version two."
    assert response.json()["name"] == agent["name"]  # unchanged fields are kept
    versions = (
        await agent_api.client.get(f"/v1/agents/{agent['id']}/versions", headers=acme.headers)
    ).json()["data"]
    assert [(v["version"], v["config"]["instructions"]) for v in versions] == [
        (2, "Version two."),
        (1, "Version one."),
    ]
    first = await agent_api.client.get(f"/v1/agents/{agent['id']}/versions/1", headers=acme.headers)
    assert first.json()["config"]["instructions"] == "Version one."


async def test_a_deleted_agent_is_gone_from_reads_and_lists(agent_api: AgentApi) -> None:
    acme = await agent_api.tenant("Acme")
    agent = await agent_api.agent(acme)
    deleted = await agent_api.client.delete(f"/v1/agents/{agent['id']}", headers=acme.headers)
    assert deleted.status_code == 204
    assert (
        await agent_api.client.get(f"/v1/agents/{agent['id']}", headers=acme.headers)
    ).status_code == 404
    listed = (await agent_api.client.get("/v1/agents", headers=acme.headers)).json()
    assert listed["data"] == []


async def test_another_organisations_agent_is_not_found(agent_api: AgentApi) -> None:
    acme = await agent_api.tenant("Acme")
    globex = await agent_api.tenant("Globex")
    agent = await agent_api.agent(acme)
    path = f"/v1/agents/{agent['id']}"
    assert (await agent_api.client.get(path, headers=globex.headers)).status_code == 404
    patched = await agent_api.client.patch(path, json={"name": "Mine"}, headers=globex.headers)
    assert patched.status_code == 404
    assert patched.json()["code"] == "not_found"
    assert (await agent_api.client.delete(path, headers=globex.headers)).status_code == 404
    assert (await agent_api.client.get("/v1/agents", headers=globex.headers)).json()["data"] == []
    assert (await agent_api.client.get(path, headers=acme.headers)).json()["name"] == "Support"


async def test_a_viewer_key_reads_agents_but_cannot_create_them(agent_api: AgentApi) -> None:
    acme = await agent_api.tenant("Acme")
    viewer = await agent_api.key_for(acme, Role.VIEWER)
    agent = await agent_api.agent(acme)
    assert (
        await agent_api.client.get(f"/v1/agents/{agent['id']}", headers=viewer.headers)
    ).status_code == 200
    refused = await agent_api.client.post(
        "/v1/agents", json={"name": "X", "instructions": ""}, headers=viewer.headers
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden_scope"


async def test_an_http_request_tool_with_a_placeholder_in_the_host_is_refused(
    sqlite_agent_api: AgentApi,
) -> None:
    acme = await sqlite_agent_api.tenant("Acme")
    tool = HTTP_TOOL | {"url": "https://{order_id}.example.com/orders"}
    response = await sqlite_agent_api.client.post(
        "/v1/agents", json={"name": "X", "tools": [tool]}, headers=acme.headers
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"
    assert "path and query" in response.text


async def test_an_analysis_plan_with_an_invalid_json_schema_is_refused(
    sqlite_agent_api: AgentApi,
) -> None:
    acme = await sqlite_agent_api.tenant("Acme")
    plan = {"structured_data_schema": {"type": "no-such-type"}}
    response = await sqlite_agent_api.client.post(
        "/v1/agents", json={"name": "X", "analysis_plan": plan}, headers=acme.headers
    )
    assert response.status_code == 422
    assert "not a valid JSON Schema" in response.text


async def test_an_openai_provider_needs_a_model_name(sqlite_agent_api: AgentApi) -> None:
    acme = await sqlite_agent_api.tenant("Acme")
    response = await sqlite_agent_api.client.post(
        "/v1/agents", json={"name": "X", "model": {"provider": "openai"}}, headers=acme.headers
    )
    assert response.status_code == 422
    assert "`model` is required" in response.text


async def test_a_model_endpoint_on_a_loopback_address_is_refused_unless_allow_listed(
    sqlite_agent_api: AgentApi,
) -> None:
    acme = await sqlite_agent_api.tenant("Acme")
    model = {"provider": "openai", "model": "llama", "base_url": "http://127.0.0.1:8080/v1"}
    response = await sqlite_agent_api.client.post(
        "/v1/agents", json={"name": "X", "model": model}, headers=acme.headers
    )
    assert response.status_code == 400
    assert response.json()["code"] == "outbound_url_forbidden"


async def test_a_tool_choice_must_name_a_configured_tool(sqlite_agent_api: AgentApi) -> None:
    acme = await sqlite_agent_api.tenant("Acme")
    body = {"name": "X", "tools": [HTTP_TOOL], "model": {"tool_choice": "no_such_tool"}}
    response = await sqlite_agent_api.client.post("/v1/agents", json=body, headers=acme.headers)
    assert response.status_code == 422
    assert "no_such_tool" in response.text
    body["model"] = {"tool_choice": "lookup_order"}
    accepted = await sqlite_agent_api.client.post("/v1/agents", json=body, headers=acme.headers)
    assert accepted.status_code == 201
