"""The conversation's turn lock survives its holder being cancelled mid-command.

A speculative voice reply is dropped (cancelled) whenever the caller goes on speaking, often
while its turn is taking or giving back the lock. Redis keeps executing a command whose
caller was cancelled when the command reached it, so a lock taken or kept that way would
refuse the caller's real turn ("is answering another message") until its TTL. These tests
keep a private redis-server busy with a script for a moment, send the lock's command (it
waits in the server's socket) and cancel its caller meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.fixtures.redis_server import RedisServer
from vocalis.conversations.store import TURN_LOCK, TurnLock

BUSY_MS = 400
# Runs for ARGV[1] microseconds: the server reads no other client's command meanwhile.
_BUSY = """
local start = redis.call('TIME')
while true do
  local now = redis.call('TIME')
  if (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > tonumber(ARGV[1]) then return 1 end
end
"""


@pytest.fixture
async def clients(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[aioredis.Redis, aioredis.Redis]]:
    """The lock's client and a second connection that keeps the server busy and reads keys;
    on a redis-server of the test's own, so that keeping it busy holds up no other test."""
    holder, control = aioredis.from_url(redis_server.url), aioredis.from_url(redis_server.url)
    yield holder, control
    await holder.aclose()
    await control.aclose()


async def _cancel_while_busy(command: Coroutine[Any, Any, object], busy_on: aioredis.Redis) -> None:
    """Cancel `command` while the server runs a script sent on `busy_on`'s connection."""
    busy = asyncio.ensure_future(busy_on.eval(_BUSY, 0, BUSY_MS * 1000))
    await asyncio.sleep(0.05)  # the server is in the script
    call = asyncio.ensure_future(command)
    await asyncio.sleep(0.1)  # the command is sent and waits for the server
    assert not call.done()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await busy == 1


async def test_a_lock_taken_as_its_taker_is_cancelled_is_given_back(
    clients: tuple[aioredis.Redis, aioredis.Redis],
) -> None:
    holder, control = clients
    lock = TurnLock(holder, "cnv_cancelled_acquire")
    await holder.ping()  # connected: the SET is written at once and waits in the server
    await _cancel_while_busy(lock.acquire(), control)
    # Redis ran the SET once the script ended; the cancelled taker gave the lock back.
    assert await control.exists(TURN_LOCK.format(conversation_id="cnv_cancelled_acquire")) == 0
    assert lock.held is False
    other = TurnLock(holder, "cnv_cancelled_acquire")
    assert await other.acquire()
    await other.release()


async def test_a_release_interrupted_by_a_cancellation_still_gives_the_lock_back(
    clients: tuple[aioredis.Redis, aioredis.Redis],
) -> None:
    holder, control = clients
    lock = TurnLock(holder, "cnv_cancelled_release")
    assert await lock.acquire()
    # The script holds the lock client's connection: the release must open another one,
    # and is cancelled before its command could be written.
    await _cancel_while_busy(lock.release(), holder)
    assert await control.exists(TURN_LOCK.format(conversation_id="cnv_cancelled_release")) == 0
    assert await TurnLock(holder, "cnv_cancelled_release").acquire()


async def test_a_lock_someone_else_holds_is_not_taken_by_a_cancelled_taker(
    clients: tuple[aioredis.Redis, aioredis.Redis],
) -> None:
    holder, control = clients
    first = TurnLock(holder, "cnv_busy")
    assert await first.acquire()
    late = TurnLock(holder, "cnv_busy")
    await _cancel_while_busy(late.acquire(), control)
    # The refused taker owns nothing and gives nothing back: the first holder keeps it.
    key = TURN_LOCK.format(conversation_id="cnv_busy")
    assert await control.exists(key) == 1
    assert late.held is False
    await first.release()
    assert await control.exists(key) == 0
