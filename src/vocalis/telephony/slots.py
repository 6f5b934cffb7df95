"""Concurrent phone calls per organisation: one slot per call in a Redis sorted set.

A slot's score is the time it lapses by itself (the call's longest possible life), so a
process that died mid-call cannot hold a slot for ever.
"""

from __future__ import annotations

import time

from vocalis.core.backends import Backends
from vocalis.core.redis_keys import declare
from vocalis.telephony.errors import CallLimitReached

CALL_SLOTS = declare(
    "telephony_call_slots",
    "vocalis:tel:calls:{org_id}",
    "Sorted set of the organisation's calls in progress (member: slot id, score: when the "
    "slot lapses by itself).",
    "Refreshed on each claim to the longest call's life.",
)
SLACK_S = 300  # a slot outlives the call's maximum duration by this much

_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if tonumber(ARGV[4]) == 1 and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""


async def claim_slot(backends: Backends, *, org_id: str, slot_id: str, enforce: bool) -> None:
    """Hold a call slot; with `enforce`, CallLimitReached when the organisation is at its cap."""
    settings = backends.settings
    life = settings.telephony_max_call_duration_s + settings.telephony_stream_token_ttl_s + SLACK_S
    now = time.time()
    cap = settings.telephony_max_concurrent_calls_per_org
    claimed = await backends.redis.eval(
        _CLAIM,
        1,
        CALL_SLOTS.format(org_id=org_id),
        str(now),
        str(now + life),
        str(cap),
        "1" if enforce else "0",
        slot_id,
        str(life),
    )
    if not int(claimed):
        raise CallLimitReached(
            f"The organisation already has {cap} calls in progress.", headers={"Retry-After": "30"}
        )


async def active_calls(backends: Backends, *, org_id: str) -> int:
    """Calls the organisation has in progress."""
    key = CALL_SLOTS.format(org_id=org_id)
    await backends.redis.zremrangebyscore(key, "-inf", time.time())
    return int(await backends.redis.zcard(key))


async def release_slot(backends: Backends, *, org_id: str, slot_id: str) -> None:
    """Give the slot back."""
    await backends.redis.zrem(CALL_SLOTS.format(org_id=org_id), slot_id)
