#!/usr/bin/env python
"""Regenerate the console's screenshots (docs/screenshots/*.png, shown in docs section 10
and the README).

Starts `vocalis run` on its embedded defaults in a temporary directory, fills it the way a
new user would (a knowledge base with a document, an agent, a chat, a spoken conversation
through Chromium's fake microphone saying a question synthesised with espeak-ng) and
photographs every screen with Debian's Chromium (/usr/bin/chromium, driven
by Playwright from the test extra). Needs `make test`'s setup (scripts/install-test-extras.sh).

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.async_api import Page, async_playwright, expect  # noqa: E402
from tests.console.harness import (  # noqa: E402
    ANSWER,
    CHROMIUM,
    QUESTION,
    ConsoleServer,
    agent_with_knowledge,
    chromium_args,
    synthesise_question,
    vocalis_run,
)

expect.set_options(timeout=180_000)  # the first answer loads the embedding model
SCREENS = ("overview", "phone-numbers", "webhooks", "keys", "dead-letters", "flags")


async def shoot(server: ConsoleServer, wav: Path, out: Path) -> list[Path]:
    agent_id = await asyncio.to_thread(agent_with_knowledge, server, "Store assistant")
    with server.client() as http:
        kb_id = http.get("/v1/knowledge-bases").json()["data"][0]["id"]
    written: list[Path] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=chromium_args(wav)
        )
        context = await browser.new_context(
            viewport={"width": 1280, "height": 800}, device_scale_factor=1
        )
        await context.grant_permissions(["microphone"], origin=server.base_url)
        page = await context.new_page()
        page.set_default_timeout(120_000)

        async def snap(name: str, target: Page = page) -> None:
            await target.wait_for_load_state("networkidle")
            await target.wait_for_timeout(300)
            path = out / f"{name}.png"
            await target.screenshot(path=str(path))
            written.append(path)

        await page.goto(f"{server.base_url}/console")
        await snap("sign-in")
        await page.get_by_test_id("api-key-input").fill(server.key)
        await page.get_by_test_id("sign-in").click()
        await page.locator("#nav").wait_for()

        await page.goto(f"{server.base_url}/console#/playground/{agent_id}")
        await page.get_by_test_id("chat-input").fill(QUESTION)
        await page.get_by_test_id("chat-send").click()
        await expect(page.get_by_test_id("chat-reply").last).to_contain_text(ANSWER)
        await page.get_by_test_id("voice-start").click()
        await expect(page.get_by_test_id("voice-reply").first).to_contain_text(ANSWER)
        await page.get_by_test_id("latency-waterfall").first.wait_for()
        await page.wait_for_timeout(1500)
        await snap("playground")
        await page.get_by_test_id("voice-stop").click()

        await page.goto(f"{server.base_url}/console#/agents/{agent_id}")
        await page.get_by_test_id("agent-name").wait_for()
        await snap("agents")
        await page.goto(f"{server.base_url}/console#/knowledge/{kb_id}")
        await page.get_by_test_id("doc-status").first.wait_for()
        await snap("knowledge")
        with server.client() as http:
            voice = http.get("/v1/conversations", params={"channel": "voice"}).json()["data"][0]
        await page.goto(f"{server.base_url}/console#/conversations/{voice['id']}")
        await page.get_by_test_id("latency-waterfall").first.wait_for()
        await snap("conversations")
        for screen in SCREENS:
            await page.goto(f"{server.base_url}/console#/{screen}")
            await page.locator(f'[data-screen="{screen}"] h1').wait_for()
            await snap(screen)

        phone = await browser.new_context(
            viewport={"width": 390, "height": 844}, device_scale_factor=1
        )
        mobile = await phone.new_page()
        await mobile.goto(f"{server.base_url}/console")
        await mobile.get_by_test_id("api-key-input").fill(server.key)
        await mobile.get_by_test_id("sign-in").click()
        await mobile.locator("#nav").wait_for(timeout=120_000)
        await mobile.goto(f"{server.base_url}/console#/conversations/{voice['id']}")
        await mobile.get_by_test_id("latency-waterfall").first.wait_for()
        await snap("phone-conversation", mobile)
        await browser.close()
    return written


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vocalis-screens-") as tmp:
        wav = await synthesise_question(Path(tmp) / "question.wav")
        with vocalis_run(Path(tmp)) as server:
            for path in await shoot(server, wav, args.out):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    asyncio.run(main())
