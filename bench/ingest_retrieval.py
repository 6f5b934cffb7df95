"""Knowledge ingestion and retrieval: Vocalis beside LangChain + Chroma, in one run.

    .venv/bin/python bench/ingest_retrieval.py [--docs 40] [--scales 10000,100000]
        [--queries 200] [--json bench/results/ingest_retrieval.json]

Needs the `bench` extra (`pip install -e '.[bench]'`: langchain-text-splitters, chromadb).
Everything runs offline: Chroma never downloads its default model (see below).

1. Ingestion, end to end, of the same synthetic Markdown documents (bytes in, searchable
   chunks out), one document at a time, the stacks taking turns document by document (in
   rotating order) so a busy machine slows them alike:
   - `vocalis`: sniff → extract → normalise → token-aware chunking (200/40 tokens of the
     model's tokenizer) → `embed_and_index` from `vocalis.knowledge.ingest` (batches of 32,
     the ONNX embedder, LanceDB `upsert`). Not included: the object-store download and
     text copy, the database rows and the Redis embedding cache (it only saves work on a
     re-ingest, and none of these documents repeats).
   - `peer`: `RecursiveCharacterTextSplitter` (chunk size and overlap in characters,
     set to 200/40 tokens' worth of this corpus's characters) → Chroma `collection.add`
     (PersistentClient, cosine HNSW) with Chroma's own all-MiniLM-L6-v2 ONNX embedding
     function (`ONNXMiniLM_L6_V2`) — the path a Chroma user gets — loading *our* model
     and tokenizer files (same SHA-256) instead of downloading its copy.
   - `peer_vocalis_embedder`: the same peer, but with Vocalis's `OnnxEmbedder` passed as
     Chroma's embedding function, which isolates the stack from the embedder.
   Reported: chunks/s (wall) and chunks per CPU-second of this process, mean tokens per
   chunk; ratios of Vocalis to each peer.
2. Retrieval at each scale in `--scales`: the same vectors are loaded into both stores
   (Vocalis: `LanceDBVectorStore.upsert` with its production index policy — IVF_HNSW_SQ
   built past 50k rows for filtered queries, and the in-process HNSW graph of the
   knowledge base that unfiltered queries use, built by the first query and timed as
   `first_query_s`; Chroma: `collection.add` with embeddings, its default HNSW).
   Embedding 100k distinct chunks would take most of an hour on two shared cores, so the vectors are *derived*: each is one of the ingested chunks' real
   embeddings plus Gaussian noise, re-normalised (cosine ≈ 0.85 to its source), which
   keeps the clustered shape real embeddings have. Queries are real embeddings of short
   questions; every chunk is in one organisation and knowledge base, so each query ranks
   all of them. Reported: p50/p95 of the top-10 query through each stack's query API and
   recall@10 against exact search (numpy over all the vectors). `vocalis_hybrid` adds the
   question text (alpha 0.75, the default): its latency covers both halves; its "recall"
   is only the overlap with the vector-only top 10, not a quality measure.

The JSON records the load average before and after: read the ratios, not the absolutes,
on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from chromadb.config import Settings as ChromaSettings
from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2
from langchain_text_splitters import RecursiveCharacterTextSplitter

from vocalis.adapters.lancedb_vector_store import LanceDBVectorStore
from vocalis.adapters.onnx_embeddings import OnnxEmbedder, installed_model_files
from vocalis.knowledge.chunking import ChunkingOptions, chunk_sections
from vocalis.knowledge.extract import extract
from vocalis.knowledge.ingest import StageClock, VersionRef, embed_and_index, normalise_sections
from vocalis.knowledge.sniff import sniff
from vocalis.ports.knowledge import KnowledgeEngines
from vocalis.ports.vector_store import ChunkMetadata, ChunkRecord, QueryRequest

ORG = "org_bench"
KB = "kb_bench"
CHUNK_TOKENS, OVERLAP_TOKENS, EMBED_BATCH = 200, 40, 32  # the settings' defaults
ANN_INDEX_THRESHOLD = (
    inspect.signature(LanceDBVectorStore).parameters["ann_index_threshold"].default
)
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
    "cluster",
    "node",
    "replica",
    "index",
    "query",
    "vector",
    "search",
]


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


_CHECKPOINT: dict[str, Any] = {}


def checkpoint(_: Any = None) -> None:
    """Write the results gathered so far (a slow run that is cut short keeps them)."""
    path, results = _CHECKPOINT.get("path"), _CHECKPOINT.get("results")
    if path is not None and results is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@contextmanager
def metered(totals: dict[str, float]) -> Iterator[None]:
    """Add the block's wall and process-CPU seconds to `totals`."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    totals["wall_s"] = totals.get("wall_s", 0.0) + time.perf_counter() - wall
    totals["cpu_s"] = totals.get("cpu_s", 0.0) + time.process_time() - cpu


