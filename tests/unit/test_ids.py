"""`new_id` (issue 11: encoded by the C base32 codec) writes exactly what the digit-by-digit
Crockford encoding writes: time-sortable, 26 lower-case digits after the prefix."""

from __future__ import annotations

import random
import re
from unittest import mock

from vocalis.core import ids


def test_new_id_is_the_crockford_encoding_of_the_time_and_the_random_bits() -> None:
    rng = random.Random(11)
    for millis in (0, 1, (1 << 48) - 1, *(rng.getrandbits(48) for _ in range(500))):
        rand = rng.getrandbits(80)
        with (
            mock.patch.object(ids.time, "time", return_value=millis / 1000 + 0.0004),
            mock.patch.object(ids.os, "urandom", return_value=rand.to_bytes(10, "big")),
        ):
            made = ids.new_id("msg")
        assert made == f"msg_{ids._b32(millis, 10)}{ids._b32(rand, 16)}"


def test_new_ids_are_well_formed_distinct_and_sortable_by_time() -> None:
    made = [ids.new_id("agt") for _ in range(2000)]
    assert all(re.fullmatch(r"agt_[0-9a-hjkmnp-tv-z]{26}", m) for m in made)
    assert len(set(made)) == len(made)
    with mock.patch.object(ids.time, "time", return_value=1_000.0):
        earlier = ids.new_id("x")
    with mock.patch.object(ids.time, "time", return_value=1_000.002):
        later = ids.new_id("x")
    assert earlier < later
