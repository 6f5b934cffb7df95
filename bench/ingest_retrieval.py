"""Ingestion throughput and retrieval latency of the embedded stack at 100k chunks.

    .venv/bin/python bench/ingest_retrieval.py [--chunks 100000] [--sample 512] [--json out.json]

1. Pipeline on a sample: synthetic Markdown documents go through sniff → extract → chunk
   (real tokenizer) → embed (real ONNX model) → index (LanceDB); chunks/s per stage and
   end to end.
2. Raw index throughput: `--chunks` chunks upserted through `LanceDBVectorStore.upsert`
   in batches, spread over 10 organisations x 5 knowledge bases; building the ANN and
   scalar indexes is timed separately. Embedding 100k chunks on 2 cores would take
   about half an hour, so these vectors are *derived*: each is one of the sample's real
   embeddings plus Gaussian noise, re-normalised (cosine ≈ 0.85 to its source). That keeps
   the clustered shape of real embeddings, which is what ANN recall depends on.
3. Retrieval latency: p50/p95 over `--queries` queries confined to one org and one
   knowledge base (as the agent's retriever queries), vector-only and hybrid, first by
   exact search, then with the IVF_HNSW_SQ index, whose recall@10 against exact search
   on the same filter is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.adapters.lancedb_vector_store import LanceDBVectorStore
from vocalis.adapters.onnx_embeddings import OnnxEmbedder
from vocalis.knowledge.chunking import Chunk, chunk_sections
from vocalis.knowledge.extract import extract
from vocalis.knowledge.sniff import sniff
from vocalis.ports.vector_store import ChunkMetadata, ChunkRecord, QueryRequest

ORGS = [f"org_bench{i}" for i in range(10)]
KBS = [f"kb_{i}" for i in range(5)]
WORDS = [
    "account",
    "refund",
    "invoice",
    "shipping",
    "device",
    "battery",
    "firmware",
    "warranty",
    "password",
    "session",
    "token",
    "webhook",
    "request",
    "limit",
    "cursor",
    "sandbox",
    "version",
    "backup",
    "region",
    "storage",
    "encryption",
    "policy",
    "employee",
    "leave",
    "budget",
    "office",
    "travel",
    "expense",
    "review",
    "salary",
    "training",
    "laptop",
    "customer",
    "order",
    "payment",
    "card",
    "plan",
    "seat",
    "trial",
    "discount",
    "support",
    "ticket",
    "incident",
    "status",
    "scanner",
    "charger",
    "network",
    "latency",
    "region",
    "cluster",
    "node",
    "replica",
    "index",
    "query",
    "vector",
    "search",
]


@contextmanager
def timed(spent: dict[str, float], stage: str) -> Iterator[None]:
    """Add the seconds spent in the block to `spent[stage]`."""
    started = time.perf_counter()
    yield
    spent[stage] = spent.get(stage, 0.0) + time.perf_counter() - started


def synthetic_document(rng: random.Random, sections: int) -> bytes:
    """A Markdown document of `sections` sections of 6-10 sentences each."""
    parts = [f"# Handbook {rng.randint(1, 10_000)}"]
    for s in range(sections):
        parts.append(f"## Topic {s} {rng.choice(WORDS)}")
        sentences = [
            " ".join(rng.choices(WORDS, k=rng.randint(8, 16))).capitalize() + "."
            for _ in range(rng.randint(6, 10))
        ]
        parts.append(" ".join(sentences))
    return "\n\n".join(parts).encode()


def records_for(
    org: str, kb: str, doc: str, chunks: list[Chunk], vectors: list[list[float]]
) -> list[ChunkRecord]:
    return [
        ChunkRecord(
            id=f"{doc}_{c.index}",
            kb_id=kb,
            document_id=doc,
            document_name=f"{doc}.md",
            version=1,
            text=c.text,
            vector=v,
            metadata=ChunkMetadata(chunk_index=c.index, page=c.page, section=c.heading),
        )
        for c, v in zip(chunks, vectors, strict=True)
    ]


async def pipeline_sample(
    embedder: OnnxEmbedder, store: LanceDBVectorStore, target_chunks: int, rng: random.Random
) -> tuple[dict[str, float], list[Chunk], np.ndarray[Any, Any]]:
    """Run the real pipeline until about `target_chunks` chunks were indexed."""
    spent: dict[str, float] = {}
    all_chunks: list[Chunk] = []
    all_vectors: list[list[float]] = []
    doc = 0
    while len(all_chunks) < target_chunks:
        data = synthetic_document(rng, sections=8)
        with timed(spent, "sniff+extract"):
            document = extract(data, sniff(data, "doc.md").type)
        with timed(spent, "chunk"):
            chunks = chunk_sections(document.sections, embedder.count_tokens)
        with timed(spent, "embed"):
            vectors = await embedder.embed([c.embedding_text() for c in chunks])
        with timed(spent, "index"):
            await store.upsert(ORGS[0], records_for(ORGS[0], KBS[0], f"s{doc}", chunks, vectors))
        all_chunks.extend(chunks)
        all_vectors.extend(vectors)
        doc += 1
    n = len(all_chunks)
    stats = {f"{stage}_chunks_per_s": n / seconds for stage, seconds in spent.items()}
    stats["end_to_end_chunks_per_s"] = n / sum(spent.values())
    stats["sample_chunks"] = n
    stats["mean_tokens_per_chunk"] = statistics.mean(c.token_count for c in all_chunks)
    return stats, all_chunks, np.asarray(all_vectors, dtype=np.float32)


def derived_vectors(
    sources: np.ndarray[Any, Any], count: int, noise: float, seed: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """`count` unit vectors, each a real embedding plus Gaussian noise, and their sources."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sources), size=count)
    vectors = sources[picks] + rng.normal(0, noise, size=(count, sources.shape[1]))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), picks


