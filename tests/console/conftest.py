"""The console in a real browser: Debian's Chromium driven by Playwright (Python), against
`vocalis run` on its embedded defaults (API, worker, embedded Redis, SQLite, offline speech
engines and the extractive responder) — the product as a new user starts it.

One server and one browser serve the whole session; each test gets a fresh browser context
and page, and fails on any JavaScript console error or uncaught exception on the page.
Chromium's fake microphone plays a WAV synthesised with espeak-ng (written here).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from tests.console.harness import (
    CHROMIUM,
    ConsoleServer,
    ServerFailed,
    chromium_args,
    synthesise_question,
    vocalis_run,
)


@pytest.fixture(scope="session")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """`vocalis run` (what `make run` starts), in a fresh data directory."""
    try:
        with vocalis_run(tmp_path_factory.mktemp("console")) as server:
            yield server
    except ServerFailed as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
async def spoken_question(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return await synthesise_question(tmp_path_factory.mktemp("audio") / "question.wav")


@pytest.fixture(scope="session")
async def browser(spoken_question: Path) -> AsyncIterator[Browser]:
    """Debian's Chromium (never a browser Playwright downloads), headless, with a fake
    microphone that says the synthesised question once."""
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 (a stat, once per session)
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-test-extras.sh")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=chromium_args(spoken_question)
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class ConsolePage:
    """A page of the console and what its JavaScript console reported."""

    page: Page
    server: ConsoleServer
    errors: list[str] = field(default_factory=list)
    # Errors a test provokes on purpose (a refused key, a blocked inline script) and says so.
    errors_expected: re.Pattern[str] | None = None

    def unexpected_errors(self) -> list[str]:
        expected = self.errors_expected
        return [e for e in self.errors if expected is None or not expected.search(e)]

    async def sign_in(self) -> None:
        await self.page.goto(f"{self.server.base_url}/console")
        await self.page.get_by_test_id("api-key-input").fill(self.server.key)
        await self.page.get_by_test_id("sign-in").click()
        await self.page.locator("#nav").wait_for(state="visible")


def _record(errors: list[str]) -> Callable[[ConsoleMessage], None]:
    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"console.error: {message.text} ({message.location})")

    return on_console


@pytest.fixture
async def console(browser: Browser, console_server: ConsoleServer) -> AsyncIterator[ConsolePage]:
    """A fresh context and page (laptop size); the test fails on any console error."""
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    await context.grant_permissions(["microphone"], origin=console_server.base_url)
    page = await context.new_page()
    page.set_default_timeout(60_000)
    opened = ConsolePage(page, console_server)
    page.on("console", _record(opened.errors))
    page.on("pageerror", lambda exc: opened.errors.append(f"uncaught: {exc}"))
    try:
        yield opened
    finally:
        await context.close()
    unexpected = opened.unexpected_errors()
    assert not unexpected, "JavaScript errors on the page:\n" + "\n".join(unexpected)
