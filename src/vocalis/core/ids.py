"""Identifiers: sortable, prefixed, URL-safe."""

from __future__ import annotations

import base64
import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


# RFC 4648 base32 digits to Crockford's, digit for digit (A = 0 … 7 = 31).
_FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET)


def new_id(prefix: str) -> str:
    """A time-sortable id such as `agt_01h...`: 48-bit milliseconds + 80 random bits.

    The 10 + 16 characters are the 130-bit number `millis << 80 | random` in Crockford
    base32 (80 is a multiple of 5, so this equals `_b32(millis, 10) + _b32(random, 16)`),
    encoded by the C base32 codec: 20 bytes give 32 digits, the first 6 always zero."""
    millis = int(time.time() * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    digits = base64.b32encode(value.to_bytes(20, "big")).decode("ascii")
    return f"{prefix}_{digits[6:].translate(_FROM_RFC4648)}"
