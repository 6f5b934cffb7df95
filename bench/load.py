"""Sustained mixed load: REST reads, writes, chat turns and uploads, plus concurrent
realtime sessions, for a fixed time — errors must be zero.

    .venv/bin/python bench/load.py [--services] [--duration 60] [--clients 8]
        [--realtime 4] [--netns] [--json bench/results/load_embedded.json] [--docs]

Starts Vocalis as `make run` does (`vocalis run`: migrations, the first-run key, a Celery
worker and beat, then `vocalis serve`) on the embedded defaults (SQLite, embedded Redis,
local objects, LanceDB) — or, with `--services`, on PostgreSQL and Redis (a fresh database
and Redis database on the machine's servers; with `--netns`, private ones started inside
the namespace). The per-key rate limits (the key's and each route class's) are raised out of the way (one
key sends everything; the limiter still runs on every request); every other setting is the
default, including the realtime session caps.

Traffic, for `--duration` seconds, from one client process:
- `--clients` REST clients in closed loops (no think time), each picking by weight:
  reads 50 % (`GET /v1/org`, `/v1/agents`, `/v1/agents/{id}`, `/v1/knowledge-bases`,
  `/v1/conversations`), writes 20 % (create then delete an agent, patch an agent), chat
  turns 27 % (`POST /v1/conversations/{id}/messages` and `POST /v1/chat/completions` on an
  extractive agent grounded in a knowledge base: no model server), uploads 3 % (a small text
  document, ingested by the worker while the load runs);
- `--realtime` WebSocket sessions on `/v1/realtime` held open the whole time, each asking a
  typed question, waiting for `response.done`, pausing 0.5 s, and again.

An error is any unexpected status, a transport error or timeout, a realtime `error` event or
a dropped session, or an uploaded document that does not end `ready` once the load stops.
Reported: sustained requests per second (REST requests and realtime turns over the
measured time), p50/p99 per class and overall, errors by kind; JSON to bench/results/.

`--netns` re-runs the benchmark inside a new network namespace with only a loopback
interface (`unshare -n`, root): nothing it starts can reach another machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.api_overhead import (  # noqa: E402
    PASSAGE,
    QUESTION,
    _free_port,
    _pg_database,
    _stop,
    start_vocalis,
    vocalis_env,
)

PYTHON = sys.executable
WEIGHTS = {"read": 50, "write": 20, "chat": 27, "upload": 3}
DOCS_BEGIN = "<!-- load-bench:begin -->"
DOCS_END = "<!-- load-bench:end -->"


# --- servers ------------------------------------------------------------------------------------
@dataclass
class Servers:
    url: str
    key: str
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)
    cleanups: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop(process)
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # report, keep cleaning
                print(f"cleanup failed: {exc!r}", file=sys.stderr)


def _private_redis(workdir: Path) -> tuple[str, subprocess.Popen[Any]]:
    port = _free_port()
    process = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return f"redis://127.0.0.1:{port}/0", process


def _private_postgres(workdir: Path) -> tuple[str, Any]:
    """A throw-away PostgreSQL cluster (Debian's binaries, run as `postgres`)."""
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    data = workdir / "pg"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    os.chmod(workdir, 0o755)
    port = _free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_pg,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [
            *as_pg,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(data / "log"),
            "-o",
            f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [
            *as_pg,
            str(bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "vocalis",
        ],
        check=True,
    )

    def stop() -> None:
        subprocess.run(
            [*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
        )

    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/vocalis", stop


def start(args: argparse.Namespace, workdir: Path) -> Servers:
    port = _free_port()
    env = vocalis_env(workdir, port)
    servers = Servers(f"http://127.0.0.1:{port}", key="")
    if not args.services:
        from vocalis.adapters import embedded_redis

        servers.cleanups.append(lambda: embedded_redis.stop(workdir / "data"))
    elif args.netns:  # the machine's servers are outside the namespace: private ones
        redis_url, redis_process = _private_redis(workdir)
        servers.processes.append(redis_process)
        database_url, stop_pg = _private_postgres(workdir)
        servers.cleanups.append(stop_pg)
        env |= {"VOCALIS_DATABASE_URL": database_url, "VOCALIS_REDIS_URL": redis_url}
    else:
        database_url, drop = _pg_database()
        servers.cleanups.append(drop)
        redis_url = f"{args.redis_url}/{args.redis_db}"
        import redis

        redis.Redis.from_url(redis_url).flushdb()
        env |= {"VOCALIS_DATABASE_URL": database_url, "VOCALIS_REDIS_URL": redis_url}
    start_vocalis(workdir, env, servers, servers.url)
    return servers


# --- fixtures -----------------------------------------------------------------------------------
@dataclass
class Fixtures:
    agent_id: str
    kb_id: str
    conversations: list[str]


def _wait_ready(
    client: httpx.Client, kb_id: str, ids: list[str], timeout_s: float
) -> dict[str, str]:
    """Poll the documents until each is `ready` or `failed` (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        for doc_id in ids:
            if status.get(doc_id) not in ("ready", "failed"):
                got = client.get(f"/v1/knowledge-bases/{kb_id}/documents/{doc_id}")
                status[doc_id] = got.json().get("status", "?")
        if all(s in ("ready", "failed") for s in status.values()) and len(status) == len(ids):
            break
        time.sleep(1)
    return status


def prepare(servers: Servers, clients: int) -> Fixtures:
    headers = {"Authorization": f"Bearer {servers.key}"}
    with httpx.Client(base_url=servers.url, headers=headers, timeout=120) as client:
        kb = client.post("/v1/knowledge-bases", json={"name": "Load"})
        kb.raise_for_status()
        kb_id = kb.json()["id"]
        up = client.post(
            f"/v1/knowledge-bases/{kb_id}/documents",
            files={"file": ("support.txt", PASSAGE.encode(), "text/plain")},
        )
        up.raise_for_status()
        status = _wait_ready(client, kb_id, [up.json()["id"]], 300)
        if set(status.values()) != {"ready"}:
            raise RuntimeError(f"the seed document did not ingest: {status}")
        agent = client.post(
            "/v1/agents",
            json={"name": "Load", "instructions": "Help customers.", "knowledge_base_ids": [kb_id]},
        )
        agent.raise_for_status()
        agent_id = agent.json()["id"]
        conversations = []
        for _ in range(clients):
            made = client.post(f"/v1/agents/{agent_id}/conversations", json={})
            made.raise_for_status()
            conversations.append(made.json()["id"])
        # One turn of each kind first: engines and caches loaded before the clock starts.
        client.post(
            f"/v1/conversations/{conversations[0]}/messages", json={"content": QUESTION}
        ).raise_for_status()
    return Fixtures(agent_id, kb_id, conversations)


# --- the load -----------------------------------------------------------------------------------
@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    realtime_turns: list[float] = field(default_factory=list)
    realtime_sessions_open: int = 0

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{kind}: {detail[:300]}")


async def _rest_client(
    n: int, base: str, key: str, fx: Fixtures, deadline: float, results: Results
) -> None:
    rng = random.Random(1000 + n)
    headers = {"Authorization": f"Bearer {key}"}
    conversation = fx.conversations[n]
    kinds = list(WEIGHTS)
    weights = list(WEIGHTS.values())
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:

        async def call(
            kind: str, method: str, path: str, expect: int, **kw: Any
        ) -> httpx.Response | None:
            started = time.perf_counter()
            try:
                response = await client.request(method, path, **kw)
            except httpx.HTTPError as exc:
                results.error(f"{kind}:transport", f"{method} {path}: {exc!r}")
                return None
            results.latencies[kind].append(time.perf_counter() - started)
            if response.status_code != expect:
                results.error(f"{kind}:{response.status_code}", f"{method} {path}: {response.text}")
                return None
            return response

        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            if kind == "read":
                path = rng.choice(
                    [
                        "/v1/org",
                        "/v1/agents",
                        f"/v1/agents/{fx.agent_id}",
                        "/v1/knowledge-bases",
                        "/v1/conversations?limit=20",
                    ]
                )
                await call("read", "GET", path, 200)
            elif kind == "write":
                if rng.random() < 0.5:
                    await call(
                        "write",
                        "PATCH",
                        f"/v1/agents/{fx.agent_id}",
                        200,
                        json={"instructions": f"Help customers ({rng.random():.3f})."},
                    )
                else:
                    made = await call(
                        "write",
                        "POST",
                        "/v1/agents",
                        201,
                        json={
                            "name": f"Load {n}",
                            "instructions": "Help.",
                            "knowledge_base_ids": [],
                        },
                    )
                    if made is not None:
                        await call("write", "DELETE", f"/v1/agents/{made.json()['id']}", 204)
            elif kind == "chat":
                if rng.random() < 0.5:
                    await call(
                        "chat",
                        "POST",
                        f"/v1/conversations/{conversation}/messages",
                        200,
                        json={"content": QUESTION},
                    )
                else:
                    await call(
                        "chat",
                        "POST",
                        "/v1/chat/completions",
                        200,
                        json={
                            "model": fx.agent_id,
                            "messages": [{"role": "user", "content": QUESTION}],
                        },
                    )
            else:
                tag = uuid.uuid4().hex[:8]
                text = f"Item {tag}. {PASSAGE}\n\n" * 4
                made = await call(
                    "upload",
                    "POST",
                    f"/v1/knowledge-bases/{fx.kb_id}/documents",
                    202,  # accepted: ingestion is the worker's
                    files={"file": (f"load-{n}-{tag}.txt", text.encode(), "text/plain")},
                )
                if made is not None:
                    results.uploads.append(made.json()["id"])


async def _realtime_session(
    base: str, key: str, agent_id: str, deadline: float, results: Results
) -> None:
    import websockets

    url = base.replace("http://", "ws://") + f"/v1/realtime?agent_id={agent_id}"
    item = {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": QUESTION}],
        },
    }
    try:
        async with websockets.connect(
            url,
            additional_headers={"Authorization": f"Bearer {key}"},
            max_size=None,
            open_timeout=30,
        ) as ws:
            results.realtime_sessions_open += 1
            await ws.recv()  # session.created
            await ws.send(
                json.dumps(
                    {
                        "type": "session.update",
                        "session": {"type": "realtime", "output_modalities": ["text"]},
                    }
                )
            )
            while json.loads(await ws.recv())["type"] != "session.updated":
                pass
            while time.monotonic() < deadline:
                started = time.perf_counter()
                await ws.send(json.dumps(item))
                await ws.send(json.dumps({"type": "response.create"}))
                while True:
                    event = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if event["type"] == "response.done":
                        status = event.get("response", {}).get("status")
                        if status not in (None, "completed"):
                            results.error("realtime:response", json.dumps(event)[:300])
                        break
                    if event["type"] == "error":
                        results.error("realtime:error", json.dumps(event)[:300])
                results.realtime_turns.append(time.perf_counter() - started)
                await asyncio.sleep(0.5)  # a person reads the answer
    except Exception as exc:
        results.error("realtime:session", repr(exc))


async def run_load(
    args: argparse.Namespace, servers: Servers, fx: Fixtures
) -> tuple[Results, float]:
    results = Results()
    began = time.monotonic()
    deadline = began + args.duration
    await asyncio.gather(
        *(
            _rest_client(n, servers.url, servers.key, fx, deadline, results)
            for n in range(args.clients)
        ),
        *(
            _realtime_session(servers.url, servers.key, fx.agent_id, deadline, results)
            for _ in range(args.realtime)
        ),
    )
    return results, time.monotonic() - began


# --- report -------------------------------------------------------------------------------------
def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 1)


def report(
    args: argparse.Namespace,
    results: Results,
    elapsed: float,
    ingest: dict[str, str],
    load_before: tuple[float, ...],
) -> dict[str, Any]:
    rest = [x for values in results.latencies.values() for x in values]
    failed_ingest = [d for d, s in ingest.items() if s != "ready"]
    for doc_id in failed_ingest:
        results.error("upload:ingest", f"{doc_id}: {ingest[doc_id]}")
    classes = {
        kind: {
            "requests": len(values),
            "rps": round(len(values) / elapsed, 1),
            "p50_ms": _pct(values, 50),
            "p99_ms": _pct(values, 99),
        }
        for kind, values in sorted(results.latencies.items())
    }
    classes["realtime_turn"] = {
        "requests": len(results.realtime_turns),
        "rps": round(len(results.realtime_turns) / elapsed, 1),
        "p50_ms": _pct(results.realtime_turns, 50),
        "p99_ms": _pct(results.realtime_turns, 99),
    }
    total = len(rest) + len(results.realtime_turns)
    return {
        "setup": "postgres+redis" + (" (private, netns)" if args.netns else "")
        if args.services
        else "embedded (make run)",
        "netns": bool(args.netns),
        "duration_s": round(elapsed, 1),
        "clients": args.clients,
        "realtime_sessions": args.realtime,
        "realtime_sessions_opened": results.realtime_sessions_open,
        "requests": total,
        "sustained_rps": round(total / elapsed, 1),
        "p50_ms": _pct(rest + results.realtime_turns, 50),
        "p99_ms": _pct(rest + results.realtime_turns, 99),
        "errors": sum(results.errors.values()),
        "errors_by_kind": dict(results.errors),
        "error_samples": results.error_samples,
        "uploads": len(results.uploads),
        "uploads_ready": sum(1 for s in ingest.values() if s == "ready"),
        "classes": classes,
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def table(reports: list[dict[str, Any]]) -> str:
    lines = [
        "| setup | requests | sustained req/s | p50 ms | p99 ms | errors | realtime sessions | uploads ingested | load avg before → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        lines.append(
            f"| {r['setup']} | {r['requests']} | {r['sustained_rps']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['errors']} | {r['realtime_sessions_opened']}/{r['realtime_sessions']} | "
            f"{r['uploads_ready']}/{r['uploads']} | {r['host']['load_before'][0]:.1f} → "
            f"{r['host']['load_after'][0]:.1f} |"
        )
    lines += [
        "",
        "| setup | class | requests | req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        for kind, c in r["classes"].items():
            lines.append(
                f"| {r['setup']} | {kind} | {c['requests']} | {c['rps']} | {c['p50_ms']} | {c['p99_ms']} |"
            )
    return "\n".join(lines) + "\n"


def write_docs(path: Path, json_paths: list[Path]) -> None:
    reports = [json.loads(p.read_text()) for p in json_paths if p.exists()]
    text = path.read_text()
    start, end = text.index(DOCS_BEGIN) + len(DOCS_BEGIN), text.index(DOCS_END)
    path.write_text(text[:start] + "\n" + table(reports) + text[end:])


# --- main ---------------------------------------------------------------------------------------
def _in_netns(argv: list[str]) -> int:
    """Run this script again in a new network namespace with only loopback up."""
    if os.geteuid() != 0:
        raise SystemExit("--netns needs root (unshare -n)")
    inner = [a for a in argv if a != "--netns"] + ["--in-netns"]
    script = "ip link set lo up && exec " + " ".join(
        [PYTHON, str(Path(__file__).resolve()), *inner]
    )
    return subprocess.call(["unshare", "-n", "bash", "-c", script])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", action="store_true", help="PostgreSQL + Redis")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--realtime", type=int, default=4)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--docs", type=Path, help="update the results table in this Markdown file")
    parser.add_argument(
        "--netns", action="store_true", help="run in a loopback-only network namespace"
    )
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.netns and not args.in_netns:
        return _in_netns(sys.argv[1:])
    args.netns = args.netns or args.in_netns
    workdir = Path(tempfile.mkdtemp(prefix="vocalis-load-"))
    servers = start(args, workdir)
    try:
        fx = prepare(servers, args.clients)
        load_before = os.getloadavg()
        results, elapsed = asyncio.run(run_load(args, servers, fx))
        with httpx.Client(
            base_url=servers.url, headers={"Authorization": f"Bearer {servers.key}"}, timeout=60
        ) as client:
            ingest = _wait_ready(client, fx.kb_id, results.uploads, 600) if results.uploads else {}
        out = report(args, results, elapsed, ingest, load_before)
    finally:
        servers.stop()
    print(json.dumps({k: v for k, v in out.items() if k != "error_samples"}, indent=2))
    for sample in out["error_samples"]:
        print("error:", sample, file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.docs:
        paths = [
            ROOT / "bench/results/load_embedded.json",
            ROOT / "bench/results/load_services.json",
        ]
        write_docs(args.docs, paths)
    if out["errors"]:
        print(f"errors: logs kept in {workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
