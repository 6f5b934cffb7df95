"""Phone calls end to end, the test playing the carrier (see tests/telephony/carrier.py):
signed voice webhooks, media streams at real-time pace, marks, clear, DTMF, transfers,
hang-ups and outbound calls through a local stand-in of the carriers' REST APIs."""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from tests.telephony.carrier import (
    CALL_SID,
    ULAW,
    inbound_call,
    media_stream,
    post_telnyx_webhook,
    post_twilio_webhook,
    stream_of_twiml,
    telnyx_event,
    twilio_form,
)
from tests.telephony.conftest import (
    CALLER,
    TELNYX_NUMBER,
    TRANSFER_DESTINATION,
    TWILIO_NUMBER,
    PhoneServer,
)
from tests.voice.helpers import loudness, silence_in, speech
from vocalis.adapters.espeak_tts import EspeakTTS
from vocalis.adapters.piper_tts import PiperTTS
from vocalis.conversations import analysis
from vocalis.core import audio
from vocalis.events.models import OutboxEvent
from vocalis.ports.tts import TextToSpeech
from vocalis.voice.wer import word_error_rate

# Phone-band (μ-law 8 kHz) transcription: the latency issue has not set its WER target yet,
# so the test states the measured WER (printed) and holds it to a sanity bound (a broken
# media path scores near 1.0). With tiny.en, 8 kHz costs words that 16 kHz keeps ("When is
# the support line open?" is heard "When did the fourth line open?"), so the questions are
# ones whose facts survive the phone band. Measured on them: 0.18-0.29 (2026-12-03).
PHONE_MAX_WER = 0.15  # the phone-band target of the latency issue (Whisper base on calls)
PHONE_QUESTIONS = {
    "Can I pay with PayPal?": "Visa, Mastercard and PayPal",
    "How long does shipping to Canada take?": "five to seven business days",
    "What is your refund policy?": "thirty days",
}
NUMBERS = {"twilio": TWILIO_NUMBER, "telnyx": TELNYX_NUMBER}


async def phone_conversation(server: PhoneServer, *, ended: bool = True) -> dict[str, Any]:
    """The organisation's one phone conversation, with its transcript (once it ended)."""
    async with server.live.client() as http:
        deadline = time.monotonic() + 30
        while True:
            listed = (await http.get("/v1/conversations", params={"channel": "phone"})).json()
            if listed["data"] and (not ended or listed["data"][0]["status"] == "ended"):
                break
            assert time.monotonic() < deadline, listed
            await asyncio.sleep(0.2)
        assert len(listed["data"]) == 1
        detail = await http.get(f"/v1/conversations/{listed['data'][0]['id']}")
        conversation: dict[str, Any] = detail.json()
        return conversation


async def transcript(server: PhoneServer) -> list[tuple[str, str]]:
    """The phone conversation's messages so far (to explain a failure)."""
    conversation = await phone_conversation(server, ended=False)
    return [(m["role"], m["content"]) for m in conversation["messages"]]


@pytest.fixture(scope="module")
def caller_voice() -> Iterator[PiperTTS]:
    """A natural caller voice (Piper's `joe`, test-only), not the agent's (hibari)."""
    voice = PiperTTS()
    yield voice
    voice.close()


async def ask(microphone: Any, espeak: TextToSpeech, text: str) -> None:
    """Say `text` into the call, then pause as a caller does."""
    microphone.say(await speech(espeak, text, ULAW) + silence_in(ULAW, 0.8))


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
async def test_a_phone_call_is_answered_aloud_with_a_correct_transcript(
    phone_server: PhoneServer, caller_voice: PiperTTS, provider: str
) -> None:
    async with inbound_call(phone_server, provider) as (stream, microphone):
        for number, question in enumerate(PHONE_QUESTIONS, start=1):
            await ask(microphone, caller_voice, question)
            await stream.answered(number)
        await stream.hang_up()
        await asyncio.wait_for(stream.closed.wait(), 30)
    conversation = await phone_conversation(phone_server)
    assert conversation["channel"] == "phone"
    assert conversation["ended_reason"] == "user_ended"
    assert conversation["metadata"]["from"] == CALLER
    assert conversation["metadata"]["to"] == NUMBERS[provider]
    call = conversation["call"]
    assert call["provider"] == provider and call["direction"] == "inbound"
    assert call["provider_call_id"] == stream.call_id
    assert call["hangup_side"] == "caller" and call["duration_s"] > 3

    messages = conversation["messages"]
    heard = [m["content"] for m in messages if m["role"] == "user"]
    answers = [m for m in messages if m["role"] == "assistant"]
    wer = word_error_rate(list(PHONE_QUESTIONS), heard)
    print(f"\nphone-band ({provider}, μ-law 8 kHz) WER: {wer:.3f} on {heard}")
    assert wer <= PHONE_MAX_WER, heard
    assert [a["id"] for a in answers] == stream.done, "every answer was marked as played"
    for answer, fact in zip(answers, PHONE_QUESTIONS.values(), strict=True):
        assert fact.lower() in answer["content"].lower()
        assert answer["citations"], "the answer cites the knowledge base"
        played = stream.answer_audio(answer["id"])
        assert 1.0 < audio.duration_seconds(played, 8000) < 20.0
        assert loudness(played) > 500, "the caller heard speech"

    ended = phone_server.live.events.named("conversation.ended")[-1]
    assert ended["call"]["from"] == CALLER and ended["call"]["hangup_side"] == "caller"


