"""Word error rate, for judging speech-to-text quality in tests and benchmarks.

Both texts are normalised first (case, punctuation, hyphens, currency symbols, and numbers
up to 999 999 spelt out) so that "£50" and "fifty pounds" count as the same words.
"""

from __future__ import annotations

import re

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_CURRENCY = {"£": "pounds", "$": "dollars", "€": "euros"}
_CURRENCY_AMOUNT = re.compile(r"([£$€])\s?(\d[\d,]*(?:\.\d+)?)")
_NUMBER = re.compile(r"\d+")


def number_to_words(n: int) -> str:
    """English words for 0 ≤ n < 1 000 000 (digits beyond are kept as digits)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_to_words(rest)}" if rest else "")
    if n < 1_000_000:
        thousands, rest = divmod(n, 1000)
        return f"{number_to_words(thousands)} thousand" + (
            f" {number_to_words(rest)}" if rest else ""
        )
    return str(n)


def normalize_transcript(text: str) -> list[str]:
    """Lower-case words without punctuation, with currency and numbers spelt out."""
    text = _CURRENCY_AMOUNT.sub(lambda m: f"{m.group(2)} {_CURRENCY[m.group(1)]}", text)
    text = re.sub(r"(?<=\d),(?=\d)", "", text)
    text = _NUMBER.sub(lambda m: f" {number_to_words(int(m.group()))} ", text)
    text = text.lower().replace("-", " ").replace("'", "").replace("\u2019", "")
    return re.sub(r"[^\w\s]", " ", text).split()


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """(substitutions + deletions + insertions) / reference words, over all pairs."""
    if len(references) != len(hypotheses):
        raise ValueError("need one hypothesis per reference")
    errors = words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref, hyp = normalize_transcript(reference), normalize_transcript(hypothesis)
        errors += _edit_distance(ref, hyp)
        words += len(ref)
    return errors / words if words else 0.0


def _edit_distance(ref: list[str], hyp: list[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i]
        for j, hyp_word in enumerate(hyp, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
            )
        previous = current
    return previous[-1]
