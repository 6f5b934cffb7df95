"""Split streaming LLM text into speakable chunks for sentence-by-sentence TTS.

A sentence ends at `.`, `!`, `?` or `…` (plus closing quotes/brackets) followed by
whitespace, or at a line break. Not boundaries: decimals (`3.5`), common abbreviations
(`Dr.`, `e.g.`), initials (`J. R. R.`) and list numbers (`1. First`). To cut the time to
first audio, the first chunk of a reply may end early at a comma, semicolon, colon or dash
once it has enough words. Overlong runs without punctuation are cut at a clause or word
boundary so one chunk never takes too long to synthesise.
"""

from __future__ import annotations

import re

TERMINATORS = (
    ".!?\u2026\u3002\uff01\uff1f"  # ellipsis and CJK full stop, exclamation and question marks
)
CLOSERS = "\"')]}\u201d\u2019\u00bb"  # plus closing curly quotes and guillemet
SOFT_BREAKS = ",;:\u2014\u2013"  # plus em and en dash
ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "inc",
        "ltd",
        "co",
        "corp",
        "no",
        "fig",
        "approx",
        "dept",
        "est",
        "mt",
        "ft",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "u.s",
        "u.k",
        "a.m",
        "p.m",
        "min",
        "max",
        "vol",
        "ave",
        "blvd",
        "rd",
        "gen",
        "col",
        "capt",
        "lt",
    }
)

_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MARKDOWN_MARKS = re.compile(r"(\*\*|__|`+|(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w))")
_LINE_PREFIX = re.compile(r"^\s*(#{1,6}\s+|[-*+]\s+|>\s*)", re.MULTILINE)


def clean_for_speech(text: str) -> str:
    """Drop Markdown that a voice would otherwise read out (`**`, `#`, bullets, link URLs)."""
    text = _MARKDOWN_LINK.sub(r"\1", text)
    text = _LINE_PREFIX.sub("", text)
    text = _MARKDOWN_MARKS.sub("", text)
    return " ".join(text.split())


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


class SentenceChunker:
    """Accumulates text deltas and returns the chunks that are complete."""

    def __init__(self, *, first_chunk_min_words: int = 5, max_chars: int = 200) -> None:
        self.first_chunk_min_words = first_chunk_min_words
        self.max_chars = max_chars
        self.reset()

    def reset(self) -> None:
        """Start a new reply: forget buffered text."""
        self._buffer = ""
        self._emitted = False

    def push(self, delta: str) -> list[str]:
        """Add generated text; returns the chunks it completed (possibly none)."""
        self._buffer += delta
        chunks: list[str] = []
        while (end := self._next_boundary()) is not None:
            chunk, self._buffer = self._buffer[:end], self._buffer[end:]
            self._emit(chunk, chunks)
        return chunks

    def flush(self) -> list[str]:
        """The end of the reply: whatever text is left, as a last chunk."""
        chunks: list[str] = []
        self._emit(self._buffer, chunks)
        self.reset()
        return chunks

    def _emit(self, chunk: str, into: list[str]) -> None:
        cleaned = clean_for_speech(chunk)
        if _speakable(cleaned):
            into.append(cleaned)
            self._emitted = True

    def _next_boundary(self) -> int | None:
        text = self._buffer
        end = self._sentence_end(text)
        if end is None and not self._emitted:
            end = self._early_clause_end(text)
        if end is None and len(text) > self.max_chars:
            end = self._forced_cut(text)
        return end

    def _sentence_end(self, text: str) -> int | None:
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\n" and _speakable(text[:i]):
                return i + 1
            if ch in TERMINATORS:
                j = i + 1
                while j < len(text) and (text[j] in TERMINATORS or text[j] in CLOSERS):
                    j += 1
                if j == len(text):
                    return None  # the next character decides (e.g. "3." then "5")
                if text[j].isspace() and not self._is_false_stop(text, i):
                    return j
                i = j
                continue
            i += 1
        return None

    def _is_false_stop(self, text: str, dot: int) -> bool:
        if text[dot] != ".":
            return False
        start = dot
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "."):
            start -= 1
        word = text[start:dot]
        if word.lower() in ABBREVIATIONS:
            return True
        if len(word) == 1 and word.isupper():  # an initial: "J. R. R. Tolkien"
            return True
        # A list number ("1. First step") when nothing else precedes it on its line.
        return word.isdigit() and not text[:start].strip(" \t").rsplit("\n", 1)[-1]

    def _early_clause_end(self, text: str) -> int | None:
        for i, ch in enumerate(text):
            is_break = ch in SOFT_BREAKS and i + 1 < len(text) and text[i + 1].isspace()
            if is_break and len(text[:i].split()) >= self.first_chunk_min_words:
                return i + 1
        return None

    def _forced_cut(self, text: str) -> int:
        window = text[: self.max_chars]
        for i in range(len(window) - 1, 0, -1):
            if window[i] in SOFT_BREAKS and i + 1 < len(text) and text[i + 1].isspace():
                return i + 1
        space = window.rfind(" ")
        return space + 1 if space > 0 else self.max_chars
