"""The extractive responder: the embedded default that needs no model."""

from __future__ import annotations

import json

from vocalis.agents import extractive
from vocalis.agents.extractive import ExtractiveResponder
from vocalis.agents.prompting import NumberedPassage, system_prompt
from vocalis.ports.llm import ChatMessage, ToolSpec
from vocalis.ports.retriever import Passage

PASSAGES = [
    NumberedPassage(
        1,
        Passage(
            "Our store opens at 9 am on weekdays. On Saturdays we open at 10 am. "
            "We are closed on Sundays.",
            "doc_hours",
            "opening-hours.md",
            "chk_1",
            page=2,
        ),
    ),
    NumberedPassage(
        2,
        Passage(
            "Refunds are issued to the original payment method within 14 days. "
            "Gift cards cannot be refunded.",
            "doc_refunds",
            "refunds.pdf",
            "chk_2",
        ),
    ),
]
TOOLS = [
    ToolSpec("transfer_to_human", "Hand over to a person"),
    ToolSpec("end_conversation", "End the conversation"),
]


def conversation(question: str, passages: list[NumberedPassage] = PASSAGES) -> list[ChatMessage]:
    return [
        ChatMessage("system", system_prompt("Be helpful.", passages, injection_suspected=False)),
        ChatMessage("user", question),
    ]


async def reply(question: str, **kwargs: object) -> tuple[str, list[tuple[str, dict]]]:
    result = await ExtractiveResponder().complete(conversation(question), **kwargs)  # type: ignore[arg-type]
    return result.content, [(c.name, json.loads(c.arguments)) for c in result.tool_calls]


async def test_answers_with_the_most_relevant_sentence_and_cites_it() -> None:
    text, calls = await reply("How long do refunds take?")
    assert text == "Refunds are issued to the original payment method within 14 days. [2]"
    assert calls == []


async def test_prefers_the_sentence_sharing_the_rarer_words() -> None:
    text, _ = await reply("When do you open on Saturdays?")
    assert text.startswith("On Saturdays we open at 10 am.")
    assert text.endswith("[1]")


async def test_says_plainly_when_the_passages_do_not_answer() -> None:
    text, _ = await reply("Do you sell bicycles?")
    assert text == extractive.DONT_KNOW_REPLY


async def test_without_any_passages_it_does_not_know() -> None:
    result = await ExtractiveResponder().complete(conversation("What are your hours?", []))
    assert result.content == extractive.DONT_KNOW_REPLY


async def test_offers_a_person_when_it_does_not_know_and_can_transfer() -> None:
    text, _ = await reply("Do you sell bicycles?", tools=TOOLS)
    assert text == extractive.DONT_KNOW_REPLY + extractive.DONT_KNOW_HANDOFF_HINT


async def test_greets_back() -> None:
    assert (await reply("Hello!"))[0] == extractive.GREETING_REPLY


async def test_a_greeting_with_a_question_gets_the_answer() -> None:
    text, _ = await reply("Hi, how long do refunds take?")
    assert text.endswith("[2]")


async def test_acknowledges_thanks() -> None:
    assert (await reply("Thanks a lot!"))[0] == extractive.THANKS_REPLY


async def test_a_request_for_a_person_becomes_a_transfer_call() -> None:
    text, calls = await reply("I want to speak to a human", tools=TOOLS)
    assert text == extractive.HANDOFF_REPLY
    assert [name for name, _ in calls] == ["transfer_to_human"]


async def test_without_the_transfer_tool_it_says_it_cannot_transfer() -> None:
    text, calls = await reply("Can I talk to a real person?")
    assert (text, calls) == (extractive.NO_HANDOFF_REPLY, [])


async def test_goodbye_ends_the_conversation() -> None:
    text, calls = await reply("Ok thanks, bye!", tools=TOOLS)
    assert text == extractive.GOODBYE_REPLY
    assert [name for name, _ in calls] == ["end_conversation"]


async def test_streams_word_by_word_and_labels_itself() -> None:
    deltas = [d async for d in ExtractiveResponder().stream(conversation("Hello"))]
    words = [d.text for d in deltas if d.text]
    assert words == ["Hello! ", "How ", "can ", "I ", "help ", "you ", "today?"]
    assert (deltas[-1].model, deltas[-1].provider) == ("vocalis-extractive", "extractive")
    assert deltas[-1].usage is not None and deltas[-1].usage.estimated


async def test_a_forced_tool_is_called_with_the_question() -> None:
    search = ToolSpec("search_knowledge", "Search", {"type": "object", "properties": {"query": {}}})
    result = await ExtractiveResponder().complete(
        conversation("refund policy"), tools=[search], tool_choice="search_knowledge"
    )
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [
        ("search_knowledge", {"query": "refund policy"})
    ]


async def test_stop_and_max_tokens_cut_the_reply_and_a_response_format_is_refused() -> None:
    import pytest

    from vocalis.agents.extractive import limit_text
    from vocalis.ports.llm import ProviderUnavailable, collect

    hello = [ChatMessage("user", "Hello")]  # "Hello! How can I help you today?"
    stopped = await collect(ExtractiveResponder().stream(hello, stop=[" can"]))
    assert (stopped.content, stopped.finish_reason) == ("Hello! How", "stop")
    cut = await collect(ExtractiveResponder().stream(hello, max_tokens=3))
    assert cut.finish_reason == "length" and cut.usage.completion_tokens <= 3
    assert "Hello! How can I help you today?".startswith(cut.content)
    assert limit_text("Nothing to cut.", ["zzz"], 100) == ("Nothing to cut.", None)
    with pytest.raises(ProviderUnavailable, match="response_format 'json_object'"):
        await collect(ExtractiveResponder().stream(hello, response_format={"type": "json_object"}))