# --- the peer's pieces ------------------------------------------------------------------
class LocalChromaOnnx(ONNXMiniLM_L6_V2):
    """Chroma's stock ONNX MiniLM embedding function, reading Vocalis's verified files.

    Everything but the file location is Chroma's code (tokenize one by one, pad to 256,
    batches of 32, default session threads); the download step is switched off.
    """

    def __init__(self, folder: Path) -> None:
        super().__init__(preferred_providers=["CPUExecutionProvider"])
        self.DOWNLOAD_PATH = folder

    def _download_model_if_not_exists(self) -> None:
        return None


def local_chroma_onnx(tmp: Path) -> LocalChromaOnnx:
    files = installed_model_files()
    folder = tmp / "chroma-model"
    (folder / "onnx").mkdir(parents=True)
    (folder / "onnx" / "model.onnx").symlink_to(files.model)
    (folder / "onnx" / "tokenizer.json").symlink_to(files.tokenizer)
    return LocalChromaOnnx(folder)


class VocalisEmbeddingFunction(chromadb.EmbeddingFunction[chromadb.Documents]):
    """Vocalis's `OnnxEmbedder` as a Chroma embedding function."""

    def __init__(self, embedder: OnnxEmbedder) -> None:
        self._embedder = embedder

    def __call__(self, input: chromadb.Documents) -> chromadb.Embeddings:
        return list(self._embedder.embed_array(list(input)))

    @staticmethod
    def name() -> str:
        return "vocalis-onnx"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> VocalisEmbeddingFunction:
        raise NotImplementedError


def chroma_client(path: Path) -> Any:
    return chromadb.PersistentClient(
        path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
    )


# --- 1. ingestion -----------------------------------------------------------------------
class VocalisIngest:
    name = "vocalis"

    def __init__(self, embedder: OnnxEmbedder, store: LanceDBVectorStore) -> None:
        self.engines = KnowledgeEngines(embedder, embedder.count_tokens, store)
        self.options = ChunkingOptions(max_tokens=CHUNK_TOKENS, overlap_tokens=OVERLAP_TOKENS)
        self.totals: dict[str, float] = {}
        self.chunks = 0
        self.tokens = 0
        self.texts: list[str] = []

    async def ingest(self, number: int, data: bytes) -> None:
        with metered(self.totals):
            document = extract(data, sniff(data, None).type)
            chunks = chunk_sections(
                normalise_sections(document), self.engines.count_tokens, self.options
            )
            ref = VersionRef(ORG, KB, f"doc{number}", 1, f"doc{number}.md", "")
            await embed_and_index(ref, chunks, self.engines, StageClock(), EMBED_BATCH)
        self.chunks += len(chunks)
        self.tokens += sum(c.token_count for c in chunks)
        self.texts.extend(c.embedding_text() for c in chunks)


