"""Every Redis key a real run writes is declared (`core/redis_keys.declare`) and expires.

`docs/reference/redis-keys.md` is generated from the declarations; this test drives the API
(an agent, a conversation turn, rate-limited requests of several classes, a realtime client
secret) against a real Redis database of its own, then reads back every `vocalis:` key
there: each must match a declared pattern and carry a TTL, as the reference says.
"""

from __future__ import annotations

import re

import redis.asyncio as aioredis

from tests.agents_api.harness import AgentApi
from vocalis.core.redis_keys import KEYS


def _pattern(declared: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[a-z_]+\})", declared)
    return re.compile("".join("[^:]+" if p.startswith("{") else re.escape(p) for p in parts))


def _undeclared(keys: list[str]) -> list[str]:
    patterns = [_pattern(k.pattern) for k in KEYS.values()]
    return sorted(k for k in keys if not any(p.fullmatch(k) for p in patterns))


async def test_every_key_a_run_writes_is_declared_and_expires(
    sqlite_agent_api: AgentApi, redis_url: str
) -> None:
    api = sqlite_agent_api
    acme = await api.tenant("Acme")
    agent = await api.agent(acme)
    conversation = await api.conversation(acme, agent["id"])
    said = await api.say(acme, conversation["id"], "Hello there")
    assert said.status_code == 200, said.text
    assert (await api.client.get("/v1/org", headers=acme.headers)).status_code == 200
    secret = await api.client.post("/v1/realtime/client_secrets", json={}, headers=acme.headers)
    assert secret.status_code in (200, 201), secret.text

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = sorted([k async for k in client.scan_iter(match="vocalis:*")])
        ttls = {k: await client.pttl(k) for k in keys}
    finally:
        await client.aclose()
    prefixes = {k.split(":")[1] for k in keys}
    assert {"rl", "keyused", "rt"} <= prefixes, keys  # buckets, last-used marker, secret
    assert any(k.count(":") == 3 and k.startswith("vocalis:rl:") for k in keys), keys
    assert _undeclared(keys) == []
    assert [k for k, ttl in ttls.items() if ttl < 0] == []  # every key expires


def test_the_pattern_match_is_strict() -> None:
    assert _undeclared(["vocalis:rl:key_1", "vocalis:rl:key_1:reads"]) == []
    assert _undeclared(["vocalis:nope:1"]) == ["vocalis:nope:1"]
