"""Citation attribution in the output guard: a reply that cites no passage is attributed to
the passages that support what it says, and only to those (vocalis.agents.attribution)."""

from __future__ import annotations

from dataclasses import asdict

import pytest
from prometheus_client import REGISTRY

from vocalis.agents import attribution
from vocalis.agents.attribution import attribute, content_words
from vocalis.agents.guards import EMPTY_REPLY, settle_reply
from vocalis.agents.prompting import NumberedPassage, number_passages, tool_result_text
from vocalis.ports.retriever import Passage

REFUNDS = Passage(
    text="Refunds are accepted within 30 days of purchase. Bring the original receipt.",
    document_id="doc_policy",
    document_name="refund-policy.md",
    chunk_id="chk_refund_1",
)
HOURS = Passage(
    text="Our support line is open Monday to Friday from 9am to 5pm.",
    document_id="doc_hours",
    document_name="hours.md",
    chunk_id="chk_hours_1",
)
PASSAGES = {1: REFUNDS, 2: HOURS}
QUESTION = "How many days do I have for refunds?"


def _settle(reply: str, *, question: str = QUESTION, passages: dict[int, Passage] = PASSAGES):
    return settle_reply(
        reply,
        streamed=reply,
        instructions="You answer questions about Acme refunds.",
        passages=passages,
        max_chars=4000,
        question=question,
    )


def _counted(kind: str) -> float:
    return REGISTRY.get_sample_value("vocalis_agent_citations_total", {"kind": kind}) or 0.0


# --- positives ------------------------------------------------------------------------------


def test_an_unmarked_answer_from_a_passage_is_attributed_to_it() -> None:
    settled = _settle("You have 30 days to get your money back.")
    assert [(c.n, c.document_name, c.attributed) for c in settled.citations] == [
        (1, "refund-policy.md", True)
    ]
    assert settled.content == "You have 30 days to get your money back."  # never changed


def test_number_words_match_the_passage_digits() -> None:
    settled = _settle("You have thirty days.")
    assert [c.document_name for c in settled.citations] == ["refund-policy.md"]


def test_plural_and_tense_forms_match() -> None:
    found = attribute("Bring your receipts; purchases are refunded.", PASSAGES, question="")
    assert [a.n for a in found] == [1]
    assert {"receipt", "bring", "purchas"} <= found[0].shared


def test_an_answer_drawing_on_two_passages_is_attributed_to_both_best_first() -> None:
    reply = "Refunds are accepted within 30 days, and support is open Monday to Friday."
    settled = _settle(reply)
    assert [c.document_name for c in settled.citations] == ["hours.md", "refund-policy.md"]
    assert all(c.attributed for c in settled.citations)


def test_a_passage_that_adds_nothing_new_is_not_attributed_too() -> None:
    duplicate = Passage(
        text="Refunds: within 30 days of purchase.",
        document_id="doc_faq",
        document_name="faq.md",
        chunk_id="chk_faq",
    )
    found = attribute(
        "Refunds are accepted within 30 days of purchase.",
        {1: REFUNDS, 2: duplicate},
        question=QUESTION,
    )
    assert [a.n for a in found] == [1]


def test_at_most_two_passages_are_attributed() -> None:
    extra = Passage(
        text="Gift cards never expire and work in every store.",
        document_id="doc_gifts",
        document_name="gifts.md",
        chunk_id="chk_gifts",
    )
    reply = (
        "Refunds are accepted within 30 days; support is open Monday to Friday; gift cards "
        "never expire."
    )
    found = attribute(reply, {1: REFUNDS, 2: HOURS, 3: extra}, question="")
    assert len(found) == attribution.MAX_ATTRIBUTED


# --- negatives ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "I don't know.",
        "I'm sorry, I don't have an answer to that.",
        "I'm sorry, I can't help with that.",
        "Hello! How can I help you today?",
        "Thanks for your question!",
        "I don't know how many days you have for refunds.",  # only the question echoed
        "How many days do I have for refunds?",
    ],
)
def test_a_reply_the_passages_do_not_support_gets_no_citation(reply: str) -> None:
    assert _settle(reply).citations == ()


