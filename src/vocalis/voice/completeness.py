"""Whether a transcript at a pause reads as a finished turn: the words' half of turn-taking.

The end-of-turn model hears prosody; synthetic and flat voices fool it (docs 12). The words
said so far carry a second, independent signal that costs nothing once the pause has been
transcribed for the speculative reply: an utterance that stops on "about", "the", "and" or
"is" is not finished, whatever its intonation; one that Whisper closes with a question mark
usually is; one that stops on a verb still waiting for its object ("I need to update",
"Could you check?") may go on. English only (Whisper's punctuation and English word
lists); any other language gets no opinion, and the model alone decides.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Words(StrEnum):
    """What the words say about the turn (`words_verdict`)."""

    COMPLETE = "complete"  # a finished question: nothing dangles
    INCOMPLETE = "incomplete"  # cannot be finished: a dangling word, a trailing comma
    OPEN = "open"  # may be finished, but reads as going on: a verb without its object
    NONE = "none"  # no opinion (a plain statement, another language, no words)


# Words a finished English utterance does not stop on: articles and possessive
# determiners, conjunctions and subordinators, prepositions that take an object, forms of
# "be" and contracted subjects that need a complement, and fillers. Pronouns that can
# close a sentence ("you", "it", "me", "them") are not here.
_DANGLING = frozenset(
    """
    a an the my your our their his its this these those some any every each no
    and or but nor so because if whether that which who whose than as though although
    unless while since until
    to of for with about from by into onto at in on over under between through
    is are was were am be been being isn't wasn't aren't
    i we they he she there's it's i'm we're they're you're he's she's that's what's i'd
    i've we've we'd they'd you'd i'll we'll
    um uh er erm like basically actually well
    """.split()  # noqa: SIM905 (a word list reads better as words)
)
# A clause opened by one of these needs a main clause after it ("Before I forget ...").
_SUBORDINATORS = frozenset(
    "before after if because although though unless while since once whenever when".split()  # noqa: SIM905
)
# Words after "to" that are not verbs waiting for an object: pronouns and place words
# ("talk to me", "go to work"); capitalised words (names, places) are skipped as well.
_NOT_VERBS = frozenset(
    """
    me you him her us them it this that one someone somebody anyone anybody everyone
    home work school bed town date go
    """.split()  # noqa: SIM905
)
_MODALS = frozenset("can could would will may might should".split())  # noqa: SIM905
# Verbs of giving and telling take two objects; stopped on the first ("Could you send me",
# "Can you tell us") the thing sent or told is still to come. "me" and "us" are never
# the thing given; "them", "it" can be ("Could you send them?"), so they do not count.
_TWO_OBJECT_VERBS = frozenset(
    "send give tell show bring lend hand pass offer sell forward owe".split()  # noqa: SIM905
)
_FIRST_OBJECTS = frozenset("me us".split())  # noqa: SIM905
# Verbs of getting, buying, having and wanting rarely end a sentence right after their
# subject: "Last week I ordered", "Do you have" have their object still to come. Not when a
# noun phrase or a question word came first: then the object was fronted ("the jacket I
# bought", "what do you have").
_OBJECT_FIRST_VERBS = frozenset(
    """
    order ordered buy bought book booked receive received send sent get got purchase
    purchased rent rented have has had need needed want wanted
    """.split()  # noqa: SIM905
)
_FRONTING = frozenset(
    "the a an my your our their his her its this that these those which what who whom".split()  # noqa: SIM905
)
# A question word followed at once by an auxiliary ("When is ...", "Where's ...", "How do
# ...") inverts subject and verb: a question, whatever Whisper's punctuation ("When is the
# support line open." was read as a clause opened by "when" and held 1.5 s); so does an
# auxiliary other than a modal followed by its subject ("Are returns free." waited 2.4 s on
# the model alone).
_WH = frozenset("what when where which who whom whose why how".split())  # noqa: SIM905
_AUXILIARIES = frozenset(
    """
    is are was were am do does did can could will would shall should may might must has
    have had isn't aren't wasn't weren't don't doesn't didn't can't couldn't won't
    wouldn't shouldn't
    """.split()  # noqa: SIM905
)
_CONTRACTED_AUXILIARIES = ("'s", "'re", "'ll", "'d", "'ve")
# A request opened by a modal ("could you help me") often only announces the question
# ("... with my account settings?"): its word order alone does not make it finished.
_MODAL_AUXILIARIES = frozenset(
    """
    can could will would shall should may might must can't couldn't won't wouldn't
    shouldn't
    """.split()  # noqa: SIM905
)
_SUBJECTS = frozenset("i you we they he she someone somebody".split())  # noqa: SIM905
# Numbers are words too: "My order number is 456." ends on "456", not on "is".
_WORD = re.compile(r"[A-Za-z0-9'][A-Za-z0-9'.,-]*[A-Za-z0-9]|[A-Za-z0-9']")
_NUMBER_WORDS = frozenset(
    """
    one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty
    forty fifty hundred thousand noon midnight
    """.split()  # noqa: SIM905
)


def words_verdict(text: str, language: str | None = "en") -> Words:
    """What a transcript at a pause says about the turn.

    INCOMPLETE when the last word dangles (see `_DANGLING`), the transcript trails off
    ("...", a comma, a dash), or it is a lone subordinate clause without a comma ("Before I
    forget"). OPEN when it stops on a verb that usually takes an object: an infinitive at
    the end ("I need to update", "how much does it cost to see?"), a three-word modal
    request ("Could you check?", "Can I upgrade?"), a modal ("... and I should") or a verb
    of giving or telling with only its first object ("Could you send me?") or one of
    getting right after its subject ("Last week I ordered."); such a
    turn can be finished ("Yes, I can."), so it waits less than an incomplete one. COMPLETE
    when it is a question — a question mark, a question word followed at once by an
    auxiliary ("When is the support line open.", as Whisper may punctuate it), or an
    auxiliary other than a modal followed by its subject ("Are returns free.") — and neither
    applies. NONE otherwise (a statement ending in a full stop: Whisper closes fragments
    with one too) and for other languages.
    """
    if language not in (None, "en") or not text.strip():
        return Words.NONE
    stripped = text.strip().replace("\u2026", "...").replace("\u2019", "'")
    if stripped.endswith(("...", ",", "-", "\u2014", ";", ":")):
        return Words.INCOMPLETE
    cased = _WORD.findall(stripped)
    words = [word.lower() for word in cased]
    if not words:
        return Words.NONE
    question = stripped.endswith("?") or _inverted(words)
    if words[-1] in _DANGLING:
        return Words.INCOMPLETE
    if words[0] in _SUBORDINATORS and "," not in stripped and not question:
        return Words.INCOMPLETE
    if _verb_waits_for_object(cased, words):
        return Words.OPEN
    return Words.COMPLETE if question else Words.NONE


def _inverted(words: list[str]) -> bool:
    """A question's word order: a question word and an auxiliary first ("when is", "how
    do", "where's"), or an auxiliary other than a modal then its subject ("are returns
    ...", "do you ..."; not "could you help me")."""
    first = words[0]
    for suffix in _CONTRACTED_AUXILIARIES:
        if first.endswith(suffix) and first.removesuffix(suffix) in _WH:
            return len(words) > 1
    if first in _WH:
        return len(words) > 2 and words[1] in _AUXILIARIES
    return (
        first in _AUXILIARIES
        and first not in _MODAL_AUXILIARIES
        and len(words) > 2
        and words[1] not in _AUXILIARIES
        and words[1] not in ("not", "n't")
    )


def _verb_waits_for_object(cased: list[str], words: list[str]) -> bool:
    """An infinitive closing the utterance ("... to update"), a modal request of three
    words ("Could you check"), a closing modal ("My husband and I should"), a verb of
    giving or telling stopped on its first object ("Could you send me"), or a verb of
    getting right after its subject with nothing fronted ("Last week I ordered")."""
    last = words[-1]
    if last in _MODALS and len(words) > 1:
        return True
    if last in _FIRST_OBJECTS and len(words) > 1 and words[-2] in _TWO_OBJECT_VERBS:
        return True  # "Could you send me", "Please tell us"
    if (
        last in _OBJECT_FIRST_VERBS
        and len(words) > 1
        and words[-2] in _SUBJECTS
        and not _FRONTING.intersection(words[:-2])
    ):
        return True  # "Last week I ordered", not "the shoes I ordered"
    if last in _NOT_VERBS or last in _NUMBER_WORDS or last[:1].isdigit():
        return False  # "talk to me", "from nine to five", "up to 50"
    if cased[-1][:1].isupper() and cased[-1] != "I":
        return False  # a name: "ship to Spain"
    if len(words) >= 2 and words[-2] == "to":
        return True
    return len(words) == 3 and words[0] in _MODALS and words[1] in _SUBJECTS
