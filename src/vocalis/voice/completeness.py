"""Whether a transcript at a pause reads as a finished turn: the words' half of turn-taking.

The end-of-turn model hears prosody; synthetic and flat voices fool it (docs 12). The words
said so far carry a second, independent signal that costs nothing once the pause has been
transcribed for the speculative reply: an utterance that stops on "about", "the", "and" or
"is" is not finished, whatever its intonation; one that Whisper closes with a question mark
usually is. English only (Whisper's punctuation and an English word list); any other
language gets no opinion, and the model alone decides.
"""

from __future__ import annotations

import re

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
_WORD = re.compile(r"[a-z'][a-z'-]*")


def transcript_complete(text: str, language: str | None = "en") -> bool | None:
    """True: reads as finished; False: cannot be finished; None: no opinion.

    False when the last word dangles (see `_DANGLING`), the transcript trails off ("...",
    a comma, a dash), or it is a lone subordinate clause without a comma ("Before I
    forget"). True when it ends with a question mark and nothing dangles. None otherwise
    (a statement ending in a full stop: Whisper closes fragments with one too) and for
    other languages.
    """
    if language not in (None, "en") or not text.strip():
        return None
    stripped = text.strip().lower().replace("\u2026", "...")
    if stripped.endswith(("...", ",", "-", "\u2014", ";", ":")):
        return False
    words = _WORD.findall(stripped.replace("\u2019", "'"))
    if not words:
        return None
    if words[-1] in _DANGLING:
        return False
    if words[0] in _SUBORDINATORS and "," not in stripped and not stripped.endswith("?"):
        return False
    if stripped.endswith("?"):
        return True
    return None