async def test_the_call_is_recorded_in_stereo_caller_left_agent_right(
    phone_server: PhoneServer, espeak: EspeakTTS
) -> None:
    async with inbound_call(phone_server, "twilio") as (stream, microphone):
        await ask(microphone, espeak, "What is your refund policy?")
        await stream.answered(1)
        await stream.hang_up()
        await asyncio.wait_for(stream.closed.wait(), 30)
    conversation = await phone_conversation(phone_server)
    async with phone_server.live.client() as http:
        response = await http.get(f"/v1/conversations/{conversation['id']}/call-recording")
    assert response.status_code == 200
    with wave.open(io.BytesIO(response.content)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        frames = wav.readframes(wav.getnframes())
    stereo = audio.pcm16_samples(frames).reshape(-1, 2)
    caller, agent = stereo[:, 0].tobytes(), stereo[:, 1].tobytes()
    assert loudness(caller) > 100 and loudness(agent) > 100
    assert conversation["call"]["recording"]["channels"] == {"left": "caller", "right": "agent"}


@pytest.mark.parametrize("sign", ["wrong", "missing"])
async def test_a_twilio_webhook_without_a_valid_signature_gets_403_and_no_conversation(
    phone_server: PhoneServer, sign: str
) -> None:
    answer = await post_twilio_webhook(
        phone_server, twilio_form(), auth_token="not-the-auth-token", sign=sign == "wrong"
    )
    assert answer.status_code == 403
    assert answer.json()["code"] == "telephony_signature_invalid"
    async with phone_server.live.client() as http:
        listed = (await http.get("/v1/conversations")).json()
    assert listed["data"] == []


async def test_a_telnyx_webhook_signed_with_another_key_gets_403_and_no_answer(
    phone_server: PhoneServer,
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    answer = await post_telnyx_webhook(
        phone_server, telnyx_event(), key=Ed25519PrivateKey.generate()
    )
    assert answer.status_code == 403
    assert phone_server.cloud.requests == []


async def test_a_stream_token_opens_one_stream_only(phone_server: PhoneServer) -> None:
    answer = await post_twilio_webhook(phone_server, twilio_form())
    url, parameters = stream_of_twiml(answer.text)
    token = parameters["stream_token"]
    async with media_stream(url, token, provider="twilio", call_id=CALL_SID) as (stream, _):
        await phone_conversation(phone_server, ended=False)  # the first one is on
        async with media_stream(url, token, provider="twilio", call_id=CALL_SID) as (again, _):
            await asyncio.wait_for(again.closed.wait(), 10)
        assert not again.received, "the replayed token got nothing"
        assert again.ws.close_code == 1008
        assert not stream.closed.is_set()


async def test_speaking_over_the_agent_clears_its_audio_and_keeps_only_what_was_played(
    phone_server: PhoneServer, espeak: EspeakTTS
) -> None:
    # A keypad press asks the question, so the (long) answer does not hang on phone-band STT.
    async with phone_server.live.client() as http:  # the whole answer, for comparison
        chat = await http.post(f"/v1/agents/{phone_server.agent_id}/conversations", json={})
        sent = await http.post(
            f"/v1/conversations/{chat.json()['id']}/messages", json={"content": "Keypad: 7#"}
        )
        full = sent.json()["content"]
    with capture_logs() as logs:
        item, heard_s = await barge_in(phone_server, espeak)
    conversation = await phone_conversation(phone_server)
    stored = next(m for m in conversation["messages"] if m["id"] == item)
    kept, whole = stored["content"].split(), full.split()
    print(f"\nbarge-in: the caller heard {heard_s:.1f} s of {item}; stored {stored['content']!r}")
    assert 0 < len(kept) < len(whole), stored["content"]
    assert kept == whole[: len(kept)], "what was kept is the start of the answer"
    assert stored["interrupted"]
    events = [e["event"] for e in logs]
    assert "phone_barge_in" in events
    assert "phone_truncate_failed" not in events, "kept by the carrier's marks"


async def barge_in(phone_server: PhoneServer, espeak: EspeakTTS) -> tuple[str, float]:
    """Ask by keypad, speak over the answer after 2 s of it; the reply and what was heard."""
    async with inbound_call(phone_server, "twilio") as (stream, microphone):
        await phone_conversation(phone_server, ended=False)
        for digit in "7#":
            await stream.press(digit)
        await stream.wait(
            lambda: sum(len(a) for a in stream.answers.values()) > 2.0 * 8000,
            what="2 s of the answer played",
        )
        microphone.say(await speech(espeak, "Sorry, stop there please.", ULAW))
        await stream.wait(lambda: stream.clears, timeout=30, what="clear")
        item = next(iter(stream.answers))
        await asyncio.sleep(3)  # the truncation is stored
        await stream.hang_up()
        await asyncio.wait_for(stream.closed.wait(), 30)
    return item, audio.duration_seconds(stream.answer_audio(item), 8000)


async def test_keypad_digits_reach_the_agent_as_text_and_as_events(
    phone_server: PhoneServer,
) -> None:
    async with inbound_call(phone_server, "telnyx") as (stream, _):
        await phone_conversation(phone_server, ended=False)
        for digit in "42#":
            await stream.press(digit)
        await stream.answered(1)
        await stream.hang_up()
        await asyncio.wait_for(stream.closed.wait(), 30)
    conversation = await phone_conversation(phone_server)
    user = [m["content"] for m in conversation["messages"] if m["role"] == "user"]
    assert user == ["Keypad: 42#"]
    events = phone_server.live.events.named("vocalis.dtmf")
    assert [e["digit"] for e in events] == ["4", "2", "#"]
    assert {e["conversation_id"] for e in events} == {conversation["id"]}


async def test_asking_for_a_person_transfers_the_call_through_the_carrier(
    phone_server: PhoneServer, espeak: EspeakTTS
) -> None:
    async with inbound_call(phone_server, "twilio") as (stream, microphone):
        await ask(microphone, espeak, "Please transfer me to a real person.")
        try:
            await stream.wait(stream.closed.is_set, 60, "transfer")  # we leave the stream
        except TimeoutError as exc:
            pytest.fail(f"no transfer; heard {await transcript(phone_server)}; {exc}")
    update = await phone_server.cloud.wait_for(f"/Calls/{CALL_SID}.json")
    assert "<Dial><Number>" + TRANSFER_DESTINATION + "</Number></Dial>" in update.form["Twiml"]
    assert stream.done, "the handoff message was played before the transfer"
    conversation = await phone_conversation(phone_server)
    assert conversation["ended_reason"] == "transferred"
    assert conversation["call"]["hangup_side"] == "agent"


async def test_saying_goodbye_hangs_up_after_the_goodbye_was_played(
    phone_server: PhoneServer, espeak: EspeakTTS
) -> None:
    async with inbound_call(phone_server, "telnyx") as (stream, microphone):
        await ask(microphone, espeak, "Goodbye.")
        await asyncio.wait_for(stream.closed.wait(), 60)
    hang_up = await phone_server.cloud.wait_for("/actions/hangup")
    assert stream.done
    assert hang_up.path == f"/v2/calls/{stream.call_id}/actions/hangup"
    conversation = await phone_conversation(phone_server)
    assert conversation["ended_reason"] == "agent_ended"
    assert conversation["call"]["hangup_side"] == "agent"
    ended = phone_server.live.events.named("conversation.ended")[-1]
    assert ended["call"]["hangup_side"] == "agent" and ended["call"]["to"] == TELNYX_NUMBER
    backends = phone_server.live.backends  # the analysis worker's task body, run here
    org_id = phone_server.live.tenant.org_id
    await analysis.analyze_conversation(backends, org_id=org_id, conversation_id=conversation["id"])
    async with backends.database.session() as session:
        analyzed = await session.scalar(
            select(OutboxEvent).where(OutboxEvent.type == "conversation.analyzed")
        )
    assert analyzed is not None
    call = analyzed.data["call"]
    assert (call["from"], call["to"], call["provider_call_id"]) == (
        CALLER,
        TELNYX_NUMBER,
        stream.call_id,
    )
    assert call["duration_s"] > 0 and call["hangup_side"] == "agent"


async def test_an_outbound_call_is_placed_through_the_carrier_and_converses(
    phone_server: PhoneServer, espeak: EspeakTTS
) -> None:
    async with phone_server.live.client() as http:
        placed = await http.post(
            "/v1/calls",
            json={
                "phone_number_id": phone_server.numbers["twilio"]["id"],
                "to": CALLER,
                "metadata": {"campaign": "renewals"},
            },
        )
    assert placed.status_code == 202, placed.text
    conversation_id = placed.json()["conversation_id"]
    dial = await phone_server.cloud.wait_for("/Calls.json")
    assert dial.form["To"] == CALLER and dial.form["From"] == TWILIO_NUMBER
    url, parameters = stream_of_twiml(dial.form["Twiml"])
    call_id = placed.json()["provider_call_id"]
    async with media_stream(
        url, parameters["stream_token"], provider="twilio", call_id=call_id
    ) as (stream, microphone):
        await ask(microphone, espeak, "When is the support line open?")
        await stream.answered(1)
        await stream.hang_up()
        await asyncio.wait_for(stream.closed.wait(), 30)
    conversation = await phone_conversation(phone_server)
    assert conversation["id"] == conversation_id
    assert conversation["metadata"]["campaign"] == "renewals"
    assert conversation["call"]["direction"] == "outbound"
    assert conversation["call"]["to"] == CALLER
    answer = [m for m in conversation["messages"] if m["role"] == "assistant"][-1]
    assert "monday to friday" in answer["content"].lower()


async def test_an_outbound_telnyx_call_asks_for_a_bidirectional_stream(
    phone_server: PhoneServer,
) -> None:
    async with phone_server.live.client() as http:
        placed = await http.post(
            "/v1/calls",
            json={"phone_number_id": phone_server.numbers["telnyx"]["id"], "to": CALLER},
        )
    assert placed.status_code == 202, placed.text
    dial = await phone_server.cloud.wait_for("/v2/calls")
    assert dial.json["to"] == CALLER and dial.json["from"] == TELNYX_NUMBER
    assert dial.json["stream_bidirectional_mode"] == "rtp"
    assert dial.headers["authorization"] == "Bearer KEY0123"
    assert placed.json()["provider_call_id"] == "v3:outbound-call"


async def test_a_call_is_hung_up_at_the_agents_maximum_duration(
    phone_server: PhoneServer,
) -> None:
    async with phone_server.live.client() as http:
        patched = await http.patch(
            f"/v1/agents/{phone_server.agent_id}", json={"limits": {"max_duration_s": 2}}
        )
        assert patched.status_code == 200, patched.text
    async with inbound_call(phone_server, "twilio") as (stream, _):
        await asyncio.wait_for(stream.closed.wait(), 30)
    hang_up = await phone_server.cloud.wait_for(f"/Calls/{CALL_SID}.json")
    assert parse_qs(f"Status={hang_up.form['Status']}")["Status"] == ["completed"]
    conversation = await phone_conversation(phone_server)
    assert conversation["ended_reason"] == "max_duration"
    assert conversation["call"]["hangup_side"] == "system"


async def test_the_agents_first_message_greets_the_caller(phone_server: PhoneServer) -> None:
    greeting = "Thank you for calling the store. How can I help?"
    async with phone_server.live.client() as http:
        patched = await http.patch(
            f"/v1/agents/{phone_server.agent_id}", json={"first_message": greeting}
        )
        assert patched.status_code == 200, patched.text
    async with inbound_call(phone_server, "twilio") as (stream, _):
        await stream.answered(1, timeout=30)
        await stream.hang_up()
        await asyncio.wait_for(stream.closed.wait(), 30)
    conversation = await phone_conversation(phone_server)
    first = conversation["messages"][0]
    assert (first["role"], first["content"]) == ("assistant", greeting)
    assert stream.done == [first["id"]]
    heard = stream.answer_audio(first["id"])
    assert audio.duration_seconds(heard, 8000) > 1.5 and loudness(heard) > 500