async def bulk_index(
    store: LanceDBVectorStore,
    vectors: np.ndarray[Any, Any],
    texts: list[str],
    batch: int,
) -> dict[str, float]:
    """Upsert every vector through the adapter, then build the indexes."""
    started = time.perf_counter()
    per_org = len(vectors) // len(ORGS)
    for o, org in enumerate(ORGS):
        rows = range(o * per_org, (o + 1) * per_org)
        for start in range(0, per_org, batch):
            records = [
                ChunkRecord(
                    id=f"c{i}",
                    kb_id=KBS[i % len(KBS)],
                    document_id=f"d{i // 40}",
                    document_name=f"d{i // 40}.md",
                    version=1,
                    text=texts[i % len(texts)],
                    vector=vectors[i],
                    metadata=ChunkMetadata(chunk_index=i % 40, page=None, section="Topic"),
                )
                for i in rows[start : start + batch]
            ]
            await store.upsert(org, records)
    upsert_s = time.perf_counter() - started
    total = per_org * len(ORGS)
    return {"chunks": total, "upsert_s": upsert_s, "upsert_chunks_per_s": total / upsert_s}


async def uses_ann_index(store: LanceDBVectorStore, vector: np.ndarray[Any, Any]) -> bool:
    """Whether an org+KB-scoped vector query is planned on the ANN index."""
    where = f"org_id = '{ORGS[0]}' AND kb_id = '{KBS[0]}'"
    plan = (
        await store._tbl().vector_search(vector).distance_type("cosine").where(where).explain_plan()
    )
    return "ANN" in plan or "Ivf" in plan or "HNSW" in plan.upper()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def latencies(
    store: LanceDBVectorStore,
    vectors: np.ndarray[Any, Any],
    queries: int,
    alpha: float,
    seed: int,
) -> dict[str, float]:
    """p50/p95 in ms of org+KB-scoped queries; recall@10 vs exact search when vector-only."""
    rng = np.random.default_rng(seed)
    per_org = len(vectors) // len(ORGS)
    timings: list[float] = []
    recalls: list[float] = []
    for q in range(queries):
        o = int(rng.integers(0, len(ORGS)))
        kb = int(rng.integers(0, len(KBS)))
        query = vectors[int(rng.integers(0, len(vectors)))] + rng.normal(0, 0.02, vectors.shape[1])
        query = (query / np.linalg.norm(query)).astype(np.float32)
        text = " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), size=4))
        request = QueryRequest(
            vector=query.tolist(), text=text, kb_ids=[KBS[kb]], top_k=10, alpha=alpha
        )
        started = time.perf_counter()
        results = await store.query(ORGS[o], request)
        timings.append((time.perf_counter() - started) * 1000)
        if alpha >= 1.0 and q < 50:
            ids = np.arange(o * per_org, (o + 1) * per_org)
            ids = ids[ids % len(KBS) == kb]
            exact = ids[np.argsort(-(vectors[ids] @ query))[:10]]
            recalls.append(len({f"c{i}" for i in exact} & {r.id for r in results}) / 10)
    stats = {
        "queries": queries,
        "p50_ms": percentile(timings, 50),
        "p95_ms": percentile(timings, 95),
        "mean_ms": statistics.mean(timings),
    }
    if recalls:
        stats["ann_recall_at_10"] = statistics.mean(recalls)
    return stats


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=512, help="chunks through the pipeline")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--noise", type=float, default=0.033)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    rng = random.Random(7)
    embedder = OnnxEmbedder(batch_size=16)
    embedder.load()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sample_store = LanceDBVectorStore(Path(tmp) / "sample", dimensions=embedder.dimensions)
        await sample_store.ensure_collection()
        results["pipeline"], chunks, sources = await pipeline_sample(
            embedder, sample_store, args.sample, rng
        )
        print("pipeline sample:", json.dumps(results["pipeline"], indent=1), flush=True)

        vectors, picks = derived_vectors(sources, args.chunks, args.noise, seed=11)
        results["derived_mean_cosine_to_source"] = float(
            np.mean(np.sum(vectors * sources[picks], axis=1))
        )
        store = LanceDBVectorStore(
            Path(tmp) / "bulk", dimensions=embedder.dimensions, ann_index_threshold=10**9
        )
        await store.ensure_collection()
        results["bulk_index"] = await bulk_index(
            store, vectors, [c.text for c in chunks], args.batch
        )
        print("bulk index:", json.dumps(results["bulk_index"], indent=1), flush=True)

        for phase in ("exact", "indexed"):
            if phase == "indexed":
                started = time.perf_counter()
                await store.build_indexes()
                results["bulk_index"]["build_indexes_s"] = time.perf_counter() - started
                results["plan_uses_ann_index"] = await uses_ann_index(store, vectors[0])
            for name, alpha in (("vector", 1.0), ("hybrid", 0.75)):
                key = f"retrieval_{phase}_{name}"
                results[key] = await latencies(store, vectors, args.queries, alpha, seed=13)
                print(f"{key}:", json.dumps(results[key], indent=1), flush=True)
        print(
            "build indexes:",
            results["bulk_index"]["build_indexes_s"],
            "s;",
            "ANN index in plan:",
            results["plan_uses_ann_index"],
        )
        await store.close()
        await sample_store.close()
    embedder.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
