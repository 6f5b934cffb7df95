"""PII and credential redaction for log lines and stored redacted transcripts.

`RULES` is the single registry of what gets redacted; the documentation's redaction table
is generated from it. Rules run in order, most specific first, so that a JWT inside a
`Bearer` header or a card number inside an IBAN is replaced once, by the right placeholder.
Number-shaped rules validate what they match (Luhn, mod-97, number plans) because a log
line full of `[CARD]`-mangled order ids and timestamps is nearly as useless as a leaky one.

Performance note: every pattern starts with a literal or a character class and checks what
comes before it with a look-behind placed *after* that first character. Python's regex
engine can then skip ahead to candidate positions instead of trying every offset, which is
what keeps a 10 KB string well under a millisecond or two.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

RuleKind = Literal["pii", "credential"]
Replacer = Callable[[re.Match[str]], str]

# What a value becomes when redaction itself cannot be trusted (too deep, internal error).
FALLBACK = "[REDACTED]"
SECRET = "[SECRET]"

_PLACEHOLDER = re.compile(r"\[[A-Z_]+\]")
_DIGIT = re.compile(r"\d")
_SEPARATOR = re.compile(r"[ .\-]")
_MAX_DEPTH = 32


@dataclass(frozen=True)
class RedactionRule:
    """One thing that gets redacted: what it is, what replaces it, and how it is found."""

    name: str
    description: str
    placeholder: str
    kind: RuleKind
    example: str
    apply: Callable[[str], str] = field(repr=False, compare=False)
    # Lower-case substrings of which one must occur for the rule to run at all.
    triggers: tuple[str, ...] = ()
    needs_digit: bool = False


# --- validators -------------------------------------------------------------------------


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdecimal())


def luhn_valid(number: str) -> bool:
    """True when the digits of `number` pass the Luhn checksum used by payment cards."""
    digits = _digits(number)
    if not digits:
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """True when `candidate` (spaces allowed) is an IBAN with a correct mod-97 check."""
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not (compact.isascii() and compact.isalnum()):
        return False
    if not (compact[:2].isalpha() and compact[2:4].isdigit()):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _card_valid(candidate: str) -> bool:
    digits = _digits(candidate)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


# --- replacers ----------------------------------------------------------------------------


def _valid_prefix(text: str, valid: Callable[[str], bool], placeholder: str) -> str:
    """Replace the longest valid prefix ending at a group boundary (regexes over-grab)."""
    cuts = [len(text)] + [m.start() for m in reversed(list(_SEPARATOR.finditer(text)))]
    for cut in cuts:
        if valid(text[:cut]):
            return placeholder + text[cut:]
    return text


def _valid_window(text: str, valid: Callable[[str], bool], placeholder: str) -> str:
    """Replace the longest valid run of whole groups; a number may sit among other numbers."""
    separators = list(_SEPARATOR.finditer(text))
    starts = [0] + [m.end() for m in separators]
    ends = [m.start() for m in separators] + [len(text)]
    windows = sorted(((s, e) for s in starts for e in ends if e > s), key=lambda w: w[0] - w[1])
    for start, end in windows:
        if valid(text[start:end]):
            return text[:start] + placeholder + text[end:]
    return text


def _card(match: re.Match[str]) -> str:
    return _valid_window(match.group(0), _card_valid, "[CARD]")


def _iban(match: re.Match[str]) -> str:
    return _valid_prefix(match.group(0), iban_valid, "[IBAN]")


def _phone_with_digits(low: int, high: int) -> Replacer:
    def valid(candidate: str) -> bool:
        return low <= len(_digits(candidate)) <= high

    def replace(match: re.Match[str]) -> str:
        return _valid_prefix(match.group(0), valid, "[PHONE]")

    return replace


def _keep_head(match: re.Match[str], group: str, replacement: str) -> str:
    """The match with everything from `group` on replaced."""
    return match.string[match.start() : match.start(group)] + replacement


def _bearer(match: re.Match[str]) -> str:
    token = match.group("token")
    # Prose ("Bearer authentication") must survive; real tokens are long or carry digits.
    if len(token) >= 20 or (len(token) >= 8 and _DIGIT.search(token)):
        return _keep_head(match, "token", "[TOKEN]")
    return match.group(0)


def _basic_auth(match: re.Match[str]) -> str:
    try:
        decoded = base64.b64decode(match.group("token"), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return _keep_head(match, "token", SECRET) if b":" in decoded else match.group(0)


def _assignment(placeholder: str) -> Replacer:
    def replace(match: re.Match[str]) -> str:
        return _keep_head(match, "value", _redacted_value(match.group("value"), placeholder))

    return replace


def _redacted_value(value: str, placeholder: str) -> str:
    """The value of a `key=value` pair with its quoting kept and its content replaced."""
    if _PLACEHOLDER.fullmatch(value):
        return value
    for quote in ('\\"', '"', "'"):
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            inner = value[len(quote) : -len(quote)]
            if not inner or _PLACEHOLDER.fullmatch(inner):
                return value
            return quote + placeholder + quote
    return placeholder


_EMAIL_DOMAIN = re.compile(r"@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,24}\b")


def _is_local_part_char(char: str) -> bool:
    return char.isalnum() or char in "._%+-"


def _redact_emails(text: str) -> str:
    """Replace `local@domain.tld`; found from the `@` outwards, far cheaper than a scan."""
    pieces: list[str] = []
    done = 0
    for match in _EMAIL_DOMAIN.finditer(text):
        start = match.start()
        floor = max(done, match.start() - 65)  # local parts are at most 64 characters
        while start > floor and _is_local_part_char(text[start - 1]):
            start -= 1
        if start == match.start() or match.start() - start > 64:
            continue
        pieces.append(text[done:start])
        pieces.append("[EMAIL]")
        done = match.end()
    pieces.append(text[done:])
    return "".join(pieces)


# --- patterns -----------------------------------------------------------------------------


def _keywords(*words: str) -> str:
    """Case-insensitive alternation that still starts with a character class (fast)."""
    by_initial: dict[str, list[str]] = {}
    for word in words:
        by_initial.setdefault(word[0].lower(), []).append(word[1:])
    initials = "".join(c + c.upper() for c in by_initial)
    branches = "|".join(
        f"(?<=[{c}{c.upper()}])(?i:{'|'.join(rests)})" for c, rests in by_initial.items()
    )
    return f"[{initials}](?:{branches})"


_SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "private[_-]?key", "credentials?")
_TOKEN_WORDS = ("token",)
_API_KEY_WORDS = ("api[_-]?key", "apikey", "access[_-]?key")
_HEADER_WORDS = ("authorization", "cookies?")

# The key's own closing quote (possibly JSON-escaped), then `:` or `=`.
_SEP = r"\\?[\"']?\s*[:=]\s*"
# Quoted values are bounded so that an unclosed quote cannot make matching quadratic.
_QUOTED = (
    r'|\\"(?:(?!\\")[^\n]){0,1024}\\"'  # inside an escaped JSON string
    r'|"(?:[^"\\\n]|\\.){0,1024}"'
    r"|'(?:[^'\\\n]|\\.){0,1024}'"
)
_VALUE = (
    r"(?P<value>\[[A-Z_]+\]"  # already redacted by an earlier rule
    + _QUOTED
    + r"|[^\s\"'`,;&{}\[\]()<>]+)"
)
_HEADER_VALUE = (
    r"(?:(?i:bearer|basic|token|digest)\s+)?"
    r"(?P<value>\[[A-Z_]+\](?=[ \t]*(?:$|[\"'\r\n]))"
    + _QUOTED
    + r"|[^\s\"'{\[](?:[^\r\n\"']*[^\s\"'])?)"
)


def _assignment_pattern(words: tuple[str, ...], value: str = _VALUE) -> re.Pattern[str]:
    # The keyword must end the key (`max_tokens=` is no token) but may carry a prefix
    # (`db_password`, `refresh_token`), so only what follows it is pinned.
    return re.compile(_keywords(*words) + _SEP + value, re.MULTILINE)


_SECRET_KEY_NAME = re.compile(
    "(?:" + "|".join(_SECRET_WORDS + _TOKEN_WORDS + _API_KEY_WORDS + _HEADER_WORDS) + ")$",
    re.IGNORECASE,
)

# Number rules: not glued to a word, a sign, a path, `#`, `$` or a longer dashed number.
_NOT_AFTER = r"[\w+./#$\-]"
_NOT_BEFORE = r"(?![\w\-]|[.,/]\d)"


def _rule(
    name: str,
    description: str,
    placeholder: str,
    kind: RuleKind,
    example: str,
    pattern: str,
    replace: Replacer | str | None = None,
    *,
    triggers: tuple[str, ...] = (),
    needs_digit: bool = False,
    flags: int = 0,
) -> RedactionRule:
    compiled = re.compile(pattern, flags)
    replacement = placeholder if replace is None else replace

    def apply(text: str) -> str:
        return compiled.sub(replacement, text)

    return RedactionRule(
        name, description, placeholder, kind, example, apply, triggers, needs_digit
    )


def _assignment_rule(
    name: str,
    description: str,
    placeholder: str,
    example: str,
    pattern: re.Pattern[str],
    triggers: tuple[str, ...],
) -> RedactionRule:
    replace = _assignment(placeholder)

    def apply(text: str) -> str:
        return pattern.sub(replace, text)

    return RedactionRule(name, description, placeholder, "credential", example, apply, triggers)


RULES: tuple[RedactionRule, ...] = (
    _rule(
        "private_key",
        "PEM private key blocks.",
        SECRET,
        "credential",
        "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBg-----END PRIVATE KEY-----",
        r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----.{0,16384}?-----END [A-Z ]{0,20}PRIVATE KEY-----",
        triggers=("private key",),
        flags=re.DOTALL,
    ),
    _rule(
        "jwt",
        "JSON Web Tokens: three base64url segments, the first starting `eyJ`.",
        "[JWT]",
        "credential",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dBjftJeZ4CVP",
        r"eyJ(?<![\w-]eyJ)[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+",
        triggers=("eyj",),
    ),
    _rule(
        "url_credentials",
        "The password in a URL's user-info (`scheme://user:password@host`); the user stays.",
        SECRET,
        "credential",
        "postgresql://app:s3cret@db:5432/app",
        r"(?P<head>://[^\s:/?#@\[\]]{0,256}:)[^\s/?#@]{1,256}@",
        r"\g<head>[SECRET]@",
        triggers=("://",),
    ),
    _rule(
        "bearer_token",
        "The token after `Bearer` (when long or containing digits, so prose survives).",
        "[TOKEN]",
        "credential",
        "Authorization: Bearer 9f8e7d6c5b4a3210",
        r"[bB](?<!\w[bB])(?i:earer)\s+(?P<token>[A-Za-z0-9._~+/-]+=*)",
        _bearer,
        triggers=("bearer",),
    ),
    _rule(
        "basic_auth",
        "HTTP Basic credentials (base64 of `user:password`).",
        SECRET,
        "credential",
        "Authorization: Basic dXNlcjpodW50ZXIy",
        r"[bB](?<!\w[bB])(?i:asic)\s+(?P<token>[A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])",
        _basic_auth,
        triggers=("basic",),
    ),
    _rule(
        "vocalis_api_key",
        "Vocalis API keys (`vk_…`); the 12-character lookup prefix on its own is kept.",
        "[API_KEY]",
        "credential",
        "vk_AbCdEfGhIjKl3q5x9ZkLmNoPqRsTuVwXyZ012345",
        r"vk_(?<![A-Za-z0-9]vk_)[A-Za-z0-9_-]{20,}",
        triggers=("vk_",),
    ),
    _rule(
        "openai_api_key",
        "OpenAI-style secret keys (`sk-…`, `sk-proj-…`, `sk-ant-…`).",
        "[API_KEY]",
        "credential",
        "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        r"sk-(?<![A-Za-z0-9-]sk-)[A-Za-z0-9_-]{20,}",
        triggers=("sk-",),
    ),
    _rule(
        "stripe_key",
        "Stripe secret and restricted keys (`sk_live_…`, `rk_test_…`).",
        "[API_KEY]",
        "credential",
        "sk_live_51HxYzAbCdEfGhIjKlMn",
        r"[sr]k_(?<![A-Za-z0-9][sr]k_)(?:live|test)_[A-Za-z0-9]{16,}",
        triggers=("k_live_", "k_test_"),
    ),
    _rule(
        "webhook_secret",
        "Standard Webhooks signing secrets (`whsec_…`).",
        "[API_KEY]",
        "credential",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        r"whsec_(?<![A-Za-z0-9]whsec_)[A-Za-z0-9+/=_-]{16,}",
        triggers=("whsec_",),
    ),
    _rule(
        "aws_access_key_id",
        "AWS access key ids (`AKIA…`, `ASIA…`).",
        "[API_KEY]",
        "credential",
        "AKIAIOSFODNN7EXAMPLE",
        r"A(?<![A-Za-z0-9]A)(?:KIA|SIA)[0-9A-Z]{16}(?![A-Za-z0-9])",
        triggers=("akia", "asia"),
    ),
    _rule(
        "github_token",
        "GitHub tokens (`ghp_…`, `gho_…`, `ghs_…`, `github_pat_…`).",
        "[API_KEY]",
        "credential",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        r"g(?<![A-Za-z0-9]g)(?:h[pousr]_[A-Za-z0-9]{36,}|ithub_pat_[A-Za-z0-9_]{22,})",
        triggers=("gh",),
    ),
    _rule(
        "slack_token",
        "Slack tokens (`xoxb-…`, `xoxp-…`).",
        "[API_KEY]",
        "credential",
        "xoxb-123456789012-abcdefghijkl",
        r"x(?<![A-Za-z0-9]x)ox[abposr]-[A-Za-z0-9-]{10,}",
        triggers=("xox",),
    ),
    _rule(
        "google_api_key",
        "Google API keys (`AIza…`).",
        "[API_KEY]",
        "credential",
        "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234",
        r"AIza(?<![A-Za-z0-9]AIza)[0-9A-Za-z_-]{35}",
        triggers=("aiza",),
    ),
    _assignment_rule(
        "header_credentials",
        "The value of `Authorization`, `Cookie` and `Set-Cookie`, to the end of the line.",
        SECRET,
        "Cookie: session=abc123; theme=dark",
        _assignment_pattern(_HEADER_WORDS, _HEADER_VALUE),
        triggers=("authorization", "cookie"),
    ),
    _assignment_rule(
        "api_key_assignment",
        "The value of a key ending in `api_key`, `apikey` or `access_key` (`api_key=…`).",
        "[API_KEY]",
        'api_key="abc123def456"',
        _assignment_pattern(_API_KEY_WORDS),
        triggers=("key",),
    ),
    _assignment_rule(
        "token_assignment",
        "The value of a key ending in `token` (`token=…`, `refresh_token: …`).",
        "[TOKEN]",
        "?access_token=abc123&page=2",
        _assignment_pattern(_TOKEN_WORDS),
        triggers=("token",),
    ),
    _assignment_rule(
        "secret_assignment",
        "The value of a key ending in `password`, `secret`, `passphrase`, `private_key` or "
        '`credentials` (`password=…`, `"secret": "…"`); the key stays.',
        SECRET,
        '{"password": "hunter2"}',
        _assignment_pattern(_SECRET_WORDS),
        triggers=("pass", "secret", "key", "credential"),
    ),
    RedactionRule(
        "email",
        "Email addresses.",
        "[EMAIL]",
        "pii",
        "jane.doe@example.com",
        _redact_emails,
        triggers=("@",),
    ),
    _rule(
        "iban",
        "International bank account numbers, validated with the mod-97 check.",
        "[IBAN]",
        "pii",
        "GB82 WEST 1234 5698 7654 32",
        r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"
        r"(?![A-Za-z0-9])",
        _iban,
        needs_digit=True,
    ),
    _rule(
        "payment_card",
        "Payment card numbers: 13-19 digits starting 2-6 (the card networks), optionally "
        "grouped with spaces or dashes, validated with the Luhn checksum.",
        "[CARD]",
        "pii",
        "4111 1111 1111 1111",
        # Not glued to letters either: hex ids and hashes hold long runs of decimal digits.
        r"[2-6](?<![\w-][2-6])(?<!\d[ -][2-6])"
        r"(?:\d{12,18}|\d{2,5}(?:[ -]\d{3,6}){2,5})(?![A-Za-z0-9])",
        _card,
        needs_digit=True,
    ),
    _rule(
        "us_ssn",
        "US social security numbers (`ddd-dd-dddd`, excluding areas 000, 666 and 9xx).",
        "[SSN]",
        "pii",
        "123-45-6789",
        r"[0-8]\d\d(?<![\w-]\d\d\d)(?<!000)(?<!666)-(?!00)\d\d-(?!0000)\d{4}(?![\w-])",
        needs_digit=True,
    ),
    _rule(
        "phone_international",
        "Phone numbers in international form (`+CC …`, 8-15 digits as in E.164).",
        "[PHONE]",
        "pii",
        "+44 20 7946 0958",
        # At least 8 digits ahead (cheap rejection of `+1`, `+05:30`), at most 15 groups.
        r"\+(?<![\w+]\+)[1-9](?=(?:[ .()-]{0,3}\d){7})\d{0,14}"
        r"(?:[ .-]?\(\d{1,4}\)[ .-]?\d{1,14}|[ .-]\d{1,14}){0,14}(?!\d)",
        _phone_with_digits(8, 15),
        triggers=("+",),
        needs_digit=True,
    ),
    _rule(
        "phone_north_american",
        "North American numbers: `(415) 555-2671`, `415-555-2671`, `415.555.2671`, "
        "`1-800-555-0199`.",
        "[PHONE]",
        "pii",
        "(415) 555-2671",
        rf"[(1-9](?<!{_NOT_AFTER}[(1-9])"
        r"(?:(?<=1)[ .-](?:\([2-9]\d\d\) ?|[2-9]\d\d[ .-])"  # 1-800-…
        r"|(?<=\()[2-9]\d\d\) ?"  # (415) …
        r"|(?<=[2-9])\d\d[ .-])"  # 415-…
        rf"\d{{3}}[ .-]\d{{4}}{_NOT_BEFORE}",
        needs_digit=True,
    ),
    _rule(
        "phone_national",
        "National numbers with a trunk 0, in groups (`020 7946 0958`, `01 23 45 67 89`), "
        "10-11 digits.",
        "[PHONE]",
        "pii",
        "020 7946 0958",
        rf"0(?<!{_NOT_AFTER}0)\d{{1,4}}(?:[ -]\d{{2,8}}){{1,5}}{_NOT_BEFORE}",
        _phone_with_digits(10, 11),
        needs_digit=True,
    ),
)

_CREDENTIAL_RULES = tuple(rule for rule in RULES if rule.kind == "credential")
PLACEHOLDERS: frozenset[str] = frozenset(rule.placeholder for rule in RULES)


# Every trigger at once: when none occurs in a text (the common case), no rule that needs
# one is tried. (A text containing any trigger matches this somewhere, so "no match" is
# exact; with a match each rule still checks its own triggers.)
_ANY_TRIGGER = re.compile(
    "|".join(sorted({re.escape(t) for rule in RULES for t in rule.triggers}, key=len))
)
# Short strings recur in logs (routes, event names, ids): their redaction is remembered.
_CACHED_CHARS = 256


def _run_rules(text: str, rules: tuple[RedactionRule, ...]) -> str:
    lowered = text.lower()
    has_digit = _DIGIT.search(text) is not None
    has_trigger = _ANY_TRIGGER.search(lowered) is not None
    for rule in rules:
        if rule.needs_digit and not has_digit:
            continue
        if rule.triggers and (
            not has_trigger or not any(trigger in lowered for trigger in rule.triggers)
        ):
            continue
        text = rule.apply(text)
    return text


@functools.lru_cache(maxsize=8192)
def _run_rules_cached(text: str, pii: bool) -> str:
    return _run_rules(text, RULES if pii else _CREDENTIAL_RULES)


def redact(text: str, *, pii: bool = True) -> str:
    """`text` with credentials and (unless `pii=False`) PII replaced by placeholders.

    Never raises: a non-string is stringified first, and if redaction itself fails the
    whole text is withheld rather than leaked.
    """
    try:
        if not isinstance(text, str):
            text = str(text)
        if len(text) <= _CACHED_CHARS:
            return _run_rules_cached(text, pii)
        return _run_rules(text, RULES if pii else _CREDENTIAL_RULES)
    except Exception:
        return FALLBACK


def is_secret_key(key: object) -> bool:
    """True when a mapping key names a credential (`password`, `api_key`, `set-cookie`…)."""
    return isinstance(key, str) and _is_secret_name(key)


@functools.lru_cache(maxsize=4096)
def _is_secret_name(key: str) -> bool:
    return _SECRET_KEY_NAME.search(key) is not None


def redact_value(obj: Any, *, pii: bool = True) -> Any:
    """A copy of `obj` with every string redacted and every secret-named key's value hidden.

    Walks mappings, lists, tuples and sets; other values come back as they are. Never raises.
    """
    try:
        return _redact_value(obj, pii, 0)
    except Exception:
        return FALLBACK


def _redact_value(obj: Any, pii: bool, depth: int) -> Any:
    if isinstance(obj, str):
        return redact(obj, pii=pii)
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if depth >= _MAX_DEPTH:
        # Too deep to be data anyone meant to log, or a cycle: withhold it.
        return FALLBACK
    if isinstance(obj, Mapping):
        # Keys are redacted too: data keyed by email address or phone number happens.
        return {
            _redact_value(key, pii, depth + 1): (
                secret_placeholder(value)
                if is_secret_key(key)
                else _redact_value(value, pii, depth + 1)
            )
            for key, value in obj.items()
        }
    if isinstance(obj, list | tuple | set | frozenset):
        items = [_redact_value(item, pii, depth + 1) for item in obj]
        if isinstance(obj, list):
            return items
        if isinstance(obj, tuple):
            return tuple(items)
        try:
            return frozenset(items) if isinstance(obj, frozenset) else set(items)
        except TypeError:  # an unhashable item came out of the walk
            return items
    return obj


def secret_placeholder(value: Any) -> Any:
    """What a secret-named key's value becomes; empties and flags reveal nothing, so stay."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value):
        return value
    return SECRET
