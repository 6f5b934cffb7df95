"""The embedded default chat model: a grounded extractive responder that needs no model.

It implements the chat-model port deterministically. It reads the numbered passages that
the graph put in the context, picks the sentences that share the most (rare) words with
the question and answers with them verbatim, citing each as `[n]`. Greetings, thanks,
goodbyes and requests for a person are recognised by pattern: a request for a person
becomes a `transfer_to_human` tool call, a goodbye an `end_conversation` tool call (when
the agent has those tools). With nothing relevant in context it says so plainly.
Its answers are labelled `model="vocalis-extractive"`, `provider="extractive"`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from vocalis.agents.prompting import ContextPassage, parse_passages
from vocalis.ports.llm import (
    ChatDelta,
    ChatMessage,
    ChatResult,
    ProviderUnavailable,
    ResponseFormat,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
    collect,
    estimate_prompt_tokens,
    estimate_tokens,
)

MODEL = "vocalis-extractive"
PROVIDER = "extractive"

GREETING_REPLY = "Hello! How can I help you today?"
THANKS_REPLY = "You're welcome! Is there anything else I can help you with?"
GOODBYE_REPLY = "Goodbye, and thank you for getting in touch!"
HANDOFF_REPLY = "Of course. I'm connecting you with a member of our team now."
NO_HANDOFF_REPLY = (
    "I'm not able to transfer you to a person from here, but I'll do my best to help."
)
DONT_KNOW_REPLY = "I don't know the answer to that: I couldn't find it in the information I have."
DONT_KNOW_HANDOFF_HINT = " If you like, I can connect you with a person."

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STREAMED_WORD = re.compile(r"\S+\s*")  # a word and the space after it: one delta each
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n{2,}|\n(?=\s*[-*•]|\s*\d+[.)])")
_HUMAN = re.compile(
    r"\b(?:(?:talk|speak|chat)\s+(?:to|with)\s+(?:a|an|the|some|your)?\s*"
    r"(?:real\s+|live\s+|actual\s+)?(?:human|person|agent|representative|operator|someone|"
    r"somebody|staff|manager)"
    r"|(?:transfer|connect|put)\s+me\b"
    r"|(?:real|actual|live)\s+(?:person|human)"
    r"|human\s+(?:agent|being|support|operator)"
    r"|customer\s+service\s+(?:agent|representative)"
    r"|^\W*(?:human|agent|operator|representative)\W*$)",
    re.I,
)
_GOODBYE = re.compile(
    r"^\W*(?:ok(?:ay)?\W+)?(?:thanks?\W+(?:and\W+)?)?(?:good\s*bye|bye(?:\s*bye)?|see\s+(?:you|ya)|"
    r"farewell|that'?s\s+all|that\s+is\s+all|i'?m\s+done|have\s+a\s+(?:nice|good|great)"
    r"\s+(?:day|one|evening))\b",
    re.I,
)
_THANKS = re.compile(r"\b(?:thanks?|thank\s+you|thx|cheers|much\s+appreciated)\b", re.I)
_GREETING = re.compile(
    r"^\W*(?:hi|hello|hey|hiya|howdy|greetings|good\s+(?:morning|afternoon|evening))\b", re.I
)

# Words that carry no topic: they never make a sentence relevant.
_STOPWORD_TEXT = (
    "a about above after again against all am an and any are aren't as at be because "
    "been before being below between both but by can can't cannot could couldn't did "
    "didn't do does doesn't doing don't down during each few for from further had "
    "hadn't has hasn't have haven't having he her here hers herself him himself his "
    "how i i'd i'll i'm i've if in into is isn't it it's its itself let's me more "
    "most my myself no nor not of off on once only or other ought our ours ourselves "
    "out over own same she should shouldn't so some such than that that's the their "
    "theirs them themselves then there there's these they this those through to too "
    "under until up very was wasn't we were weren't what what's when where which "
    "while who whom why with won't would wouldn't you your yours yourself yourselves "
    "please tell know want need like get got give us ok okay yes also just much many "
    "really hi hello hey hiya howdy greetings good morning afternoon evening thanks "
    "thank thx cheers appreciated bye goodbye lot great awesome perfect nice helpful "
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _stem(word: str) -> str:
    """A deliberately crude suffix stripper: enough to match 'hours' with 'hour'."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_terms(text: str) -> list[str]:
    """The topical words of a text, stemmed."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]


@dataclass(frozen=True)
class _Sentence:
    passage: ContextPassage
    position: int
    text: str
    terms: frozenset[str]


def split_sentences(text: str) -> list[str]:
    """Sentences (and list items) of a passage."""
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def best_sentences(
    question: str, passages: Sequence[ContextPassage], *, limit: int = 2
) -> list[_Sentence]:
    """The sentences most relevant to the question, in reading order (empty if none is)."""
    query = set(content_terms(question))
    if not query:
        return []
    sentences = [
        _Sentence(p, i, s, frozenset(content_terms(s)))
        for p in passages
        for i, s in enumerate(split_sentences(p.text))
    ]
    if not sentences:
        return []
    # Rare words say more about relevance than common ones (idf over the sentences).
    df = {t: sum(1 for s in sentences if t in s.terms) for t in query}
    idf = {t: math.log(1 + len(sentences) / (1 + df[t])) + (1 if df[t] else 0) for t in query}
    total = sum(idf.values())

    def score(s: _Sentence) -> float:
        return sum(idf[t] for t in query & s.terms) / total

    ranked = sorted(sentences, key=score, reverse=True)
    best = score(ranked[0])
    # Require a real share of the question: one common word in common is not an answer.
    if best < 0.34:
        return []
    chosen = [ranked[0]]
    covered = query & ranked[0].terms
    for s in ranked[1:]:
        if len(chosen) == limit or score(s) < max(0.34, best * 0.6):
            break
        # A second sentence must add something the question asked about, not repeat it.
        if not (query & s.terms) <= covered:
            chosen.append(s)
            covered |= query & s.terms
    return sorted(chosen, key=lambda s: (s.passage.n, s.position))


def _last(messages: Sequence[ChatMessage], role: str) -> ChatMessage | None:
    return next((m for m in reversed(messages) if m.role == role), None)


def _context_passages(messages: Sequence[ChatMessage]) -> list[ContextPassage]:
    found: dict[int, ContextPassage] = {}
    for m in messages:
        if m.role in ("system", "tool"):
            for p in parse_passages(m.content):
                found.setdefault(p.n, p)
    return [found[n] for n in sorted(found)]


@dataclass(frozen=True)
class Reply:
    """What the responder decided: text and perhaps one tool call."""

    text: str
    tool_call: ToolCall | None = None


class ExtractiveResponder:
    """A `ChatModel` that answers only with sentences from the passages in context."""

    provider = PROVIDER
    model = MODEL

    def decide(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice | None = None,
    ) -> Reply:
        """The reply to the conversation so far."""
        tool_names = {t.name for t in tools} if tool_choice != "none" else set()
        user = _last(messages, "user")
        question = user.content if user else ""
        forced = _forced_tool(tool_choice, tools)
        if forced is not None:
            return Reply("", _call(forced.name, _forced_arguments(forced, question)))
        if _HUMAN.search(question):
            if "transfer_to_human" in tool_names:
                args = {"reason": "The user asked to speak with a person."}
                return Reply(HANDOFF_REPLY, _call("transfer_to_human", args))
            return Reply(NO_HANDOFF_REPLY)
        topical = content_terms(question)
        if _GOODBYE.search(question) and len(topical) <= 2:
            if "end_conversation" in tool_names:
                args = {"reason": "The user said goodbye."}
                return Reply(GOODBYE_REPLY, _call("end_conversation", args))
            return Reply(GOODBYE_REPLY)
        if not topical:
            if _THANKS.search(question):
                return Reply(THANKS_REPLY)
            if _GREETING.search(question) or not question.strip():
                return Reply(GREETING_REPLY)
        chosen = best_sentences(question, _context_passages(messages))
        if not chosen:
            hint = DONT_KNOW_HANDOFF_HINT if "transfer_to_human" in tool_names else ""
            return Reply(DONT_KNOW_REPLY + hint)
        return Reply(" ".join(f"{_as_sentence(s.text)} [{s.passage.n}]" for s in chosen))

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        stop: Sequence[str] = (),
        response_format: ResponseFormat | None = None,
    ) -> ChatResult:
        """The whole reply at once."""
        return await collect(
            self.stream(
                messages,
                tools=tools,
                tool_choice=tool_choice,
                max_tokens=max_tokens,
                stop=stop,
                response_format=response_format,
            )
        )

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        tool_choice: ToolChoice | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        stop: Sequence[str] = (),
        response_format: ResponseFormat | None = None,
    ) -> AsyncIterator[ChatDelta]:
        """The reply word by word, then its tool call (if any), then usage.

        `stop` and `max_tokens` cut the reply (at a stop string; after `max_tokens`
        estimated tokens, finish `length`). A `response_format` cannot be honoured by
        sentences taken from passages: it is refused (`ProviderUnavailable`, so that the
        caller hears why no model could answer), never ignored.
        """
        if response_format is not None:
            raise ProviderUnavailable(
                "No model answered, and the extractive responder cannot honour "
                f"response_format {response_format.get('type')!r}.",
                provider=PROVIDER,
                model=MODEL,
            )
        reply = self.decide(messages, tools, tool_choice)
        text, cut = limit_text(reply.text, stop, max_tokens)
        for word in _STREAMED_WORD.findall(text):
            yield ChatDelta(text=word)
        call = reply.tool_call if not cut else None
        if call is not None:
            yield ChatDelta(tool_call=ToolCallDelta(0, call.id, call.name, call.arguments))
        usage = Usage(estimate_prompt_tokens(messages), estimate_tokens(text), True)
        finish = "tool_calls" if call else cut or "stop"
        yield ChatDelta(usage=usage, finish_reason=finish, model=MODEL, provider=PROVIDER)


def limit_text(text: str, stop: Sequence[str], max_tokens: int | None) -> tuple[str, str | None]:
    """The text cut before its first stop string (`"stop"`), or after `max_tokens` estimated
    tokens (`"length"`); the reason is None when nothing was cut."""
    reason: str | None = None
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if hits:
        text, reason = text[: min(hits)], "stop"
    if max_tokens is not None and estimate_tokens(text) > max_tokens:
        kept: list[str] = []
        for word in re.finditer(r"\S+\s*", text):
            if estimate_tokens("".join(kept) + word.group(0)) > max_tokens:
                break
            kept.append(word.group(0))
        text, reason = "".join(kept).rstrip(), "length"
    return text, reason


def _as_sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text[-1:] in ".!?" else text + "."


def _call(name: str, arguments: Mapping[str, object]) -> ToolCall:
    return ToolCall(id=f"call_extractive_{name}", name=name, arguments=json.dumps(arguments))


def _forced_tool(choice: ToolChoice | None, tools: Sequence[ToolSpec]) -> ToolSpec | None:
    if choice in (None, "auto", "none"):
        return None
    if choice == "required":
        return tools[0] if tools else None
    return next((t for t in tools if t.name == choice), None)


def _forced_arguments(tool: ToolSpec, question: str) -> dict[str, object]:
    """Fill the one argument we can fill honestly: a free-text query or reason."""
    props = tool.parameters.get("properties", {})
    return {k: question for k in ("query", "reason") if k in props}
