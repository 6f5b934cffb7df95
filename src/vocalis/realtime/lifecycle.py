"""When a realtime conversation ends by itself: idle, too long, or its client went away.

Every realtime session runs a `Watchdog`: nobody speaking or typing for the idle timeout
ends the conversation with reason `timeout`, reaching the maximum duration with
`max_duration`, and a conversation ended elsewhere (the REST API) closes the session. When the client
disconnects, the conversation waits the grace period for a session to resume it
(`conversation_id=`); a session that does takes it over (the Redis key below names it),
otherwise it ends with reason `disconnected` (with `shutdown` at once when the server
stops: uvicorn closes every WebSocket first, then `end_waiting_conversations` runs in the
app's shutdown). Every end goes through the conversations
service, which emits `conversation.ended` (and so runs the analysis).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from vocalis.agents.runtime import AgentRuntime
from vocalis.agents.schemas import AgentConfig
from vocalis.conversations import service as conversations
from vocalis.conversations import store
from vocalis.core.backends import Backends
from vocalis.core.ids import new_id
from vocalis.core.redis_keys import declare
from vocalis.realtime.protocol import (
    InputAudioBufferCommitted,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
    InputAudioBufferTimeoutTriggered,
    ResponseCreated,
    ResponseDone,
    ResponseOutputAudioDelta,
    ServerEvent,
    ServerVad,
)
from vocalis.settings import Settings

if TYPE_CHECKING:
    from vocalis.realtime.session import RealtimeSession

log = structlog.get_logger(__name__)

ATTACHED_SESSION = declare(
    "realtime_attached_session",
    "vocalis:rt:attached:{conversation_id}",
    "Id of the realtime session attached to a conversation: a disconnected session ends "
    "its conversation after the grace period only if no other session took it over.",
    "The conversation's maximum duration plus the grace period.",
)
STATUS_POLL_S = 5.0  # how often a session checks whether its conversation ended elsewhere
WATCH_TICK_S = 0.25
SILENCE_INPUT = "(The user has said nothing for a while.)"
# Server events that show the conversation is alive (for the idle timeout).
_ACTIVITY = (InputAudioBufferSpeechStarted, ResponseCreated, ResponseDone, ResponseOutputAudioDelta)
# Grace timers, kept referenced until they finish, with the event that ends them early.
_GRACE_TASKS: dict[asyncio.Task[None], asyncio.Event] = {}


@dataclass(frozen=True)
class Limits:
    """The idle timeout, maximum duration and disconnect grace of one conversation."""

    idle_timeout_s: float
    max_duration_s: float
    grace_s: float

    @classmethod
    def of(cls, settings: Settings, config: AgentConfig) -> Limits:
        """The deployment's limits with the agent's overrides."""
        limits = config.limits
        return cls(
            idle_timeout_s=float(limits.idle_timeout_s or settings.realtime_idle_timeout_s),
            max_duration_s=float(limits.max_duration_s or settings.realtime_max_duration_s),
            grace_s=float(settings.realtime_disconnect_grace_s),
        )


def seconds_left(conversation: dict[str, object], max_duration_s: float) -> float:
    """Seconds until the conversation reaches its maximum duration."""
    started = store.parse_iso(str(conversation.get("created_at") or ""))
    if started is None:
        return max_duration_s
    elapsed = time.time() - started.timestamp()
    return max_duration_s - elapsed


class IdleClock:
    """When something last happened in the session (speech, text, a reply)."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self) -> None:
        """Something happened now."""
        self.last = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since something last happened."""
        return time.monotonic() - self.last


async def attach(backends: Backends, conversation_id: str, session_id: str, limits: Limits) -> None:
    """Mark this session as the one talking in the conversation."""
    ttl = int(limits.max_duration_s + limits.grace_s) + 60
    key = ATTACHED_SESSION.format(conversation_id=conversation_id)
    await backends.redis.set(key, session_id, ex=ttl)


async def _attached(backends: Backends, conversation_id: str) -> str | None:
    value = await backends.redis.get(ATTACHED_SESSION.format(conversation_id=conversation_id))
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def end(
    backends: Backends, runtime: AgentRuntime, *, org_id: str, conversation_id: str, reason: str
) -> None:
    """End the conversation (a no-op when it already ended)."""
    await conversations.end_conversation(
        backends=backends,
        runtime=runtime,
        org_id=org_id,
        conversation_id=conversation_id,
        reason=reason,
    )


async def _end_unless_resumed(
    backends: Backends,
    runtime: AgentRuntime,
    *,
    org_id: str,
    conversation_id: str,
    session_id: str,
    grace_s: float,
    wake: asyncio.Event,
) -> None:
    reason = "disconnected"
    try:
        await asyncio.wait_for(wake.wait(), grace_s)
        reason = "shutdown"  # the server stops: nobody is left to end it after the grace
    except TimeoutError:
        pass
    try:
        if await _attached(backends, conversation_id) not in (session_id, None):
            return  # another session resumed the conversation: it is that session's now
        await end(backends, runtime, org_id=org_id, conversation_id=conversation_id, reason=reason)
        log.info("realtime_disconnected_conversation_ended", conversation_id=conversation_id)
    except Exception:
        log.exception("realtime_disconnect_end_failed", conversation_id=conversation_id)


def end_after_grace(
    backends: Backends,
    runtime: AgentRuntime,
    *,
    org_id: str,
    conversation_id: str,
    session_id: str,
    grace_s: float,
) -> asyncio.Task[None]:
    """End the conversation `grace_s` from now unless a session resumes it meanwhile."""
    wake = asyncio.Event()
    task = asyncio.create_task(
        _end_unless_resumed(
            backends,
            runtime,
            org_id=org_id,
            conversation_id=conversation_id,
            session_id=session_id,
            grace_s=grace_s,
            wake=wake,
        )
    )
    _GRACE_TASKS[task] = wake
    task.add_done_callback(lambda done: _GRACE_TASKS.pop(done, None))
    return task


async def end_waiting_conversations() -> int:
    """The server is stopping: end now, with reason `shutdown`, every conversation whose
    client went away (uvicorn has closed every WebSocket with 1012 by then), instead of
    losing their grace timers with the process. Returns how many were waiting."""
    loop = asyncio.get_running_loop()
    waiting = [(t, w) for t, w in _GRACE_TASKS.items() if t.get_loop() is loop and not t.done()]
    for _, wake in waiting:
        wake.set()
    await asyncio.gather(*(task for task, _ in waiting), return_exceptions=True)
    if waiting:
        log.info("realtime_conversations_ended_on_shutdown", count=len(waiting))
    return len(waiting)


class Watchdog:
    """Watches one session: idling or running too long ends the conversation; a conversation
    ended elsewhere closes the session; GA `idle_timeout_ms` prompts a silent user."""

    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.clock = IdleClock()
        self.prompt_at: float | None = None  # when `idle_timeout_ms` runs out
        self.input_audio_ms = 0  # where the caller's audio is (from `speech_stopped`)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin watching."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop watching (an end in progress is let finish)."""
        if self._task is None:
            return
        if self.session.ended_reason is None:
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def observe(self, event: ServerEvent) -> None:
        """Take note of a server event: activity, speech, the end of a reply."""
        if isinstance(event, _ACTIVITY):
            self.clock.touch()
        if isinstance(event, InputAudioBufferSpeechStarted | ResponseCreated):
            self.prompt_at = None
        elif isinstance(event, InputAudioBufferSpeechStopped):
            self.input_audio_ms = event.audio_end_ms
        elif isinstance(event, ResponseDone):
            self._arm_prompt()

    async def _run(self) -> None:
        session = self.session
        limits = session.limits
        deadline = time.monotonic() + seconds_left(session.conversation, limits.max_duration_s)
        next_poll = time.monotonic() + STATUS_POLL_S
        while session.ended_reason is None:
            await asyncio.sleep(WATCH_TICK_S)
            now = time.monotonic()
            try:
                if now >= deadline:
                    await session.end("max_duration")
                elif self.clock.idle_for() >= limits.idle_timeout_s and not session.responding():
                    await session.end("timeout")
                elif self.prompt_at is not None and now >= self.prompt_at:
                    await self._prompt_silent_user()
                elif now >= next_poll:
                    next_poll = now + STATUS_POLL_S
                    await self._check_ended_elsewhere()
            except Exception:  # a backend hiccup must not stop the watch
                log.exception("realtime_watchdog_failed")

    async def _check_ended_elsewhere(self) -> None:
        session = self.session
        doc = await conversations.get_conversation(
            session.backends, org_id=session.org_id, conversation_id=session.conversation_id
        )
        if doc["status"] != "active":
            await session.ended_elsewhere(doc)

    def _idle_timeout_ms(self) -> int | None:
        session = self.session.session
        detection = session.audio.input.turn_detection
        if session.transcribes_only or not isinstance(detection, ServerVad):
            return None
        return detection.idle_timeout_ms

    def _arm_prompt(self) -> None:
        """OpenAI counts from when the reply's audio has finished playing; our audio goes out
        at playback pace and `response.done` follows its end, so that moment is now."""
        timeout_ms = self._idle_timeout_ms()
        self.prompt_at = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000.0

    async def _prompt_silent_user(self) -> None:
        """Nobody spoke after the reply: say so, and let the agent prompt the user."""
        self.prompt_at = None
        session = self.session
        item_id = new_id("msg")
        await session.sender.send(
            InputAudioBufferTimeoutTriggered(
                audio_start_ms=self.input_audio_ms,
                audio_end_ms=self.input_audio_ms + int(self._idle_timeout_ms() or 0),
                item_id=item_id,
            )
        )
        await session.sender.send(
            InputAudioBufferCommitted(previous_item_id=session.last_item_id, item_id=item_id)
        )
        session.last_item_id = item_id
        session.pending.append((item_id, SILENCE_INPUT))
        await session.dispatch(json.dumps({"type": "response.create"}))
