"""Retriever port: passages from an organisation's knowledge bases for a query.

The knowledge service implements it over the vector store; the agent runtime only sees
this interface. `InMemoryRetriever` (lexical overlap) serves tests and small setups;
`NullRetriever` answers nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk, with what a citation needs."""

    text: str
    document_id: str
    document_name: str
    chunk_id: str
    score: float = 0.0
    page: int | None = None
    section: str | None = None


@runtime_checkable
class Retriever(Protocol):
    """Finds the passages most relevant to a query."""

    async def retrieve(
        self, org_id: str, kb_ids: Sequence[str], query: str, top_k: int = 5
    ) -> list[Passage]:
        """Up to `top_k` passages from the given knowledge bases, best first."""
        ...


class NullRetriever:
    """A retriever with no knowledge: always answers nothing."""

    async def retrieve(
        self, org_id: str, kb_ids: Sequence[str], query: str, top_k: int = 5
    ) -> list[Passage]:
        """No passages."""
        return []


_WORD = re.compile(r"[a-z0-9]+")


def _terms(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2}


class InMemoryRetriever:
    """Passages held in memory per (org, knowledge base), ranked by word overlap."""

    def __init__(self) -> None:
        self._passages: dict[tuple[str, str], list[Passage]] = {}

    def add(self, org_id: str, kb_id: str, passages: Iterable[Passage]) -> None:
        """Store passages in one knowledge base of one organisation."""
        self._passages.setdefault((org_id, kb_id), []).extend(passages)

    async def retrieve(
        self, org_id: str, kb_ids: Sequence[str], query: str, top_k: int = 5
    ) -> list[Passage]:
        """Passages sharing words with the query, most shared first."""
        query_terms = _terms(query)
        if not query_terms:
            return []
        scored: list[Passage] = []
        for kb_id in kb_ids:
            for passage in self._passages.get((org_id, kb_id), []):
                overlap = len(query_terms & _terms(passage.text))
                if overlap:
                    score = overlap / len(query_terms)
                    scored.append(
                        Passage(
                            text=passage.text,
                            document_id=passage.document_id,
                            document_name=passage.document_name,
                            chunk_id=passage.chunk_id,
                            score=score,
                            page=passage.page,
                            section=passage.section,
                        )
                    )
        scored.sort(key=lambda p: p.score, reverse=True)
        return scored[:top_k]
