"""Token-aware chunking: sections become overlapping chunks sized in embedding tokens.

Sizes are counted with the embedding model's own tokenizer (`TokenCounter`), so a chunk
never silently loses its tail to the model's truncation. Chunks never cross a section,
so each keeps exactly one page and heading for its citation. Sentences are the unit of
packing; a sentence longer than a chunk is split at words (and an absurdly long "word"
at characters).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from vocalis.knowledge.extract import Section
from vocalis.ports.knowledge import TokenCounter

_WORDPIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def approximate_token_counts(texts: Sequence[str]) -> list[int]:
    """Token counts for remote models whose tokenizer we lack: words, punctuation, and
    one more token per 4 characters of long words (sub-word pieces); errs on the high side."""
    counts = []
    for text in texts:
        pieces = _WORDPIECE.findall(text)
        counts.append(sum(1 + max(0, len(p) - 4) // 4 for p in pieces))
    return counts


@dataclass(frozen=True)
class ChunkingOptions:
    """Chunk size and overlap, in tokens of the embedding model."""

    max_tokens: int = 200
    overlap_tokens: int = 40

    def __post_init__(self) -> None:
        if self.max_tokens < 8:
            raise ValueError("max_tokens must be at least 8")
        if not 0 <= self.overlap_tokens <= self.max_tokens // 2:
            raise ValueError("overlap_tokens must be between 0 and half of max_tokens")


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a document with the metadata its citation needs."""

    index: int
    text: str
    token_count: int
    page: int | None = None
    heading: str | None = None
    heading_path: tuple[str, ...] = ()

    def embedding_text(self) -> str:
        """The text to embed: the heading path gives a chunk the context its title adds."""
        if not self.heading_path:
            return self.text
        return " > ".join(self.heading_path) + "\n" + self.text


@dataclass(frozen=True)
class _Unit:
    text: str
    tokens: int
    new_line: bool  # whether the unit starts a new line or paragraph in the source


_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def chunk_sections(
    sections: Sequence[Section], count_tokens: TokenCounter, options: ChunkingOptions | None = None
) -> list[Chunk]:
    """Split sections into chunks of at most `max_tokens` tokens with `overlap_tokens` overlap."""
    options = options or ChunkingOptions()
    per_section = [_split_units(section.text) for section in sections]
    counts = count_tokens([text for units in per_section for text, _ in units])
    chunks: list[Chunk] = []
    position = 0
    for section, raw_units in zip(sections, per_section, strict=True):
        units: list[_Unit] = []
        for text, new_line in raw_units:
            units.extend(_fit(_Unit(text, counts[position], new_line), count_tokens, options))
            position += 1
        for text, tokens in _pack(units, options):
            chunks.append(
                Chunk(
                    index=len(chunks),
                    text=text,
                    token_count=tokens,
                    page=section.page,
                    heading=section.heading,
                    heading_path=section.heading_path,
                )
            )
    return chunks


def _split_units(text: str) -> list[tuple[str, bool]]:
    """Lines, then sentences within each line; the flag marks the start of a line."""
    units: list[tuple[str, bool]] = []
    for line in text.split("\n"):
        sentences = [s for s in _SENTENCE_END.split(line.strip()) if s]
        units.extend((sentence, i == 0) for i, sentence in enumerate(sentences))
    return units


def _fit(unit: _Unit, count_tokens: TokenCounter, options: ChunkingOptions) -> list[_Unit]:
    """Split a unit longer than a chunk into word runs that each fit."""
    if unit.tokens <= options.max_tokens:
        return [unit]
    words = [piece for word in unit.text.split() for piece in _cut_word(word, options.max_tokens)]
    word_tokens = count_tokens(words)
    pieces: list[_Unit] = []
    current: list[str] = []
    current_tokens = 0
    for word, tokens in zip(words, word_tokens, strict=True):
        if current and current_tokens + tokens > options.max_tokens:
            pieces.append(_Unit(" ".join(current), current_tokens, not pieces and unit.new_line))
            current, current_tokens = [], 0
        current.append(word)
        current_tokens += tokens
    if current:
        pieces.append(_Unit(" ".join(current), current_tokens, not pieces and unit.new_line))
    return pieces


def _cut_word(word: str, max_tokens: int) -> list[str]:
    # A token covers at least one character, so max_tokens characters fit in max_tokens.
    return [word[i : i + max_tokens] for i in range(0, len(word), max_tokens)]


def _pack(units: Sequence[_Unit], options: ChunkingOptions) -> list[tuple[str, int]]:
    """Greedily pack units into chunks; each new chunk repeats the previous one's tail."""
    packed: list[tuple[str, int]] = []
    current: list[_Unit] = []
    tokens = 0
    fresh = 0  # units in `current` that no earlier chunk has emitted
    for unit in units:
        if current and tokens + unit.tokens > options.max_tokens:
            packed.append(_join(current, tokens))
            current = _overlap_tail(current, unit, options)
            tokens = sum(u.tokens for u in current)
            fresh = 0
        current.append(unit)
        tokens += unit.tokens
        fresh += 1
    if current and fresh:
        packed.append(_join(current, tokens))
    return packed


def _overlap_tail(
    previous: Sequence[_Unit], following: _Unit, options: ChunkingOptions
) -> list[_Unit]:
    """The trailing units of `previous` that fit in the overlap and leave room for `following`."""
    budget = min(options.overlap_tokens, options.max_tokens - following.tokens)
    tail: list[_Unit] = []
    used = 0
    # Never carry the whole previous chunk over, or chunking would not advance.
    for unit in reversed(previous[1:]):
        if used + unit.tokens > budget:
            break
        tail.insert(0, unit)
        used += unit.tokens
    return tail


def _join(units: Sequence[_Unit], tokens: int) -> tuple[str, int]:
    parts: list[str] = []
    for i, unit in enumerate(units):
        if i:
            parts.append("\n" if unit.new_line else " ")
        parts.append(unit.text)
    return "".join(parts), tokens
