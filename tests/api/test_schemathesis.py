"""Property-based API testing: Schemathesis against the app's own OpenAPI document.

`tests/api/schemathesis_run.py` runs in a network namespace that has only a loopback
interface (`unshare --net`, as an unprivileged user namespace), so the webhook, model and
MCP URLs that Schemathesis generates can never leave the machine. It serves the app on
127.0.0.1 (SQLite and the embedded Redis) and runs every phase (examples, coverage,
fuzzing, stateful) over every operation with an owner key and a fixed seed. Checks: no
5xx, responses conform to the documented schemas, status codes, content types and headers;
deleted resources stay deleted, created ones can be read; operations refuse requests
without the key.

The default run (in `make test`) sends well over 1,000 requests in about two minutes;
`VOCALIS_SCHEMATHESIS_LONG=1` runs the long one (more examples per operation, longer
stateful scenarios; see docs/10-local-development.md). Findings are fixed in the routes and
kept below as regression tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.api.conftest import Api

ROOT = Path(__file__).resolve().parents[2]
LONG = os.environ.get("VOCALIS_SCHEMATHESIS_LONG", "") not in ("", "0")
NAMESPACE = ["unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"]
MIN_REQUESTS = 1_000


def _run(tmp_path: Path, env: dict[str, str], timeout: float) -> tuple[int, str, dict[str, Any]]:
    assert shutil.which("unshare") and shutil.which("ip"), "unshare and ip (util-linux, iproute2)"
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("VOCALIS_")}
    run_env.update(env, ST_REPORT_DIR=str(tmp_path / "report"), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [*NAMESPACE, sys.executable, "-m", "tests.api.schemathesis_run"],
        cwd=ROOT,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    (tmp_path / "schemathesis.log").write_text(output)
    lines = [line for line in done.stdout.splitlines() if line.startswith("ST-SUMMARY ")]
    summary = json.loads(lines[-1].removeprefix("ST-SUMMARY ")) if lines else {}
    return done.returncode, output, summary


@pytest.mark.timeout(3_600 if LONG else 600)
def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    env = (
        {"ST_MAX_EXAMPLES": "60", "ST_STATEFUL_EXAMPLES": "200", "ST_SEED": "1"}
        if LONG
        else {"ST_MAX_EXAMPLES": "3", "ST_STATEFUL_EXAMPLES": "25"}
    )
    rc, output, summary = _run(tmp_path, env, timeout=3_500 if LONG else 560)
    print(json.dumps(summary))
    assert rc == 0, output[-20_000:]
    assert summary["schemathesis_rc"] == 0
    assert summary["requests"] >= MIN_REQUESTS, summary
    assert "5xx" not in summary["statuses"], summary
    assert "Stateful" in output and "Coverage" in output and "Fuzzing" in output


def test_the_run_refuses_a_machine_network(tmp_path: Path) -> None:
    """Outside a loopback-only namespace the runner stops before starting anything."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.api.schemathesis_run"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "not in a loopback-only network namespace" in done.stdout + done.stderr


