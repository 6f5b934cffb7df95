"""Citation attribution: which passages a reply that cites none draws on.

Models are asked to cite passages as `[n]`; small ones often answer from a passage without
the marker. When a final reply has no valid marker but the turn gave the model passages, the
output guard attributes the reply to the passages that *lexically support* it: the reply's
content words are compared with each passage's, and a passage is kept only when it supports
most of what the reply says beyond the user's own question. The result is deterministic,
cheap (no model call) and conservative: the reply text is never changed, and a reply the
passages do not support — "I don't know", a refusal, a greeting, a question echoed back —
gets no citation at all.

How a passage is scored against a reply:

1. Both texts become sets of *content words*: lower-cased, split into words and numbers,
   stop-words and conversational filler removed, plural and `-ed`/`-ing` endings stripped,
   number words read as digits ("thirty days" matches "30 days").
2. The reply's words that only echo the question ("How many *days* for *refunds*?") are no
   evidence: a reply of them and nothing else repeats the question. What is left is the
   reply's *claim*.
3. `support` = the share of the claim found in a passage, a number or figure weighing
   `FIGURE_WEIGHT` words (rare, and precisely what an answer takes from a passage: "30").
   Passages are taken greedily, the one supporting the most of the claim first, then (at
   most `MAX_ATTRIBUTED` in all) the one supporting the most of the rest; a passage counts
   only with at least `MIN_SHARED` claim words not yet supported, or one number.
4. The passages are kept only when together they support at least `MIN_SUPPORT` of the
   claim: a reply that mostly says what no passage says is attributed to none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from vocalis.ports.retriever import Passage

MIN_SUPPORT = 0.5  # at least half of what the reply claims must be in the passages
MIN_SHARED = 2  # each passage: at least two more claim words, unless one is a number
MAX_ATTRIBUTED = 2
FIGURE_WEIGHT = 2  # a number found in a passage is worth two words


def _listed(words: str) -> list[str]:
    return words.split()


STOP_WORDS = frozenset(
    _listed(
        """
    a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't down during each either else ever every few for from further get gets
    got had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
    herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its
    itself just let's may me might more most much must mustn't my myself neither no nor not of
    off on once one's only or other ought our ours ourselves out over own per quite rather
    really same shall shan't she she'd she'll she's should shouldn't so some such than that
    that's the their theirs them themselves then there there's these they they'd they'll
    they're they've this those though through to too under until up upon us very was wasn't we
    we'd we'll we're we've were weren't what what's when when's where where's whether which
    while who who's whom whose why why's will with within without won't would wouldn't yes yet
    you you'd you'll you're you've your yours yourself yourselves
    """
    )
)
# Words a reply uses to talk, not to claim: they are no evidence of drawing on a passage.
FILLER_WORDS = frozenset(
    _listed(
        """
    hello hi hey thanks thank welcome please sorry sure okay ok great glad happy help helpful
    assist assistance question questions answer answers information info know knows knew known
    think believe understand understood find found say said says tell told let like want need
    unfortunately certainly course absolutely definitely actually basically currently able
    anything something nothing everything anyone someone thing things way ask asked regarding
    according passage passages context source sources document documents provided based
    customer customers today
    """
    )
)

_UNITS = {
    word: n
    for n, word in enumerate(
        _listed(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen"
        )
    )
}
_TENS = {
    word: 10 * n
    for n, word in enumerate(_listed("twenty thirty forty fifty sixty seventy eighty ninety"), 2)
}
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[a-z]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Attribution:
    """A passage the reply draws on, with how much of the reply it supports."""

    n: int
    support: float  # share of the reply's claim found in the passage (figures weigh more)
    shared: frozenset[str]  # the claim words found in it


def _stem(word: str) -> str:
    """A light, deterministic normal form: plural and `-ed`/`-ing` endings, a final `e`."""
    if word.isdigit() or len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("ches", "shes", "sses", "xes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for ending in ("ing", "ed"):
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            word = word[: -len(ending)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def _numbers_read(words: list[str]) -> list[str]:
    """Number words as digits: `thirty five` / `thirty-five` → `35`, `ten` → `10`."""
    out: list[str] = []
    after_tens = False
    for word in words:
        unit = _UNITS.get(word)
        if after_tens and unit is not None and 0 < unit < 10:
            out[-1] = str(int(out[-1]) + unit)
            after_tens = False
            continue
        after_tens = word in _TENS
        if word in _TENS:
            out.append(str(_TENS[word]))
        elif unit is not None:
            out.append(str(unit))
        else:
            out.append(word)
    return out


def content_words(text: str) -> frozenset[str]:
    """The normalised content words of a text (see the module docstring)."""
    text = text.lower().replace("\u2019", "'").replace("-", " ")
    text = re.sub(r"\[\d{1,3}\]", " ", text)  # citation markers are not content
    words = _numbers_read(_TOKEN.findall(text))
    return frozenset(
        _stem(word.removesuffix("'s"))
        for word in words
        if word not in STOP_WORDS
        and word not in FILLER_WORDS
        and (len(word) > 1 or word.isdigit())
        and "'" not in word.removesuffix("'s")
    )


def _is_figure(word: str) -> bool:
    return any(ch.isdigit() for ch in word)


def _claim(reply: str, question: str) -> frozenset[str]:
    return content_words(reply) - content_words(question)


def _weight(words: frozenset[str]) -> int:
    return sum(FIGURE_WEIGHT if _is_figure(w) else 1 for w in words)


def _evidence(words: frozenset[str]) -> bool:
    """Enough shared words to count: `MIN_SHARED` of them, or one number or figure."""
    return len(words) >= MIN_SHARED or any(_is_figure(w) for w in words)


def attribute(
    reply: str, passages: Mapping[int, Passage], *, question: str = ""
) -> list[Attribution]:
    """The passages (at most `MAX_ATTRIBUTED`, best first) that support what the reply
    says beyond the question; none when the passages do not support it."""
    claim = _claim(reply, question)
    if not claim:
        return []
    supports = {n: claim & content_words(p.text) for n, p in passages.items()}
    kept: list[Attribution] = []
    covered: frozenset[str] = frozenset()
    while len(kept) < MAX_ATTRIBUTED:
        # The passage adding the most of the claim not yet covered; the earlier on a tie.
        gains = {n: shared - covered for n, shared in supports.items()}
        best = max(gains, key=lambda n: (_weight(gains[n]), -n), default=None)
        if best is None or not _evidence(gains.pop(best)):
            break
        shared = supports.pop(best)
        kept.append(Attribution(best, round(_weight(shared) / _weight(claim), 3), shared))
        covered |= shared
    if _weight(covered) / _weight(claim) < MIN_SUPPORT:
        return []  # the reply says mostly what no passage says
    return kept