def test_a_wrong_figure_is_not_attributed() -> None:
    assert _settle("You have 14 days to return it by bank transfer.").citations == ()


def test_a_reply_mostly_unsupported_is_not_attributed() -> None:
    reply = "Refunds take two weeks and arrive by bank transfer to your original card."
    assert attribute(reply, PASSAGES, question=QUESTION) == []


def test_one_shared_common_word_is_not_enough() -> None:
    # "original" is the one claim word found in a passage: half the claim, but no figure.
    assert attribute("Keep the original.", PASSAGES, question="") == []


def test_no_passages_no_attribution() -> None:
    assert _settle("You have 30 days.", passages={}).citations == ()


def test_the_guards_own_replacement_is_never_attributed() -> None:
    settled = _settle("   ")
    assert settled.content == EMPTY_REPLY
    assert settled.citations == ()


# --- thresholds -----------------------------------------------------------------------------


def test_half_of_the_claim_supported_is_the_threshold() -> None:
    assert attribution.MIN_SUPPORT == 0.5
    # claim: {bring, receipt, counter, desk}; the passage has two of the four.
    found = attribute("Bring the receipt to our counter desk.", PASSAGES, question="")
    assert [(a.n, a.support) for a in found] == [(1, 0.5)]
    # One more unsupported word: two of five, below the threshold.
    assert attribute("Bring the receipt to our counter desk window.", PASSAGES) == []


def test_a_figure_weighs_more_than_a_word() -> None:
    # claim: {30, request}: the figure (weight 2) is found, "request" is not.
    found = attribute("You have 30 days to request a refund.", PASSAGES, question=QUESTION)
    assert [(a.n, a.support) for a in found] == [(1, 0.667)]
    # claim: {request, online, form, 30}: 2 of 5 — below the threshold all the same.
    assert attribute("Request it online with a form in 30 days.", PASSAGES, question=QUESTION) == []


def test_words_that_echo_the_question_are_no_evidence() -> None:
    reply = "You have 30 days for refunds."
    assert content_words(reply) - content_words(QUESTION) == {"30"}
    asked_otherwise = "You can get refunds within 30 days."
    assert [a.n for a in attribute(asked_otherwise, PASSAGES, question="Refunds?")] == [1]


# --- markers the model wrote ----------------------------------------------------------------


def test_citations_the_model_wrote_are_not_marked_attributed() -> None:
    settled = _settle("Refunds are accepted within 30 days [1].")
    assert [(c.n, c.attributed) for c in settled.citations] == [(1, False)]
    assert asdict(settled.citations[0])["attributed"] is False


def test_a_marker_of_a_passage_never_given_falls_back_to_attribution() -> None:
    settled = _settle("You have 30 days to get your money back [7].")
    assert "unknown_citation" in settled.flags
    assert [(c.n, c.attributed) for c in settled.citations] == [(1, True)]


def test_citations_are_counted_by_kind() -> None:
    attributed, cited = _counted("attributed"), _counted("cited")
    _settle("You have 30 days to get your money back.")
    _settle("Refunds are accepted within 30 days [1].")
    assert (_counted("attributed"), _counted("cited")) == (attributed + 1, cited + 1)


# --- the passages the model reads -----------------------------------------------------------


def test_a_passage_found_again_keeps_its_number() -> None:
    first = [NumberedPassage(1, REFUNDS)]
    shown, new = number_passages(first, [HOURS, REFUNDS, HOURS])
    assert [(p.n, p.passage.document_name) for p in shown] == [
        (2, "hours.md"),
        (1, "refund-policy.md"),
    ]
    assert [p.n for p in new] == [2]


def test_a_tool_result_with_passages_ends_with_the_question() -> None:
    text = tool_result_text(
        "2 passages found.", [NumberedPassage(1, REFUNDS), NumberedPassage(2, HOURS)], QUESTION
    )
    assert "passages found" not in text  # small models answer that line instead
    assert text.startswith('<passage n="1" source="refund-policy.md">')
    assert text.endswith(f"\n\nQuestion: {QUESTION}\nAnswer from passages [1], [2]:")


def test_a_tool_result_without_passages_is_its_content() -> None:
    assert tool_result_text("No passages found.", [], QUESTION) == "No passages found."
