"""Talking to an agent in the browser: Chromium's fake microphone says a question
(synthesised with espeak-ng); the page shows its transcript, plays the agent's spoken answer
(the playback worklet counts the samples that reached the output) and the turn's latency
waterfall, in the playground and in the conversation's transcript."""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import expect

from tests.console.conftest import ConsolePage
from tests.console.harness import ANSWER, agent_with_knowledge


async def test_talk_to_an_agent_with_the_microphone(console: ConsolePage) -> None:
    agent_id = await asyncio.to_thread(agent_with_knowledge, console.server)
    page = console.page
    await console.sign_in()
    await page.goto(f"{console.server.base_url}/console#/playground/{agent_id}")
    await page.get_by_test_id("voice-start").click()
    await expect(page.get_by_test_id("voice-stop")).to_be_enabled()

    # The question, transcribed by the server's STT, shows as the user's turn.
    await expect(page.get_by_test_id("voice-transcript").first).to_contain_text(
        re.compile("refund", re.I), timeout=120_000
    )
    # The agent's answer: its transcript, and its audio played out of the page.
    await expect(page.get_by_test_id("voice-reply").first).to_contain_text(ANSWER, timeout=120_000)
    audio = page.get_by_test_id("voice-audio")
    await expect(audio).not_to_have_attribute("data-samples", "0", timeout=60_000)
    await page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=voice-audio]').dataset.audible) > 24000",
        timeout=60_000,
    )
    peak = float(await audio.get_attribute("data-peak") or 0)
    assert peak > 0.05, f"the played answer is silent (peak {peak})"

    # The turn's latency waterfall: endpointing, STT, first token, first audio.
    waterfall = page.get_by_test_id("latency-waterfall").first
    await expect(waterfall).to_be_visible(timeout=60_000)
    for stage in ("endpointing", "stt", "first_token", "first_audio_byte"):
        await expect(waterfall.locator(f'[data-stage="{stage}"]')).to_have_count(1)
    await page.get_by_test_id("voice-stop").click()
    await expect(page.get_by_test_id("voice-start")).to_be_enabled()

    # The conversation, filtered to voice, shows the same waterfall under the answer.
    await page.get_by_role("link", name="Conversations").click()
    await page.get_by_label("Channel").select_option("voice")
    await page.get_by_role("link", name=re.compile("Voice assistant")).first.click()
    transcript = page.get_by_role("log", name="Transcript")
    await expect(transcript).to_contain_text(ANSWER)
    stored = transcript.get_by_test_id("latency-waterfall").first
    await expect(stored.locator('[data-stage="first_audio_byte"]')).to_have_count(1)