def test_the_namespace_has_only_loopback() -> None:
    """What the run relies on: no route out, loopback up (checked, not assumed)."""
    script = (
        "import socket, subprocess;"
        "subprocess.run(['ip','link','set','lo','up'],check=True);"
        "s=socket.socket();s.settimeout(3)\n"
        "try:\n s.connect(('192.0.2.1', 80)); print('REACHED')\n"
        "except OSError as e: print('UNREACHABLE', e.errno)\n"
        "l=socket.socket();l.bind(('127.0.0.1',0));l.listen();"
        "c=socket.create_connection(l.getsockname());print('LOOPBACK OK')"
    )
    done = subprocess.run(
        [*NAMESPACE, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "UNREACHABLE 101" in done.stdout and "LOOPBACK OK" in done.stdout


# --- regressions: what Schemathesis found ---------------------------------------------------


def _problem_schema(document: dict[str, Any]) -> dict[str, Any]:
    return {"$ref": "#/components/schemas/Problem", "components": document["components"]}


def test_every_error_response_is_documented_as_a_problem(sqlite_api: Api) -> None:
    """Found: routes declared `404`/`409`/`502`… with a description only, and the app-wide
    `4XX`/`5XX` listed `application/problem+json` without a schema, so no client (and no
    conformance check) knew an error's body."""
    document = sqlite_api.app.openapi()
    undocumented = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    content = response.get("content", {})
                    schema = content.get("application/problem+json", {}).get("schema")
                    if schema != {"$ref": "#/components/schemas/Problem"} or len(content) != 1:
                        undocumented.append(f"{method.upper()} {path} {status}")
    assert undocumented == []


async def test_a_real_404_matches_the_documented_problem(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    response = await sqlite_api.client.get("/v1/agents/agt_missing", headers=tenant.headers)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    document = sqlite_api.app.openapi()
    documented = document["paths"]["/v1/agents/{agent_id}"]["get"]["responses"]["404"]
    assert "application/problem+json" in documented["content"]
    jsonschema.validate(response.json(), _problem_schema(document))


async def test_streamed_events_match_the_documented_event_schema(sqlite_api: Api) -> None:
    """Found: `POST /v1/conversations/{id}/messages` with `stream: true` documented its
    `text/event-stream` body as one string; OpenAPI 3.1 reads that schema as each event's
    (`{"event": …, "data": …}`), so every streamed reply failed conformance."""
    tenant = await sqlite_api.tenant()
    agent = await sqlite_api.client.post(
        "/v1/agents", json={"name": "Streamer", "instructions": "Hi."}, headers=tenant.headers
    )
    conversation = await sqlite_api.client.post(
        f"/v1/agents/{agent.json()['id']}/conversations", json={}, headers=tenant.headers
    )
    path = f"/v1/conversations/{conversation.json()['id']}/messages"
    response = await sqlite_api.client.post(
        path, json={"content": "0", "stream": True}, headers=tenant.headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    document = sqlite_api.app.openapi()
    streams = [
        (p, m, r["content"]["text/event-stream"]["schema"])
        for p, item in document["paths"].items()
        for m, op in item.items()
        for r in op["responses"].values()
        if "text/event-stream" in r.get("content", {})
    ]
    assert len(streams) >= 2  # conversation messages, chat completions (and completions)
    schema = document["paths"]["/v1/conversations/{conversation_id}/messages"]["post"]["responses"][
        "200"
    ]["content"]["text/event-stream"]["schema"]
    assert all(s == schema for _, _, s in streams)
    events = []
    for block in response.text.strip().split("\n\n"):
        event: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            event[name] = value
        events.append(event)
    assert [e["event"] for e in events][-1] == "message.completed"
    for event in events:
        jsonschema.validate(event, schema)
        json.loads(event["data"])


async def test_a_deleted_agents_versions_are_gone_from_the_api(sqlite_api: Api) -> None:
    """Found (stateful, ST301): after `DELETE /v1/agents/{id}`, the agent and its version
    list answered 404 but `GET /v1/agents/{id}/versions/1` still answered 200."""
    tenant = await sqlite_api.tenant()
    created = await sqlite_api.client.post(
        "/v1/agents", json={"name": "Gone", "instructions": "Hi."}, headers=tenant.headers
    )
    agent_id = created.json()["id"]
    version = f"/v1/agents/{agent_id}/versions/1"
    assert (await sqlite_api.client.get(version, headers=tenant.headers)).status_code == 200
    deleted = await sqlite_api.client.delete(f"/v1/agents/{agent_id}", headers=tenant.headers)
    assert deleted.status_code == 204
    for path in (f"/v1/agents/{agent_id}", f"/v1/agents/{agent_id}/versions", version):
        response = await sqlite_api.client.get(path, headers=tenant.headers)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"


def test_creations_link_to_what_they_created(sqlite_api: Api) -> None:
    """The stateful phase follows OpenAPI links: each creation names the operations on the
    resource it created, and every link points at a real operation and its parameters."""
    document = sqlite_api.app.openapi()
    by_id = {
        op["operationId"]: (path, op)
        for path, item in document["paths"].items()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    agents = document["paths"]["/v1/agents"]["post"]["responses"]["201"]["links"]
    get_agent = next(
        link for link in agents.values() if by_id[link["operationId"]][0] == "/v1/agents/{agent_id}"
    )
    assert get_agent["parameters"] == {"agent_id": "$response.body#/id"}
    started = document["paths"]["/v1/agents/{agent_id}/conversations"]["post"]["responses"]
    targets = {by_id[link["operationId"]][0] for link in started["201"]["links"].values()}
    assert "/v1/conversations/{conversation_id}" in targets
    linked = 0
    for item in document["paths"].values():
        for op in item.values():
            for response in op.get("responses", {}).values():
                for link in response.get("links", {}).values():
                    path, _ = by_id[link["operationId"]]
                    assert set(link["parameters"]) == {
                        p[1:-1] for p in path.split("/") if p.startswith("{")
                    }
                    linked += 1
    assert linked >= 25
