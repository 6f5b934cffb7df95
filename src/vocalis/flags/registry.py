"""The one registry of feature flags: typed, with defaults, read through `flag_value`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T", bool, int, float, str)


@dataclass(frozen=True)
class Flag(Generic[T]):
    """A feature flag: key, type (from the default), description and impact."""

    key: str
    default: T
    description: str
    impact: str

    @property
    def kind(self) -> type:
        """The Python type of the flag's value."""
        return type(self.default)


FLAGS: dict[str, Flag[Any]] = {}


def define(key: str, default: T, description: str, impact: str) -> Flag[T]:
    """Declare a flag once."""
    if key in FLAGS:
        raise ValueError(f"flag {key!r} defined twice")
    flag = Flag(key, default, description, impact)
    FLAGS[key] = flag
    return flag


RATE_LIMITING = define(
    "api.rate_limiting",
    True,
    "Per-API-key token-bucket rate limiting.",
    "Off: no 429s are produced; use only behind another limiter.",
)
PII_REDACTION_IN_TRANSCRIPTS = define(
    "transcripts.redaction",
    True,
    "Store a redacted copy of every message beside the original.",
    "Off: transcripts are stored only as spoken/typed.",
)
VOICE_RECORDING = define(
    "voice.recording",
    True,
    "Store each voice turn's user and agent audio (WAV) and link it from the messages.",
    "Off: no audio is kept; transcripts are still stored.",
)
