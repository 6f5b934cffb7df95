"""Conversation items through the official SDK client: retrieve, delete, truncate; the idle
prompt (`idle_timeout_ms`); `rate_limits.updated`."""

from __future__ import annotations

import base64

from tests.agents_api.harness import LiveServer
from tests.realtime.client import (
    TEXT_ONLY,
    answer,
    connect,
    create_agent,
    recv,
    say,
    sdk,
    update,
    user_text,
)
from tests.voice.helpers import WARRANTY, VoiceServer
from vocalis.core.ratelimit import RateLimiter
from vocalis.orgs import service as orgs


async def test_an_item_is_retrieved_as_the_conversation_holds_it(live_server: LiveServer) -> None:
    agent_id = await create_agent(live_server)
    async with sdk(live_server).realtime.connect(model=agent_id) as connection:
        await connection.recv()  # session.created
        await connection.conversation.item.create(item=user_text("Where is my parcel?"))
        added = await connection.recv()
        assert added.type == "conversation.item.added"
        await connection.recv()  # conversation.item.done
        await connection.conversation.item.retrieve(item_id=added.item.id)  # type: ignore[union-attr]
        retrieved = await connection.recv()
        await connection.conversation.item.retrieve(item_id="msg_unknown")
        missing = await connection.recv()
    assert retrieved.type == "conversation.item.retrieved"
    assert retrieved.item.id == added.item.id  # type: ignore[union-attr]
    assert retrieved.item.content[0].text == "Where is my parcel?"  # type: ignore[union-attr]
    assert missing.type == "error"
    assert missing.error.code == "item_retrieve_invalid_item_id"  # OpenAI's code


async def test_a_reply_stored_before_the_session_is_retrieved_after_resuming(
    live_server: LiveServer,
) -> None:
    agent_id = await create_agent(live_server)
    async with connect(live_server, f"model={agent_id}") as ws:
        conversation_id = (await recv(ws))["vocalis"]["conversation_id"]
        await update(ws, TEXT_ONLY)
        await say(ws, "Hello")
        reply_id = (await answer(ws))[-1]["response"]["output"][0]["id"]
    async with sdk(live_server).realtime.connect(
        model=agent_id, extra_query={"conversation_id": conversation_id}
    ) as connection:
        await connection.recv()  # session.created
        await connection.conversation.item.retrieve(item_id=reply_id)
        retrieved = await connection.recv()
    assert retrieved.type == "conversation.item.retrieved"
    assert retrieved.item.role == "assistant"  # type: ignore[union-attr]


async def test_unanswered_input_is_deleted_and_answered_input_stays(
    live_server: LiveServer,
) -> None:
    agent_id = await create_agent(live_server)
    async with sdk(live_server).realtime.connect(model=agent_id) as connection:
        await connection.recv()  # session.created
        await connection.session.update(session=TEXT_ONLY)  # type: ignore[arg-type]
        await connection.recv()  # session.updated
        await connection.conversation.item.create(item=user_text("Cancel my order"))
        withdrawn = await connection.recv()
        await connection.recv()  # conversation.item.done
        await connection.conversation.item.delete(item_id=withdrawn.item.id)  # type: ignore[union-attr]
        deleted = await connection.recv()
        await connection.response.create()
        nothing = await connection.recv()
        await connection.conversation.item.create(item=user_text("Hello"))
        kept = await connection.recv()
        await connection.recv()  # conversation.item.done
        await connection.response.create()
        async for event in connection:
            if event.type == "response.done":
                break
        await connection.conversation.item.delete(item_id=kept.item.id)  # type: ignore[union-attr]
        refused = await connection.recv()
        while refused.type == "rate_limits.updated":
            refused = await connection.recv()
    assert deleted.type == "conversation.item.deleted"
    assert deleted.item_id == withdrawn.item.id  # type: ignore[union-attr]
    assert nothing.type == "error" and nothing.error.code == "no_input"
    assert refused.type == "error" and refused.error.code == "item_not_deletable"


