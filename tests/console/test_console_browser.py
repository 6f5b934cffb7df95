"""A new user's first minutes in the console, in Chromium: sign in, create a knowledge base
and an agent, upload a document and watch it become ready, ask in the chat and get a cited
answer; the CSP forbids inline scripts and remote origins; the layout holds at 390 px."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from playwright.async_api import expect

from tests.console.conftest import ConsolePage
from tests.console.harness import ANSWER, POLICIES, QUESTION, ConsoleServer


async def test_sign_in_refuses_a_bad_key_then_accepts_the_real_one(console: ConsolePage) -> None:
    page = console.page
    await page.goto(f"{console.server.base_url}/console")
    await page.get_by_test_id("api-key-input").fill("vk_not-a-real-key")
    # A refused key is a 401 from the API: the browser logs that failed request itself.
    console.errors_expected = re.compile(r"401")
    await page.get_by_test_id("sign-in").click()
    await expect(page.get_by_role("status")).to_contain_text("Sign-in failed")
    await expect(page.locator("#nav")).to_be_hidden()
    # By keyboard alone: the key field, typed into, Enter submits.
    await page.get_by_test_id("api-key-input").fill("")
    await page.get_by_test_id("api-key-input").focus()
    await page.keyboard.type(console.server.key)
    await page.keyboard.press("Enter")
    await expect(page.locator("#nav")).to_be_visible()
    # The sign-in form is gone with the focus it held: the focus lands in the new content (the
    # agents screen puts it in its first field), and the keyboard carries on from there: the
    # skip link (the page's first stop) takes it to the content, and back from the content is
    # the navigation.
    await expect(page.locator("#org")).to_have_text("Development")
    await expect(page.get_by_test_id("agent-name")).to_be_visible()
    await expect(page.locator("#view:focus-within")).to_have_count(1)
    await page.get_by_role("link", name="Skip to content").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("main")).to_be_focused()
    await page.keyboard.press("Shift+Tab")
    await expect(page.get_by_role("link", name="Flags")).to_be_focused()
    await expect(page).to_have_url(re.compile(r"#/agents$"))


async def test_build_an_agent_with_knowledge_and_chat_with_it(
    console: ConsolePage, tmp_path: Path
) -> None:
    page = console.page
    await console.sign_in()

    # A knowledge base, and a document uploaded into it; its status updates live to ready.
    await page.get_by_role("link", name="Knowledge").click()
    await page.get_by_label("New knowledge base").fill("Store policies")
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("heading", name="Store policies")).to_be_visible()
    document = tmp_path / "policies.md"
    document.write_text(POLICIES)
    await page.get_by_test_id("kb-upload").set_input_files(document)
    status = page.get_by_test_id("doc-status").filter(
        has_text=re.compile("ready|queued|processing|failed")
    )
    await expect(status).to_have_count(1)
    await expect(page.get_by_test_id("doc-status")).to_have_attribute(
        "data-status", "ready", timeout=120_000
    )

    # An agent answering from it.
    await page.get_by_role("link", name="Agents").click()
    await page.get_by_test_id("new-agent").click()
    await page.get_by_test_id("agent-name").fill("Store assistant")
    await page.get_by_test_id("agent-instructions").fill("Answer from the store's policies.")
    await page.get_by_label("Store policies").check()
    await page.get_by_test_id("agent-save").click()
    await expect(page.get_by_role("heading", name="Store assistant · v1")).to_be_visible()

    # Edit a setting: a new version, and its diff against the first.
    await page.get_by_label("First message").fill("Hello! Ask me about returns.")
    await page.get_by_test_id("agent-save").click()
    await expect(page.get_by_role("heading", name="Store assistant · v2")).to_be_visible()
    await (
        page.get_by_role("listitem")
        .filter(has_text="v1 ·")
        .get_by_role("button", name="Diff")
        .click()
    )
    await expect(page.locator(".diff .add")).to_contain_text("Hello! Ask me about returns.")

    # The playground: a streamed answer that cites the document.
    await page.get_by_role("link", name="Talk to it in the playground").click()
    await page.get_by_test_id("chat-input").fill(QUESTION)
    await page.get_by_test_id("chat-send").click()
    reply = page.get_by_test_id("chat-reply").last
    await expect(reply).to_contain_text(ANSWER, timeout=120_000)
    await expect(reply.get_by_role("list", name="Sources")).to_contain_text("policies.md")

    # The conversation is listed under the agent's name, with its transcript.
    await page.get_by_role("link", name="Conversations").click()
    await page.get_by_role("link", name=re.compile("Store assistant")).first.click()
    await expect(page.get_by_role("log", name="Transcript")).to_contain_text(ANSWER)


async def test_the_policy_forbids_inline_scripts_and_remote_origins(console: ConsolePage) -> None:
    response = await console.page.goto(f"{console.server.base_url}/console")
    assert response is not None
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'" and directives["default-src"] == "'self'"
    assert "unsafe-inline" not in policy and "http" not in policy.replace("'self'", "")
    # An inline script injected into the page does not run.
    ran = await console.page.evaluate(
        """() => { const s = document.createElement('script'); s.textContent = 'window.__inline = 1';
        document.body.append(s); return window.__inline === 1; }"""
    )
    assert ran is False
    console.errors_expected = re.compile("Content Security Policy")


async def test_every_screen_fits_a_phone(console: ConsolePage) -> None:
    page = console.page
    conversation = await asyncio.to_thread(_a_conversation, console.server)
    await page.set_viewport_size({"width": 390, "height": 844})
    await console.sign_in()
    for screen in (
        "overview",
        "agents",
        "knowledge",
        "playground",
        "conversations",
        "phone-numbers",
        "webhooks",
        "keys",
        "dead-letters",
        "flags",
        f"conversations/{conversation}",
    ):
        await page.goto(f"{console.server.base_url}/console#/{screen}")
        name = screen.split("/")[0]
        await expect(page.locator(f'[data-screen="{name}"] h1')).to_be_visible()
        await page.wait_for_load_state("networkidle")
        overflow = await page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 390, f"{screen} is {overflow}px wide at 390px"


def _a_conversation(server: ConsoleServer) -> str:
    """A conversation with one exchange, whose transcript the phone test opens."""
    with server.client() as http:
        agent = http.post("/v1/agents", json={"name": "Phone check agent with a long name"})
        assert agent.status_code == 201, agent.text
        started = http.post(f"/v1/agents/{agent.json()['id']}/conversations", json={})
        assert started.status_code == 201, started.text
        conversation = str(started.json()["id"])
        said = http.post(f"/v1/conversations/{conversation}/messages", json={"content": "Hello"})
        assert said.status_code == 200, said.text
        return conversation
