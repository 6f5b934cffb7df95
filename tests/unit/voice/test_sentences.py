"""Splitting streamed reply text into speakable chunks."""

from __future__ import annotations

from vocalis.voice.sentences import SentenceChunker, clean_for_speech


def chunks_of(*deltas: str, **options: int) -> list[str]:
    chunker = SentenceChunker(**options)
    out: list[str] = []
    for delta in deltas:
        out += chunker.push(delta)
    return out + chunker.flush()


def test_splits_a_stream_at_sentence_ends() -> None:
    assert chunks_of("Hello there. How are", " you today? I am fine!") == [
        "Hello there.",
        "How are you today?",
        "I am fine!",
    ]


def test_emits_a_sentence_as_soon_as_the_next_word_begins() -> None:
    chunker = SentenceChunker()
    assert chunker.push("It is ready.") == []
    assert chunker.push(" Next") == ["It is ready."]


def test_keeps_decimal_numbers_whole_even_when_split_across_deltas() -> None:
    assert chunks_of("The rate is 3.", "5 percent today. Thanks.") == [
        "The rate is 3.5 percent today.",
        "Thanks.",
    ]


def test_does_not_split_after_abbreviations() -> None:
    assert chunks_of("Dr. Smith met Mrs. Jones, e.g. at noon. Then left.") == [
        "Dr. Smith met Mrs. Jones, e.g. at noon.",
        "Then left.",
    ]


def test_does_not_split_after_initials() -> None:
    assert chunks_of("J. R. R. Tolkien wrote it. Yes.") == ["J. R. R. Tolkien wrote it.", "Yes."]


def test_keeps_a_list_number_with_its_item() -> None:
    assert chunks_of("Steps:\n1. Open the box.\n2. Plug it in.") == [
        "Steps:",
        "1. Open the box.",
        "2. Plug it in.",
    ]


def test_closing_quotes_and_brackets_stay_with_their_sentence() -> None:
    assert chunks_of('He said "go now." (It was late.) We went.') == [
        'He said "go now."',
        "(It was late.)",
        "We went.",
    ]


def test_first_chunk_ends_early_at_a_comma_after_enough_words() -> None:
    chunker = SentenceChunker(first_chunk_min_words=4)
    assert chunker.push("Our refund policy is simple, you get") == ["Our refund policy is simple,"]


def test_first_chunk_does_not_end_at_a_comma_too_early() -> None:
    chunker = SentenceChunker(first_chunk_min_words=4)
    assert chunker.push("Well, I think ") == []


def test_only_the_first_chunk_ends_early() -> None:
    assert chunks_of(
        "Our refund policy is simple, you get",
        " your money back. After that, within thirty days, we check the item.",
        first_chunk_min_words=4,
    ) == [
        "Our refund policy is simple,",
        "you get your money back.",
        "After that, within thirty days, we check the item.",
    ]


def test_a_complete_sentence_is_preferred_over_an_early_clause() -> None:
    chunker = SentenceChunker(first_chunk_min_words=4)
    assert chunker.push("Our refund policy is simple, you get paid. ") == [
        "Our refund policy is simple, you get paid."
    ]


def test_commas_inside_numbers_are_not_breaks() -> None:
    chunker = SentenceChunker(first_chunk_min_words=1)
    assert chunker.push("We sold 1,000 units") == []


def test_flush_returns_the_unterminated_remainder() -> None:
    chunker = SentenceChunker()
    assert chunker.push("No punctuation at the end") == []
    assert chunker.flush() == ["No punctuation at the end"]
    assert chunker.flush() == []


def test_overlong_text_is_cut_at_a_clause_or_word_boundary() -> None:
    long_clause = "word " * 30 + "and then, " + "more " * 30
    out = SentenceChunker(max_chars=200, first_chunk_min_words=1000).push(long_clause)
    assert out and all(len(chunk) <= 200 for chunk in out)
    assert out[0].endswith("and then,")


def test_chunks_without_letters_or_digits_are_dropped() -> None:
    assert chunks_of("... ", "!! ", "Real text.") == ["Real text."]


def test_markdown_is_not_read_aloud() -> None:
    assert clean_for_speech(
        "## Refunds\n- **Full** refund within `30` days, see [policy](https://x.y/p)."
    ) == ("Refunds Full refund within 30 days, see policy.")


def test_reset_forgets_a_half_finished_sentence() -> None:
    chunker = SentenceChunker()
    chunker.push("This will be interrupted")
    chunker.reset()
    assert chunker.push("Fresh start. ") == ["Fresh start."]
