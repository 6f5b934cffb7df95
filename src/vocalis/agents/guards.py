"""Input and output guards of the agent graph, as plain functions.

The input guard refuses oversize messages and *flags* (does not block) text that looks like
a prompt-injection attempt: blocking on patterns would refuse legitimate questions about
prompts, and the flag lets the model be reminded of its instructions and lets operators see
it on the span and the message. The output guard makes the final text safe to keep:
never empty, not oversize, no verbatim leak of the agent's instructions, and only citations
of passages that exist. A reply that cites no passage although the turn gave the model some
is attributed to the passages that support it (`vocalis.agents.attribution`), if any.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from vocalis.agents.attribution import attribute
from vocalis.agents.events import Citation, GuardFlag, TextDelta
from vocalis.agents.prompting import cited_numbers
from vocalis.core import metrics
from vocalis.ports.retriever import Passage

TOO_LONG_REPLY = "Your message is too long for me to process. Please shorten it and try again."
EMPTY_REPLY = "I'm sorry, I don't have an answer to that."
LEAK_REPLY = "I'm sorry, I can't share that."

INJECTION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.I | re.M))
    for name, pattern in (
        (
            "ignore_instructions",
            r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}\b(?:previous|prior|above|"
            r"earlier|system|all|your|the)\b.{0,20}\b(?:instructions?|prompts?|rules|directives)",
        ),
        (
            "reveal_prompt",
            r"\b(?:reveal|show|print|repeat|output|tell me|what (?:is|are))\b.{0,30}"
            r"\b(?:system prompt|your (?:instructions|prompt|rules)|hidden (?:prompt|instructions))",
        ),
        (
            "role_override",
            r"\b(?:you are now|from now on,? you (?:are|will)|pretend (?:to be|you are)|"
            r"act as (?:an? )?(?:unrestricted|jailbroken|evil|dan\b))",
        ),
        ("jailbreak", r"\b(?:jailbreak|developer mode|do anything now|DAN mode)\b"),
        (
            "fake_role_marker",
            r"(?:<\|im_start\|>|<\|system\|>|\[/?INST\]|^\s*#{2,}\s*system\b|^\s*system\s*:)",
        ),
    )
)


def injection_flags(text: str) -> list[str]:
    """Names of the prompt-injection patterns the text matches."""
    return [name for name, pattern in INJECTION_PATTERNS if pattern.search(text)]


# Flags of a reply the guard wrote in place of the model's.
REPLACING_FLAGS = frozenset({"empty_output", "instructions_leak"})


@dataclass(frozen=True)
class OutputCheck:
    """The output guard's verdict: the text to keep and what was changed."""

    content: str
    flags: tuple[str, ...] = ()


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def leaks_instructions(content: str, instructions: str, window: int = 60) -> bool:
    """Whether the reply repeats a long verbatim stretch of the instructions."""
    source = _normalise(instructions)
    if len(source) < window:
        return False
    reply = _normalise(content)
    return any(
        source[i : i + window] in reply for i in range(0, len(source) - window + 1, window // 3)
    )


_CITATION = re.compile(r"\s?\[(\d{1,3})\]")


def check_output(
    content: str, *, instructions: str, passage_numbers: Collection[int], max_chars: int
) -> OutputCheck:
    """The final text, made safe to keep and show."""
    flags: list[str] = []
    text = content.strip()
    if not text:
        return OutputCheck(EMPTY_REPLY, ("empty_output",))
    if leaks_instructions(text, instructions):
        return OutputCheck(LEAK_REPLY, ("instructions_leak",))

    def keep_known(match: re.Match[str]) -> str:
        if int(match.group(1)) in passage_numbers:
            return match.group(0)
        flags.append("unknown_citation")
        return ""

    text = _CITATION.sub(keep_known, text)
    if len(text) > max_chars:
        cut = text[:max_chars].rsplit(" ", 1)[0]
        text = cut.rstrip() + "…"
        flags.append("output_truncated")
    return OutputCheck(text, tuple(dict.fromkeys(flags)))


@dataclass(frozen=True)
class SettledReply:
    """A turn's final text after the output guard, and what the runtime sends with it."""

    content: str
    flags: tuple[str, ...]  # the output guard's own
    # Of passages the turn was given: those cited as `[n]` in citation order, or else
    # those the reply was attributed to (`attributed=True`), best supported first.
    citations: tuple[Citation, ...]
    replaced: bool  # the guard changed text the caller had already been streamed
    events: tuple[GuardFlag | TextDelta, ...]  # to send before the `FinalMessage`


def settle_reply(
    draft: str,
    *,
    streamed: str,
    instructions: str,
    passages: Mapping[int, Passage],
    max_chars: int,
    question: str = "",
) -> SettledReply:
    """The output guard over a turn's draft reply, shared by every runtime: the flags to
    report, the whole text when nothing was streamed yet, and the citations kept — or, when
    the reply cites none, attributed from the passages that support it beyond `question`."""
    check = check_output(
        draft, instructions=instructions, passage_numbers=passages.keys(), max_chars=max_chars
    )
    streamed = streamed.strip()
    events: list[GuardFlag | TextDelta] = [GuardFlag(flag) for flag in check.flags]
    if not streamed:
        events.append(TextDelta(check.content))  # nothing reached the caller yet: send it whole
    citations = reply_citations(check, passages, question=question)
    return SettledReply(
        content=check.content,
        flags=check.flags,
        citations=citations,
        replaced=bool(streamed) and streamed != check.content,
        events=tuple(events),
    )


def reply_citations(
    check: OutputCheck, passages: Mapping[int, Passage], *, question: str
) -> tuple[Citation, ...]:
    """The `[n]` citations of a checked reply, or its attributed ones when it has none."""
    cited = [n for n in cited_numbers(check.content) if n in passages]
    if cited:
        metrics.AGENT_CITATIONS.labels("cited").inc(len(cited))
        return tuple(Citation.of(n, passages[n]) for n in cited)
    if check.flags and set(check.flags) & REPLACING_FLAGS:
        return ()  # the guard's own reply, not the model's: it draws on nothing
    found = attribute(check.content, passages, question=question)
    if found:
        metrics.AGENT_CITATIONS.labels("attributed").inc(len(found))
    return tuple(Citation.of(a.n, passages[a.n], attributed=True) for a in found)