class PeerIngest:
    def __init__(
        self, name: str, client: Any, embedding_function: Any, chunk_chars: int, overlap: int
    ) -> None:
        self.name = name
        self.splitter = RecursiveCharacterTextSplitter(
            chunk_size=chunk_chars, chunk_overlap=overlap
        )
        self.collection = client.create_collection(
            name,
            embedding_function=embedding_function,
            configuration={"hnsw": {"space": "cosine"}},
        )
        self.totals: dict[str, float] = {}
        self.chunks = 0
        self.pieces: list[str] = []

    async def ingest(self, number: int, data: bytes) -> None:
        with metered(self.totals):
            pieces = self.splitter.split_text(data.decode("utf-8"))
            self.collection.add(
                ids=[f"doc{number}_{k}" for k in range(len(pieces))],
                documents=pieces,
                metadatas=[
                    {"kb_id": KB, "document_id": f"doc{number}", "chunk_index": k}
                    for k in range(len(pieces))
                ],
            )
        self.chunks += len(pieces)
        self.pieces.extend(pieces)


def ingest_stats(stack: Any, counter: OnnxEmbedder) -> dict[str, float]:
    tokens = (
        stack.tokens
        if isinstance(stack, VocalisIngest)
        else sum(counter.count_tokens(stack.pieces))
    )
    return {
        "chunks": stack.chunks,
        "mean_tokens_per_chunk": tokens / max(1, stack.chunks),
        "wall_s": stack.totals["wall_s"],
        "cpu_s": stack.totals["cpu_s"],
        "chunks_per_s": stack.chunks / stack.totals["wall_s"],
        "chunks_per_cpu_s": stack.chunks / stack.totals["cpu_s"],
        "tokens_per_s": tokens / stack.totals["wall_s"],
    }


async def run_ingestion(
    tmp: Path, embedder: OnnxEmbedder, documents: list[bytes]
) -> tuple[dict[str, Any], list[str]]:
    # Chunk size in characters worth 200/40 tokens of this corpus, for the character splitter.
    sample = b"\n\n".join(documents[:5]).decode()
    chars_per_token = len(sample) / sum(embedder.count_tokens([sample]))
    chunk_chars = round(CHUNK_TOKENS * chars_per_token)
    overlap_chars = round(OVERLAP_TOKENS * chars_per_token)

    store = LanceDBVectorStore(tmp / "ingest-lancedb", dimensions=embedder.dimensions)
    await store.ensure_collection()
    client = chroma_client(tmp / "ingest-chroma")
    stacks: list[Any] = [
        VocalisIngest(embedder, store),
        PeerIngest("peer", client, local_chroma_onnx(tmp), chunk_chars, overlap_chars),
        PeerIngest(
            "peer_vocalis_embedder",
            client,
            VocalisEmbeddingFunction(embedder),
            chunk_chars,
            overlap_chars,
        ),
    ]
    # Warm-up outside the clock: load both ONNX sessions.
    embedder.embed_sync(["warm up"])
    stacks[1].collection._embedding_function(["warm up"])
    for number, data in enumerate(documents):
        for k in range(len(stacks)):
            stack = stacks[(number + k) % len(stacks)]
            await stack.ingest(number, data)
        if number % 10 == 9:
            print(f"  ingested {number + 1}/{len(documents)} documents", flush=True)
    await store.close()
    results: dict[str, Any] = {
        "documents": len(documents),
        "document_bytes": sum(len(d) for d in documents),
        "peer_chunk_chars": chunk_chars,
        "peer_chunk_overlap_chars": overlap_chars,
    }
    for stack in stacks:
        results[stack.name] = ingest_stats(stack, embedder)
    ours = results["vocalis"]
    for peer in ("peer", "peer_vocalis_embedder"):
        results[f"ratio_vs_{peer}"] = {
            "chunks_per_s": ours["chunks_per_s"] / results[peer]["chunks_per_s"],
            "chunks_per_cpu_s": ours["chunks_per_cpu_s"] / results[peer]["chunks_per_cpu_s"],
            "tokens_per_s": ours["tokens_per_s"] / results[peer]["tokens_per_s"],
        }
    return results, stacks[0].texts