async def test_truncating_a_spoken_reply_keeps_only_what_was_heard(
    voice_server: VoiceServer,
) -> None:
    live = voice_server.live
    async with sdk(live).realtime.connect(model=voice_server.agent_id) as connection:
        created = await connection.recv()
        conversation_id = (created.model_extra or {})["vocalis"]["conversation_id"]
        await connection.conversation.item.create(item=user_text("What is your refund policy?"))
        audio: list[str] = []
        await connection.response.create()
        async for event in connection:
            if event.type == "response.output_audio.delta":
                audio.append(event.delta)
            elif event.type == "response.done":
                done = event
                break
        [item] = done.response.output or []
        spoken = item.content[0].transcript or ""  # type: ignore[union-attr]
        played_ms = len(b"".join(base64.b64decode(a) for a in audio)) / 48  # PCM16 at 24 kHz
        await connection.conversation.item.truncate(
            item_id=item.id or "", content_index=0, audio_end_ms=int(played_ms / 2)
        )
        truncated = await connection.recv()
        while truncated.type == "rate_limits.updated":
            truncated = await connection.recv()
        await connection.conversation.item.truncate(
            item_id=item.id or "", content_index=1, audio_end_ms=int(played_ms / 4)
        )
        no_such_part = await connection.recv()
    assert truncated.type == "conversation.item.truncated", truncated
    assert truncated.audio_end_ms == int(played_ms / 2)
    assert no_such_part.type == "error" and no_such_part.error.code == "item_not_truncatable"
    async with live.client() as http:
        transcript = (await http.get(f"/v1/conversations/{conversation_id}")).json()
    kept = next(m for m in transcript["messages"] if m["id"] == item.id)
    heard = kept["content"].split()
    assert 0 < len(heard) < len(spoken.split())
    assert spoken.split()[: len(heard)] == heard


async def test_a_silent_user_is_prompted_after_idle_timeout_ms(live_server: LiveServer) -> None:
    agent_id = await create_agent(live_server)
    detection = {"type": "server_vad", "idle_timeout_ms": 1000}
    async with sdk(live_server).realtime.connect(model=agent_id) as connection:
        await connection.recv()  # session.created
        update = {**TEXT_ONLY, "audio": {"input": {"turn_detection": detection}}}
        await connection.session.update(session=update)  # type: ignore[arg-type]
        await connection.conversation.item.create(item=user_text("Hello"))
        await connection.response.create()
        events = []
        responses = 0
        async for event in connection:
            events.append(event)
            responses += event.type == "response.done"
            if responses == 2:
                break
    types = [e.type for e in events]
    prompted = types.index("input_audio_buffer.timeout_triggered")
    created = [i for i, kind in enumerate(types) if kind == "response.created"]
    assert (
        types.index("response.done") < prompted < created[1]
    )  # after the reply, before the prompt
    triggered = events[prompted]
    committed = next(e for e in events if e.type == "input_audio_buffer.committed")
    assert committed.item_id == triggered.item_id  # type: ignore[union-attr]
    assert triggered.audio_end_ms - triggered.audio_start_ms == 1000  # type: ignore[union-attr]
    assert events[-1].response.status == "completed"  # type: ignore[union-attr]


async def test_each_response_is_followed_by_the_keys_rate_limits(live_server: LiveServer) -> None:
    agent_id = await create_agent(live_server)
    settings = live_server.backends.settings
    async with live_server.backends.database.session() as session:
        key = await orgs.find_active_key(session=session, plaintext=live_server.tenant.key)
    assert key is not None
    limiter = RateLimiter(
        live_server.backends.redis,
        per_minute=settings.rate_limit_per_minute,
        burst=settings.rate_limit_burst,
    )
    await limiter.hit(key.id, cost=90)  # the key has spent most of its budget
    async with sdk(live_server).realtime.connect(model=agent_id) as connection:
        await connection.recv()  # session.created
        await connection.session.update(session=TEXT_ONLY)  # type: ignore[arg-type]
        await connection.recv()  # session.updated
        await connection.conversation.item.create(item=user_text("Hello"))
        await connection.response.create()
        async for event in connection:
            if event.type == "response.done":
                break
        limits = await connection.recv()
    assert limits.type == "rate_limits.updated"
    [requests] = limits.rate_limits
    assert requests.name == "requests"
    assert requests.limit == settings.rate_limit_burst
    assert requests.remaining is not None and requests.remaining < 70
    assert requests.reset_seconds is not None and requests.reset_seconds > 0


async def test_truncating_a_reply_still_playing_stops_it_and_keeps_what_was_heard(
    voice_server: VoiceServer,
) -> None:
    live = voice_server.live
    async with sdk(live).realtime.connect(model=voice_server.agent_id) as connection:
        created = await connection.recv()
        conversation_id = (created.model_extra or {})["vocalis"]["conversation_id"]
        await connection.conversation.item.create(item=user_text("What does the warranty cover?"))
        await connection.response.create()
        audio = bytearray()
        async for event in connection:
            if event.type == "response.output_audio.delta":
                audio += base64.b64decode(event.delta)
                item_id = event.item_id
                if len(audio) >= 48 * 2500:  # two and a half seconds played (PCM16, 24 kHz)
                    break
        await connection.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=len(audio) // 48
        )
        seen = []
        async for event in connection:
            seen.append(event)
            if event.type == "conversation.item.truncated":
                break
    done = next(e for e in seen if e.type == "response.done")
    assert done.response.status == "cancelled"  # the rest of the reply was never spoken
    async with live.client() as http:
        transcript = (await http.get(f"/v1/conversations/{conversation_id}")).json()
    [kept] = [m for m in transcript["messages"] if m["id"] == item_id]
    assert 0 < len(kept["content"].split()) < len(WARRANTY.split())
