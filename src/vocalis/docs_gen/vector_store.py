"""Generated reference: the vector-store schema, embedding strategy and query templates.

Everything here is read from the code that uses it: `CHUNK_FIELDS` (the port), the
Weaviate adapter's `collection_properties()`, the LanceDB adapter's Arrow schema, the
chunking and retrieval defaults in `Settings`, and the chunk-id scheme of ingestion.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from vocalis.adapters.kb_vector_index import HnswSettings
from vocalis.adapters.lancedb_vector_store import TABLE_NAME, LanceDBVectorStore, chunk_schema
from vocalis.adapters.onnx_embeddings import DEFAULT_BATCH_TOKENS, DIMENSIONS, MAX_TOKENS, MODEL_ID
from vocalis.adapters.weaviate_vector_store import (
    COLLECTION_NAME,
    VECTOR_NAME,
    collection_properties,
)
from vocalis.knowledge.ingest import chunk_id
from vocalis.ports.vector_store import CHUNK_FIELDS, FILTERABLE_FIELDS
from vocalis.settings import Settings


def _cell(value: Any) -> str:
    return ("" if value is None else str(value)).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


def _weaviate_section() -> str:
    rows = []
    for prop in collection_properties():
        data_type = getattr(prop.dataType, "value", prop.dataType)
        tokenization = getattr(prop.tokenization, "value", prop.tokenization)
        rows.append(
            [
                f"`{prop.name}`",
                f"`{data_type}`",
                "yes" if prop.indexFilterable else "no",
                "yes" if prop.indexSearchable else "no",
                f"`{tokenization}`" if tokenization else "",
                prop.description,
            ]
        )
    return (
        f"## Weaviate collection `{COLLECTION_NAME}`\n\n"
        "- Multi-tenancy on; **the organisation id is the tenant** (auto-created and "
        "auto-activated on first write). Every read, write and delete names the tenant, so "
        "one organisation's chunks are a separate shard, never a filtered subset.\n"
        f"- No vectorizer: vectors are supplied by Vocalis in the named vector `{VECTOR_NAME}` "
        "(HNSW, cosine distance).\n"
        "- Inverted index with null state (so `page`/`section` can be filtered as null).\n"
        "- Object UUID: UUIDv5 of the chunk id, so re-indexing a chunk replaces it.\n\n"
        + _table(["Property", "Type", "Filterable", "BM25", "Tokenization", "Description"], rows)
    )


_HNSW = HnswSettings()


def _ann_threshold() -> int:
    default = inspect.signature(LanceDBVectorStore).parameters["ann_index_threshold"].default
    return int(default)


def _lancedb_section() -> str:
    schema = chunk_schema(DIMENSIONS)
    described = {spec.name: spec.description for spec in CHUNK_FIELDS}
    described.update(
        {
            "org_id": "Owning organisation; every query and delete is prefiltered on it.",
            "id": "The chunk id (`chunk_id` in Weaviate); unique with `org_id`.",
            "vector": f"The embedding ({DIMENSIONS} float32 with the default model).",
        }
    )
    rows = [
        [f"`{f.name}`", f"`{f.type}`", "yes" if f.nullable else "no", described.get(f.name, "")]
        for f in schema
    ]
    return (
        f"## LanceDB table `{TABLE_NAME}` (embedded default)\n\n"
        "- One table for every organisation, in `VOCALIS_KNOWLEDGE_LANCEDB_PATH` (default "
        "`<data dir>/lancedb`). Isolation is a prefilter `org_id = '<org>'` applied before "
        "ranking, with escaped literals and allow-listed column names.\n"
        "- Indexes: native full-text (BM25) on `text` from the start; past "
        f"{_ann_threshold():,} rows an "
        "IVF_HNSW_SQ vector index (cosine) and B-tree indexes on `org_id`, `kb_id`, "
        "`document_id` (used by filtered queries and queries over every knowledge base).\n"
        "- The vector half of a query that names its knowledge bases and has no other "
        "filter runs on an in-process usearch HNSW graph per (organisation, knowledge base) "
        f"(cosine, f16 copies of the vectors, connectivity {_HNSW.connectivity}, "
        f"`ef` {_HNSW.expansion_search}); hits are read back from the table by row id and "
        "checked against organisation, knowledge base and chunk id. The graph catches up "
        "with the table whenever the table version moves (writes of any process); graphs of "
        f"knowledge bases of at least {_HNSW.persist_min_rows:,} chunks are saved under "
        "`<lancedb dir>/hnsw/`.\n"
        "- Upsert is `merge_insert` on (`org_id`, `id`).\n\n"
        + _table(["Column", "Arrow type", "Nullable", "Description"], rows)
    )


def _embedding_section() -> str:
    return (
        "## Embedding strategy\n\n"
        f"- Default model: `{MODEL_ID}` (all-MiniLM-L6-v2, int8 ONNX on onnxruntime, "
        f"{DIMENSIONS} dimensions, inputs truncated at {MAX_TOKENS} tokens, mean pooling, L2 "
        "normalised); its files are verified by SHA-256 before loading. With "
        "`VOCALIS_KNOWLEDGE_EMBEDDER=openai`, any OpenAI-compatible `/v1/embeddings` endpoint "
        "(`VOCALIS_KNOWLEDGE_OPENAI_EMBEDDING_MODEL`, "
        f"default `{_default('knowledge_openai_embedding_model')}`). Changing the model "
        "changes the vector space: re-index (a new data dir or collection).\n"
        f"- Chunks: at most {_default('knowledge_chunk_tokens')} tokens of the embedding "
        f"model's tokenizer, {_default('knowledge_chunk_overlap_tokens')} tokens of overlap, "
        "packed by sentence and never crossing a section, so each chunk keeps one page and "
        "one heading (`page`, `section`).\n"
        "- What is embedded: the chunk's heading path and its text "
        "(`Heading > Subheading\\n<text>`); what is stored and BM25-indexed: the text.\n"
        f"- Batches of {_default('knowledge_embedding_batch_size')} chunks are embedded, "
        "and each is indexed while the next is embedded. The ONNX embedder sorts a batch by "
        f"token length, runs it as small batches of at most {DEFAULT_BATCH_TOKENS} padded "
        "tokens (each padded to its own longest text) on one single-core inference stream "
        "per CPU (at most 8), with ONNX Runtime's spin-waiting off. Vectors are cached in "
        "Redis by model and SHA-256 of the text (`vocalis:emb:{model}:{sha256}`), so "
        "re-uploads and repeated queries reuse them.\n"
        f"- Chunk ids: `{chunk_id('<document_id>', 1, 7)}` for chunk 7 of version 1 "
        "(document, version, zero-padded position): re-running ingestion overwrites, never "
        "duplicates.\n"
        "- Versions: a re-upload indexes version n+1 next to version n; queries keep "
        "seeing version n (chunks of other versions are dropped by checking each hit "
        "against the document's `indexed_version`) until n+1 is ready, then version n's "
        "chunks and files are deleted.\n"
    )


def _query_section() -> str:
    alpha = _default("knowledge_hybrid_alpha")
    example = {
        "query": "How long do refunds take?",
        "top_k": 5,
        "filters": {"document_name": "refund-policy.pdf", "page": [1, 2]},
        "score_threshold": 0.2,
        "mmr": True,
    }
    weaviate = (
        'collection.with_tenant("<org_id>").query.hybrid(\n'
        '    query="<text>", vector=<query vector>, target_vector="chunk",\n'
        f"    alpha={alpha}, fusion_type=HybridFusion.RELATIVE_SCORE,\n"
        '    query_properties=["text"],\n'
        '    filters=Filter.all_of([Filter.by_property("kb_id").contains_any([...]),\n'
        '                           Filter.by_property("page").equal(3)]),\n'
        "    limit=<top_k x 2>, return_metadata=MetadataQuery(score=True))"
    )
    lancedb = (
        "# no filter but kb_ids: the knowledge bases' HNSW graphs, then\n"
        "table.take_row_ids(<row ids of the nearest chunks>)\n"
        "# with a filter (or no kb_ids):\n"
        'table.vector_search(<query vector>).distance_type("cosine")\n'
        "     .where(\"org_id = '<org>' AND kb_id IN ('<kb>', ...) AND page = 3\")"
        ".limit(<candidates>)\n"
        'table.query().nearest_to_text("<text>", columns="text")\n'
        "     .where(<the same predicate>).limit(<candidates>)\n"
        "# then relative-score fusion: min-max normalise both, "
        f"{alpha} x vector + {1 - alpha:g} x BM25"
    )
    return (
        "## Query templates\n\n"
        "`POST /v1/knowledge-bases/{id}/query` and the agent's retriever embed the query "
        "(`rag.embed`), run one hybrid search (`rag.retrieve`) confined to the caller's "
        "organisation and knowledge bases, drop chunks that are not their document's "
        "indexed version, optionally re-rank with MMR, and cut to `top_k`.\n\n"
        f"Request:\n\n```json\n{json.dumps(example, indent=2)}\n```\n\n"
        f"Filterable fields: {', '.join(f'`{name}`' for name in FILTERABLE_FIELDS)} (a list "
        "means any of). Scores are in [0, 1]: with hybrid search they are relative to the "
        "candidates (relative-score fusion), with `alpha` 1 they are the cosine similarity.\n\n"
        f"Weaviate (v4 client):\n\n```python\n{weaviate}\n```\n\n"
        f"LanceDB:\n\n```python\n{lancedb}\n```\n"
    )


def vector_store_schema() -> str:
    """The vector-store reference page (`docs/reference/vector-store.md`)."""
    return "\n".join(
        [
            "# Vector store schema\n",
            "Chunks of every knowledge base live in one vector store: LanceDB (embedded "
            "default) or Weaviate (`VOCALIS_KNOWLEDGE_VECTOR_STORE`). Both adapters build "
            "their schema from the same field list and pass the same contract suite.\n",
            _weaviate_section(),
            _lancedb_section(),
            _embedding_section(),
            _query_section(),
        ]
    )
