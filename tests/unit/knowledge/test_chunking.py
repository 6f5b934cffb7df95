"""Chunking: token-sized, overlapping, never crossing a section, metadata kept."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from tests.fixtures.embeddings import onnx_embedder  # noqa: F401  (fixture)
from vocalis.adapters.onnx_embeddings import MAX_TOKENS, OnnxEmbedder
from vocalis.knowledge.chunking import Chunk, ChunkingOptions, chunk_sections
from vocalis.knowledge.extract import Section


def count_words(texts: Sequence[str]) -> list[int]:
    """A token counter where every word is one token: easy to reason about."""
    return [len(text.split()) for text in texts]


def sentences(n: int, words: int = 5) -> str:
    return " ".join(f"S{i} " + " ".join(["w"] * (words - 2)) + " end." for i in range(n))


def test_short_section_is_one_chunk_with_its_metadata() -> None:
    section = Section("One sentence. Two sentences.", page=3, heading="B", heading_path=("A", "B"))
    [chunk] = chunk_sections([section], count_words)
    assert chunk == Chunk(0, "One sentence. Two sentences.", 4, 3, "B", ("A", "B"))


def test_chunks_never_exceed_the_token_budget() -> None:
    options = ChunkingOptions(max_tokens=20, overlap_tokens=5)
    chunks = chunk_sections([Section(sentences(30))], count_words, options)
    assert len(chunks) > 5
    assert all(chunk.token_count <= 20 for chunk in chunks)
    assert all(count_words([c.text])[0] == c.token_count for c in chunks)


def test_consecutive_chunks_overlap_by_whole_sentences() -> None:
    options = ChunkingOptions(max_tokens=20, overlap_tokens=5)
    chunks = chunk_sections([Section(sentences(12))], count_words, options)
    for before, after in itertools.pairwise(chunks):
        last_sentence = before.text.split(". ")[-1]
        assert after.text.startswith(last_sentence.rstrip("."))


def test_zero_overlap_repeats_nothing() -> None:
    options = ChunkingOptions(max_tokens=20, overlap_tokens=0)
    chunks = chunk_sections([Section(sentences(12))], count_words, options)
    assert " ".join(c.text for c in chunks) == sentences(12)


def test_every_sentence_lands_in_some_chunk() -> None:
    text = sentences(40)
    chunks = chunk_sections(
        [Section(text)], count_words, ChunkingOptions(max_tokens=16, overlap_tokens=4)
    )
    covered = " ".join(c.text for c in chunks)
    assert all(f"S{i} " in covered for i in range(40))


def test_chunks_do_not_cross_sections_and_index_runs_across_the_document() -> None:
    sections = [Section("Alpha text.", page=1), Section("Beta text.", page=2)]
    chunks = chunk_sections(sections, count_words)
    assert [(c.index, c.page, c.text) for c in chunks] == [
        (0, 1, "Alpha text."),
        (1, 2, "Beta text."),
    ]


def test_a_sentence_longer_than_a_chunk_is_split_at_words() -> None:
    long_sentence = " ".join(f"word{i}" for i in range(50))
    chunks = chunk_sections(
        [Section(long_sentence)], count_words, ChunkingOptions(max_tokens=20, overlap_tokens=5)
    )
    assert [c.token_count for c in chunks] == [20, 20, 10]
    assert " ".join(c.text for c in chunks) == long_sentence


def test_a_giant_unbroken_word_is_cut_to_fit() -> None:
    chunks = chunk_sections(
        [Section("x" * 100)],
        lambda ts: [len(t) for t in ts],
        ChunkingOptions(max_tokens=30, overlap_tokens=0),
    )
    assert all(c.token_count <= 30 for c in chunks)
    assert "".join(c.text for c in chunks) == "x" * 100


def test_lines_stay_on_separate_lines() -> None:
    [chunk] = chunk_sections([Section("Row one | a\nRow two | b")], count_words)
    assert chunk.text == "Row one | a\nRow two | b"


def test_embedding_text_prefixes_the_heading_path() -> None:
    chunk = Chunk(0, "Body.", 1, heading="Linux", heading_path=("Setup", "Linux"))
    assert chunk.embedding_text() == "Setup > Linux\nBody."


def test_overlap_must_be_smaller_than_half_a_chunk() -> None:
    with pytest.raises(ValueError):
        ChunkingOptions(max_tokens=20, overlap_tokens=15)


def test_real_tokenizer_chunks_fit_the_model_window(onnx_embedder: OnnxEmbedder) -> None:  # noqa: F811
    text = " ".join(
        f"Paragraph {i} explains configuration option number {i} in considerable detail."
        for i in range(80)
    )
    chunks = chunk_sections([Section(text, heading="Options")], onnx_embedder.count_tokens)
    assert len(chunks) > 3
    for chunk in chunks:
        real = onnx_embedder.count_tokens([chunk.embedding_text()])[0]
        assert chunk.token_count <= 200
        assert real + 2 <= MAX_TOKENS  # + [CLS] and [SEP]: nothing is truncated
