"""A spoken conversation through the official `openai` SDK's realtime client."""

from __future__ import annotations

from tests.voice.helpers import (
    SPOKEN_QUESTIONS,
    VoiceServer,
    ask_spoken_questions,
    check_spoken_answers,
    openai_realtime_call,
)
from vocalis.adapters.espeak_tts import EspeakTTS


async def test_spoken_questions_get_accurate_transcripts_and_spoken_answers_from_the_knowledge_base(
    knowledge_voice_server: VoiceServer, espeak: EspeakTTS
) -> None:
    async with openai_realtime_call(knowledge_voice_server) as call:
        turns = await ask_spoken_questions(call, espeak)
    check_spoken_answers(turns, SPOKEN_QUESTIONS)
