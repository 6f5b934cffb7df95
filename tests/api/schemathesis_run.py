"""Schemathesis against the app's own OpenAPI document, inside a loopback-only namespace.

Run by tests/api/test_schemathesis.py as
`unshare --user --map-root-user --net --pid --fork --kill-child python -m tests.api.schemathesis_run`
(never directly on a machine's network: generated webhook, model and MCP URLs must not
leave it). It brings `lo` up, refuses to go on if any other interface is up, starts the app
with uvicorn on 127.0.0.1 (SQLite and the embedded Redis in a temporary data dir), creates
an organisation with an owner key and runs `schemathesis run` (examples, coverage, fuzzing
and stateful phases, fixed seed) with that key. The server counts every HTTP request it
answers; the summary (requests, status classes, schemathesis' exit code) is printed as the
last line, a JSON object.

Environment: ST_MAX_EXAMPLES (per operation, fuzzing phase), ST_STATEFUL_EXAMPLES and
ST_STATEFUL_STEPS (stateful scenarios and their length), ST_SEED, ST_MAX_TIME (seconds, 0 =
no budget), ST_REPORT_DIR (where the JUnit/NDJSON reports go), ST_EXTRA (extra CLI words).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvicorn

ROOT = Path(__file__).resolve().parents[2]
HOOKS = "tests.api.schemathesis_hooks"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "use_after_free",
        "ensure_resource_availability",
        "ignored_auth",
    ]
)


def _loopback_only() -> None:
    """Bring `lo` up; fail unless it is the only interface (a network namespace)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    links = subprocess.run(["ip", "-o", "link"], check=True, capture_output=True, text=True)
    interfaces = sorted(line.split(":")[1].strip() for line in links.stdout.splitlines())
    if interfaces != ["lo"]:
        raise SystemExit(f"not in a loopback-only network namespace: {interfaces}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Counting:
    """ASGI wrapper counting the HTTP requests answered, by status class."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests = 0
        self.statuses: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.requests += 1

        async def counted_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.statuses[f"{message['status'] // 100}xx"] += 1
            await send(message)

        await self.app(scope, receive, counted_send)


async def _owner_key(backends: Any) -> tuple[str, str]:
    from vocalis.core.scopes import Role
    from vocalis.orgs import service as orgs

    async with backends.database.session() as session:
        org, _ = await orgs.create_org(
            session=session, name="Schemathesis", owner_email="st@example.test"
        )
        issued = await orgs.create_api_key(
            session=session, org_id=org.id, name="schemathesis owner", role=Role.OWNER
        )
        key_id = issued.key.id
        await session.commit()
    return issued.plaintext, key_id


def _config(data_dir: Path) -> Path:
    """The phases' own settings (the CLI adds the seed, key, checks and fuzzing examples)."""
    path = data_dir / "schemathesis.toml"
    path.write_text(
        "[phases.stateful]\n"
        f"max-steps = {int(os.environ.get('ST_STATEFUL_STEPS', '12'))}\n"
        "[phases.stateful.generation]\n"
        f"max-examples = {int(os.environ.get('ST_STATEFUL_EXAMPLES', '25'))}\n"
    )
    return path


async def main() -> int:
    _loopback_only()
    from vocalis.adapters import embedded_redis
    from vocalis.app import create_app
    from vocalis.core.migrate import upgrade
    from vocalis.settings import Settings
    from vocalis.wiring import build_backends

    data_dir = Path(tempfile.mkdtemp(prefix="vocalis-st-"))
    redis = embedded_redis.spawn(data_dir / "redis")
    port = _free_port()
    unlimited = {"per_minute": 1_000_000, "burst": 1_000_000}
    classes = ("reads", "writes", "chat_turns", "uploads", "realtime_handshakes")
    per_class = (
        {"rate_limit_classes": dict.fromkeys(classes, unlimited)}
        if "rate_limit_classes" in Settings.model_fields
        else {}
    )
    settings = Settings(
        **per_class,  # type: ignore[arg-type]
        env="test",
        data_dir=data_dir,
        database_url=f"sqlite+aiosqlite:///{data_dir}/vocalis.db",
        redis_url=embedded_redis.url_for(data_dir / "redis"),
        rate_limit_per_minute=1_000_000,
        rate_limit_burst=1_000_000,
        auth_failure_limit=0,  # `ignored_auth` sends wrong keys from 127.0.0.1 on purpose
        log_level="ERROR",
    )
    await asyncio.to_thread(upgrade, settings.resolved_database_url)
    backends = await build_backends(settings)
    key, key_id = await _owner_key(backends)
    counting = Counting(create_app(settings, backends=backends))
    server = uvicorn.Server(
        uvicorn.Config(
            counting,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws="none",
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            return 2
        await asyncio.sleep(0.05)

    report_dir = Path(os.environ.get("ST_REPORT_DIR") or data_dir / "report")
    seed = os.environ.get("ST_SEED", "20261203")
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(_config(data_dir)),
        "run",
        f"http://127.0.0.1:{port}/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        CHECKS,
        "--seed",
        seed,
        "--max-examples",
        os.environ.get("ST_MAX_EXAMPLES", "12"),
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--suppress-health-check",
        "all",
        "--report",
        "junit,ndjson",
        "--report-dir",
        str(report_dir),
        "--output-truncate",
        "false",
        "--no-color",
    ]
    if int(os.environ.get("ST_MAX_TIME", "0") or 0) > 0:
        command += ["--max-time", os.environ["ST_MAX_TIME"]]
    command += shlex.split(os.environ.get("ST_EXTRA", ""))
    env = dict(
        os.environ,
        SCHEMATHESIS_HOOKS=HOOKS,
        ST_OWNER_KEY_ID=key_id,
        PYTHONPATH=str(ROOT),
        NO_COLOR="1",
    )
    started = time.monotonic()
    st = await asyncio.create_subprocess_exec(*command, env=env, cwd=str(ROOT))
    rc = await st.wait()
    elapsed = time.monotonic() - started
    server.should_exit = True
    await serving
    await backends.close()
    redis.terminate()
    redis.wait()
    summary = {
        "schemathesis_rc": rc,
        "requests": counting.requests,
        "statuses": dict(counting.statuses),
        "seconds": round(elapsed, 1),
        "seed": int(seed),
        "report_dir": str(report_dir),
    }
    print("ST-SUMMARY " + json.dumps(summary), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