# --- 2. retrieval -----------------------------------------------------------------------
def derived_vectors(
    sources: np.ndarray[Any, Any], count: int, noise: float, seed: int
) -> np.ndarray[Any, Any]:
    """`count` unit vectors, each a real embedding plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sources), size=count)
    vectors = sources[picks] + rng.normal(0, noise, size=(count, sources.shape[1]))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def question_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    forms = ["How do I {} my {}?", "What is the {} {} policy?", "Why did the {} {} fail?"]
    return [
        rng.choice(forms).format(*rng.sample(WORDS, 2)) + " " + " ".join(rng.sample(WORDS, 2))
        for _ in range(count)
    ]


def exact_top10(vectors: np.ndarray[Any, Any], queries: np.ndarray[Any, Any]) -> list[set[int]]:
    scores = queries @ vectors.T
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    return [set(map(int, row)) for row in top]


async def vocalis_load(
    store: LanceDBVectorStore, vectors: np.ndarray[Any, Any], start: int, texts: list[str]
) -> None:
    for first in range(start, len(vectors), 5_000):
        records = [
            ChunkRecord(
                id=f"c{i}",
                kb_id=KB,
                document_id=f"d{i // 40}",
                document_name=f"d{i // 40}.md",
                version=1,
                text=texts[i % len(texts)],
                vector=vectors[i],
                metadata=ChunkMetadata(chunk_index=i % 40, page=None, section="Topic"),
            )
            for i in range(first, min(first + 5_000, len(vectors)))
        ]
        await store.upsert(ORG, records)


def chroma_load(
    collection: Any, vectors: np.ndarray[Any, Any], start: int, texts: list[str], batch: int
) -> None:
    for first in range(start, len(vectors), batch):
        rows = range(first, min(first + batch, len(vectors)))
        collection.add(
            ids=[f"c{i}" for i in rows],
            embeddings=vectors[first : rows.stop],
            documents=[texts[i % len(texts)] for i in rows],
            metadatas=[{"kb_id": KB, "document_id": f"d{i // 40}"} for i in rows],
        )


async def timed_queries(
    run_query: Any, queries: np.ndarray[Any, Any], truth: list[set[int]]
) -> dict[str, float]:
    timings: list[float] = []
    recalls: list[float] = []
    cpu = time.process_time()
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        ids = await run_query(query)
        timings.append((time.perf_counter() - started) * 1000)
        recalls.append(len(expected & {int(i[1:]) for i in ids}) / 10)
    return {
        "queries": len(queries),
        "p50_ms": percentile(timings, 50),
        "p95_ms": percentile(timings, 95),
        "mean_ms": statistics.mean(timings),
        # Process CPU (all threads) per query, recall check included: less load-dependent.
        "cpu_ms_per_query": (time.process_time() - cpu) * 1000 / len(queries),
        "recall_at_10": statistics.mean(recalls),
    }


async def run_retrieval(
    tmp: Path,
    embedder: OnnxEmbedder,
    sources: np.ndarray[Any, Any],
    texts: list[str],
    scales: list[int],
    query_count: int,
    results: dict[str, Any],
) -> None:
    vectors = derived_vectors(sources, max(scales), noise=0.033, seed=11)
    queries = embedder.embed_array(question_texts(query_count, seed=13))
    # The automatic index policy (build past 50k rows, fold in every 10k) is replaced by
    # one build after each bulk load: the same index, without rebuilding it five times.
    store = LanceDBVectorStore(
        tmp / "scale-lancedb", dimensions=embedder.dimensions, ann_index_threshold=10**9
    )
    await store.ensure_collection()
    client = chroma_client(tmp / "scale-chroma")
    collection = client.create_collection(
        "scale", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    chroma_batch = min(5_000, client.get_max_batch_size())

    async def vocalis_query(query: np.ndarray[Any, Any]) -> list[str]:
        request = QueryRequest(vector=query.tolist(), kb_ids=[KB], top_k=10, alpha=1.0)
        return [hit.id for hit in await store.query(ORG, request)]

    texts_by_query = dict(
        zip(map(bytes, queries), question_texts(query_count, seed=13), strict=True)
    )

    async def vocalis_hybrid_query(query: np.ndarray[Any, Any]) -> list[str]:
        request = QueryRequest(
            vector=query.tolist(), text=texts_by_query[bytes(query)], kb_ids=[KB], top_k=10
        )
        return [hit.id for hit in await store.query(ORG, request)]

    async def peer_query(query: np.ndarray[Any, Any]) -> list[str]:
        found = collection.query(query_embeddings=[query], n_results=10, where={"kb_id": KB})
        return list(found["ids"][0])

    results["queries"] = "real embeddings of short questions"
    loaded = 0
    for scale in sorted(scales):
        print(f"  loading {scale} vectors into both stores", flush=True)
        entry: dict[str, Any] = {}
        started = time.perf_counter()
        await vocalis_load(store, vectors[:scale], loaded, texts)
        if scale >= ANN_INDEX_THRESHOLD:
            await store.build_indexes()
        entry["vocalis_load_s"] = time.perf_counter() - started
        started = time.perf_counter()
        chroma_load(collection, vectors[:scale], loaded, texts, chroma_batch)
        entry["peer_load_s"] = time.perf_counter() - started
        loaded = scale
        truth = exact_top10(vectors[:scale], queries)
        # Warm both (first query opens files and builds Vocalis's graph), then time each.
        started = time.perf_counter()
        await vocalis_query(queries[0])
        entry["first_query_s"] = time.perf_counter() - started
        await peer_query(queries[0])
        entry["vocalis"] = await timed_queries(vocalis_query, queries, truth)
        entry["peer"] = await timed_queries(peer_query, queries, truth)
        entry["vocalis_hybrid"] = await timed_queries(vocalis_hybrid_query, queries, truth)
        entry["vocalis_index"] = sorted(i.name for i in await store._tbl().list_indices())
        results[str(scale)] = entry
        print(f"  {scale}: {json.dumps(entry)}", flush=True)
        checkpoint(results)
    await store.close()


# --- main -------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "chromadb": chromadb.__version__,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=40, help="documents ingested per stack")
    parser.add_argument("--scales", default="10000,100000", help="chunks in the stores")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "ingest_retrieval.json"
    )
    args = parser.parse_args()

    results: dict[str, Any] = {"machine": machine(), "load_average_before": os.getloadavg()}
    _CHECKPOINT.update(path=args.json, results=results)
    rng = random.Random(7)
    documents = [synthetic_document(rng, sections=8) for _ in range(args.docs)]
    embedder = OnnxEmbedder(batch_size=EMBED_BATCH)
    embedder.load()
    results["embedder"] = {"streams": embedder.streams, "model": embedder.model_id}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        print(f"ingesting {args.docs} documents per stack", flush=True)
        results["ingestion"], texts = await run_ingestion(tmp, embedder, documents)
        print(json.dumps(results["ingestion"], indent=1), flush=True)
        results["load_average_after_ingestion"] = os.getloadavg()
        checkpoint()
        sources = embedder.embed_array(texts)
        scales = [int(s) for s in args.scales.split(",")]
        results["retrieval"] = {}
        await run_retrieval(
            tmp, embedder, sources, texts, scales, args.queries, results["retrieval"]
        )
    results["load_average_after"] = os.getloadavg()
    largest = results["retrieval"][str(max(scales))]["vocalis"]
    results["targets"] = {
        "ingest_ratio_vs_peer": results["ingestion"]["ratio_vs_peer"]["chunks_per_s"],
        "ingest_2x_peer": results["ingestion"]["ratio_vs_peer"]["chunks_per_s"] >= 2.0,
        "ingest_ratio_vs_peer_vocalis_embedder": results["ingestion"][
            "ratio_vs_peer_vocalis_embedder"
        ]["chunks_per_s"],
        f"p95_le_20ms_at_{max(scales)}": largest["p95_ms"] <= 20.0,
        f"recall_ge_0.95_at_{max(scales)}": largest["recall_at_10"] >= 0.95,
    }
    print("targets:", json.dumps(results["targets"], indent=1))
    embedder.close()
    checkpoint()


if __name__ == "__main__":
    asyncio.run(main())
