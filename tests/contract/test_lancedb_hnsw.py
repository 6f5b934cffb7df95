"""The embedded store's in-process HNSW graphs (adapters/kb_vector_index.py), on real LanceDB.

Each test checks the graph path was taken (the store holds a graph for the knowledge base)
so a silent fall-back to LanceDB's own search cannot make it pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from vocalis.adapters.kb_vector_index import HnswSettings, KbIndex, index_file
from vocalis.adapters.lancedb_vector_store import LanceDBVectorStore
from vocalis.ports.vector_store import ChunkMetadata, ChunkRecord, FilterValue, QueryRequest

DIM = 16
ORG_A, ORG_B = "org_a", "org_b"
RNG = np.random.default_rng(5)
CENTRES = RNG.normal(size=(12, DIM))


def vectors(count: int, seed: int) -> np.ndarray:
    """Clustered vectors, like embeddings."""
    rng = np.random.default_rng(seed)
    out = CENTRES[rng.integers(0, len(CENTRES), count)] + rng.normal(0, 0.3, (count, DIM))
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def records(
    vecs: np.ndarray, prefix: str, kb_id: str = "kb_1", docs: int = 10, start: int = 0
) -> list[ChunkRecord]:
    return [
        ChunkRecord(
            id=f"{prefix}{start + i}",
            kb_id=kb_id,
            document_id=f"doc{(start + i) % docs}",
            document_name=f"doc{(start + i) % docs}.md",
            version=1,
            text=f"chunk {prefix}{start + i} about topic {(start + i) % 7}",
            vector=v.tolist(),
            metadata=ChunkMetadata(chunk_index=i, page=None, section=None),
        )
        for i, v in enumerate(vecs)
    ]


def new_store(path: Path, *, in_process_index: bool = True) -> LanceDBVectorStore:
    return LanceDBVectorStore(
        path,
        dimensions=DIM,
        hnsw=HnswSettings(persist_min_rows=100),
        in_process_index=in_process_index,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LanceDBVectorStore]:
    instance = new_store(tmp_path / "v")
    await instance.ensure_collection()
    yield instance
    await instance.close()


async def ids(
    store: LanceDBVectorStore,
    org_id: str,
    query: np.ndarray,
    kb_ids: Sequence[str] = ("kb_1",),
    top_k: int = 10,
    filters: dict[str, FilterValue] | None = None,
) -> list[str]:
    request = QueryRequest(
        vector=query.tolist(), kb_ids=list(kb_ids), top_k=top_k, alpha=1.0, filters=filters or {}
    )
    return [hit.id for hit in await store.query(org_id, request)]


def graph(store: LanceDBVectorStore, org_id: str, kb_id: str) -> KbIndex:
    assert store._indexes is not None
    return store._indexes._indexes[(org_id, kb_id)]


def exact(vecs: np.ndarray, names: Sequence[str], query: np.ndarray, k: int = 10) -> set[str]:
    return {names[i] for i in np.argsort(-(vecs @ query))[:k]}


async def test_results_match_exact_search(store: LanceDBVectorStore) -> None:
    vecs = vectors(600, seed=1)
    await store.upsert(ORG_A, records(vecs, "c"))
    names = [f"c{i}" for i in range(len(vecs))]
    for query in vectors(25, seed=2):
        assert set(await ids(store, ORG_A, query)) == exact(vecs, names, query)
    assert len(graph(store, ORG_A, "kb_1")) == 600


async def test_hybrid_scores_match_lancedb_search(tmp_path: Path) -> None:
    """Same candidates → same fused scores: the fusion is unchanged by the graph."""
    vecs = vectors(200, seed=3)
    indexed, plain = new_store(tmp_path / "v"), new_store(tmp_path / "v", in_process_index=False)
    await indexed.ensure_collection()
    await plain.ensure_collection()
    await indexed.upsert(ORG_A, records(vecs, "c"))
    for query in vectors(5, seed=4):
        request = QueryRequest(vector=query.tolist(), text="topic 3", kb_ids=["kb_1"], top_k=8)
        got = [(h.id, round(h.score, 5)) for h in await indexed.query(ORG_A, request)]
        want = [(h.id, round(h.score, 5)) for h in await plain.query(ORG_A, request)]
        assert got == want
    assert len(graph(indexed, ORG_A, "kb_1")) == 200
    await indexed.close()
    await plain.close()


async def test_graphs_never_mix_orgs_or_knowledge_bases(store: LanceDBVectorStore) -> None:
    vecs = vectors(120, seed=6)
    await store.upsert(ORG_A, records(vecs, "a", kb_id="kb_1"))
    await store.upsert(ORG_A, records(vecs, "k", kb_id="kb_2"))
    await store.upsert(ORG_B, records(vecs, "b", kb_id="kb_1"))
    await store.upsert(ORG_B, records(vecs[:5], "a", kb_id="kb_1", start=1000))  # same ids
    for query in vectors(5, seed=7):
        assert all(i.startswith("a") for i in await ids(store, ORG_A, query))
        assert all(i.startswith("k") for i in await ids(store, ORG_A, query, ["kb_2"]))
        found_b = await ids(store, ORG_B, query, top_k=50)
        assert all(i.startswith("b") or int(i[1:]) >= 1000 for i in found_b)
        both = await ids(store, ORG_A, query, ["kb_1", "kb_2"], top_k=20)
        assert {i[0] for i in both} <= {"a", "k"}
        assert await ids(store, ORG_B, query, ["kb_2"]) == []
    assert len(graph(store, ORG_A, "kb_1")) == 120
    assert len(graph(store, ORG_B, "kb_1")) == 125


async def test_deletes_and_upserts_are_seen_at_once(store: LanceDBVectorStore) -> None:
    vecs = vectors(300, seed=8)
    await store.upsert(ORG_A, records(vecs, "c"))
    query = vecs[17]
    assert (await ids(store, ORG_A, query))[0] == "c17"
    await store.delete_document(ORG_A, "doc7")  # c17 is in doc7
    found = await ids(store, ORG_A, query, top_k=50)
    assert not any(int(i[1:]) % 10 == 7 for i in found)
    assert len(graph(store, ORG_A, "kb_1")) == 270  # removed from the graph, not just hidden
    # Re-point an existing id and add a new one: both at the top at once.
    moved = records(np.stack([query, query]), "c", start=40)
    moved[1] = records(query[None, :], "new")[0]
    await store.upsert(ORG_A, moved)
    assert set((await ids(store, ORG_A, query))[:2]) == {"c40", "new0"}
    await store.delete_kb(ORG_A, "kb_1")
    assert await ids(store, ORG_A, query) == []


async def test_a_second_instance_sees_another_processes_writes(tmp_path: Path) -> None:
    writer, reader = new_store(tmp_path / "v"), new_store(tmp_path / "v")
    await writer.ensure_collection()
    await reader.ensure_collection()
    vecs = vectors(200, seed=9)
    await writer.upsert(ORG_A, records(vecs, "c"))
    assert (await ids(reader, ORG_A, vecs[3]))[0] == "c3"
    extra = vectors(1, seed=10)[0]
    await writer.upsert(ORG_A, records(extra[None, :], "late"))
    assert (await ids(reader, ORG_A, extra))[0] == "late0"
    await writer.delete_document(ORG_A, "doc3")
    assert "c3" not in await ids(reader, ORG_A, vecs[3], top_k=50)
    assert len(graph(reader, ORG_A, "kb_1")) == 181
    await writer.delete_kb(ORG_A, "kb_1")
    assert await ids(reader, ORG_A, vecs[3]) == []
    await writer.close()
    await reader.close()


async def test_filters_are_honoured(store: LanceDBVectorStore) -> None:
    vecs = vectors(300, seed=11)
    await store.upsert(ORG_A, records(vecs, "c"))
    for query in vectors(5, seed=12):
        found = await ids(store, ORG_A, query, filters={"document_id": "doc4"})
        assert found and all(int(i[1:]) % 10 == 4 for i in found)
        names = [f"c{i}" for i in range(4, 300, 10)]
        assert set(found) == exact(vecs[4::10], names, query)


async def test_graph_is_saved_and_reused_after_compaction_and_restart(tmp_path: Path) -> None:
    store = new_store(tmp_path / "v")
    await store.ensure_collection()
    vecs = vectors(400, seed=13)
    await store.upsert(ORG_A, records(vecs, "c"))
    assert (await ids(store, ORG_A, vecs[5]))[0] == "c5"
    assert index_file(tmp_path / "v" / "hnsw", ORG_A, "kb_1").exists()
    labels = graph(store, ORG_A, "kb_1").next_label
    # Compaction moves every row: row ids change, vectors do not, no node is re-added.
    await store.upsert(ORG_A, records(vectors(50, seed=14), "c", start=400))
    await store.optimize(cleanup_older_than=timedelta(0))
    assert (await ids(store, ORG_A, vecs[6]))[0] == "c6"
    assert graph(store, ORG_A, "kb_1").next_label == labels + 50
    await store.close()
    # Written while no reader is up; the saved graph is loaded and caught up.
    other = new_store(tmp_path / "v")
    await other.ensure_collection()
    await other.delete_document(ORG_A, "doc5")
    await other.close()
    again = new_store(tmp_path / "v")
    await again.ensure_collection()
    found = await ids(again, ORG_A, vecs[5], top_k=30)
    assert "c5" not in found and found
    assert graph(again, ORG_A, "kb_1").next_label == labels + 50  # loaded, not rebuilt
    await again.close()


async def test_a_graph_file_of_another_pair_is_not_loaded(tmp_path: Path) -> None:
    store = new_store(tmp_path / "v")
    await store.ensure_collection()
    await store.upsert(ORG_A, records(vectors(150, seed=15), "a"))
    await store.upsert(ORG_B, records(vectors(150, seed=16), "b"))
    await ids(store, ORG_A, vectors(1, seed=17)[0])
    await store.close()
    folder = tmp_path / "v" / "hnsw"
    index_file(folder, ORG_A, "kb_1").rename(index_file(folder, ORG_B, "kb_1"))
    again = new_store(tmp_path / "v")
    await again.ensure_collection()
    found = await ids(again, ORG_B, vectors(1, seed=18)[0], top_k=50)
    assert found and all(i.startswith("b") for i in found)
    assert set(graph(again, ORG_B, "kb_1").labels) == {f"b{i}" for i in range(150)}
    await again.close()


async def test_a_stale_row_id_never_returns_another_orgs_row(store: LanceDBVectorStore) -> None:
    """Hits are read back by row id; a row id that now points elsewhere is not trusted."""
    vecs = vectors(100, seed=19)
    await store.upsert(ORG_A, records(vecs, "c"))
    # The same chunk ids in org B (ids are unique per organisation only), other texts.
    await store.upsert(ORG_B, [replace(r, text="org b " + r.text) for r in records(vecs, "c")])
    query = vecs[8]
    assert (await ids(store, ORG_A, query))[0] == "c8"
    await ids(store, ORG_B, query)
    index_a, index_b = graph(store, ORG_A, "kb_1"), graph(store, ORG_B, "kb_1")
    # Point every org A chunk at the row of org B's twin (what a compaction racing the
    # query could do), without moving the table version.
    for chunk_id in index_a.row_ids:
        index_a.row_ids[chunk_id] = index_b.row_ids[chunk_id]
    hits = await store.query(ORG_A, QueryRequest(vector=query.tolist(), kb_ids=["kb_1"]))
    assert hits[0].id == "c8"
    assert all(h.text.startswith("chunk c") for h in hits)
