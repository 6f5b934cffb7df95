"""LanceDB hybrid fusion and filter literals: pure functions, no table needed."""

from __future__ import annotations

import pytest

from vocalis.adapters.lancedb_vector_store import fused_scores, sql_literal


def test_pure_vector_scores_are_absolute_cosine_similarities() -> None:
    assert fused_scores([0.9, 0.2, -0.3], [None, 5.0, None], alpha=1.0) == [0.9, 0.2, 0.0]


def test_hybrid_scores_min_max_normalise_each_signal() -> None:
    scores = fused_scores([0.8, 0.6, 0.4], [None, 4.0, 2.0], alpha=0.5)
    # vector: 1, 0.5, 0 | keyword: 0 (absent), 1, 0
    assert scores == pytest.approx([0.5, 0.75, 0.0])


def test_pure_keyword_scores_ignore_vectors() -> None:
    assert fused_scores([0.9, 0.1], [1.0, 3.0], alpha=0.0) == pytest.approx([0.0, 1.0])


def test_a_single_candidate_is_fully_relevant_on_each_signal() -> None:
    assert fused_scores([0.3], [2.0], alpha=0.75) == [1.0]


def test_string_literals_double_their_quotes() -> None:
    assert sql_literal("O'Brien") == "'O''Brien'"


def test_integer_literals_are_plain_numbers() -> None:
    assert sql_literal(42) == "42"


@pytest.mark.parametrize("value", [True, 1.5, None, "nul\x00byte"])
def test_other_literals_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        sql_literal(value)  # type: ignore[arg-type]
