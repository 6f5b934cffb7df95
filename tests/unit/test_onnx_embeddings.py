"""The offline ONNX embedder: verified files, normalised vectors, batching, no blocking."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.embeddings import onnx_embedder  # noqa: F401  (fixture)
from vocalis.adapters.onnx_embeddings import (
    DIMENSIONS,
    ModelFilesMissing,
    ModelIntegrityError,
    OnnxEmbedder,
    OnnxModelFiles,
    installed_model_files,
    plan_batches,
)
from vocalis.ports.embeddings import Embedder


async def test_it_satisfies_the_port(onnx_embedder: OnnxEmbedder) -> None:  # noqa: F811
    assert isinstance(onnx_embedder, Embedder)
    assert onnx_embedder.dimensions == DIMENSIONS == 384


async def test_vectors_have_unit_length(onnx_embedder: OnnxEmbedder) -> None:  # noqa: F811
    vectors = np.array(await onnx_embedder.embed(["hello world", "a much longer sentence " * 40]))
    assert vectors.shape == (2, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)


async def test_paraphrases_are_closer_than_unrelated_texts(onnx_embedder: OnnxEmbedder) -> None:  # noqa: F811
    cat, feline, revenue = np.array(
        await onnx_embedder.embed(
            ["The cat sleeps on the sofa.", "A kitten naps on the couch.", "Revenue rose 4%."]
        )
    )
    assert cat @ feline > cat @ revenue + 0.3


async def test_batching_does_not_change_vectors(onnx_embedder: OnnxEmbedder) -> None:  # noqa: F811
    texts = [f"sentence {i} " + "word " * (i * 7) for i in range(10)]
    together = np.array(await onnx_embedder.embed(texts))
    alone = np.array([(await onnx_embedder.embed([t]))[0] for t in texts])
    assert np.abs(together - alone).max() < 1e-4


async def test_order_is_kept_across_length_sorted_batches(onnx_embedder: OnnxEmbedder) -> None:  # noqa: F811
    texts = ["long " * 50, "short", "medium " * 10]
    batched = await onnx_embedder.embed(texts)
    for text, vector in zip(texts, batched, strict=True):
        assert vector == pytest.approx((await onnx_embedder.embed([text]))[0], abs=1e-4)


def test_batches_are_cut_by_rows_and_by_padded_tokens() -> None:
    lengths = [5, 5, 6, 100, 120, 130, 300]
    batches = plan_batches(lengths, max_rows=2, max_tokens=260)
    assert [list(b) for b in batches] == [[0, 1], [2, 3], [4, 5], [6]]
    # every text lands in exactly one batch, in order
    assert [i for b in batches for i in b] == list(range(len(lengths)))
    for batch in batches:
        rows = len(batch)
        assert rows <= 2
        assert rows == 1 or rows * lengths[batch[-1]] <= 260  # padded to its longest
    assert [list(b) for b in plan_batches([10] * 5, max_rows=8, max_tokens=30)] == [
        [0, 1, 2],
        [3, 4],
    ]
    assert plan_batches([], max_rows=4, max_tokens=512) == []


async def test_token_budget_and_parallel_streams_give_one_at_a_time_vectors() -> None:
    """The throughput fix (small length-sorted batches padded only to their own longest
    text, run on parallel single-core streams) must not change a single vector: every
    text embedded together equals the text embedded alone, padded nowhere."""
    texts = [
        f"Section {i}. " + "refund policy for damaged devices " * (i % 9 * 5) for i in range(24)
    ]
    texts += ["short", "", "ok " * 400]  # a one-word text, an empty one, one past 256 tokens
    fast = OnnxEmbedder(batch_size=32, batch_tokens=300, threads=2)
    alone = OnnxEmbedder(batch_size=1, batch_tokens=1, threads=1)
    try:
        assert fast.streams == 2
        together = fast.embed_array(texts)
        one_by_one = np.array([alone.embed_sync([text])[0] for text in texts])
        assert together.shape == (len(texts), DIMENSIONS)
        assert np.abs(together - one_by_one).max() < 1e-5
        assert np.linalg.norm(together, axis=1) == pytest.approx([1.0] * len(texts), abs=1e-5)
        # the async path and the list form agree with the array form
        assert np.array(await fast.embed(texts)) == pytest.approx(together, abs=1e-6)
    finally:
        fast.close()
        alone.close()


async def test_the_session_has_no_spinning_thread_pool(onnx_embedder: OnnxEmbedder) -> None:  # noqa: F811
    """Parallelism is one single-core run per stream: no intra-op pool to spin on."""
    onnx_embedder.load()
    options = onnx_embedder._session.get_session_options()  # type: ignore[union-attr]
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


async def test_embedding_runs_off_the_event_loop(onnx_embedder: OnnxEmbedder) -> None:  # noqa: F811
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await onnx_embedder.embed(["a sentence about the weather " * 20] * 16)
    elapsed = time.perf_counter() - started
    task.cancel()
    assert elapsed > 0.05 and ticks >= 3  # the loop kept running while the model worked


async def test_token_counts_exclude_special_tokens(onnx_embedder: OnnxEmbedder) -> None:  # noqa: F811
    assert onnx_embedder.count_tokens(["hello world", ""]) == [2, 0]


async def test_an_altered_model_file_is_refused(tmp_path: Path) -> None:
    files = installed_model_files()
    copy = tmp_path / "model.onnx"
    shutil.copy(files.model, copy)
    with copy.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02\x03")
    embedder = OnnxEmbedder(OnnxModelFiles(model=copy, tokenizer=files.tokenizer))
    with pytest.raises(ModelIntegrityError, match="SHA-256"):
        await embedder.ping()


async def test_an_altered_tokenizer_is_refused(tmp_path: Path) -> None:
    files = installed_model_files()
    copy = tmp_path / "tokenizer.json"
    copy.write_text(files.tokenizer.read_text().replace('"[UNK]"', '"[UNKNOWN]"', 1))
    embedder = OnnxEmbedder(OnnxModelFiles(model=files.model, tokenizer=copy))
    with pytest.raises(ModelIntegrityError):
        embedder.load()


async def test_a_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    files = installed_model_files()
    embedder = OnnxEmbedder(OnnxModelFiles(model=tmp_path / "nope.onnx", tokenizer=files.tokenizer))
    with pytest.raises((ModelFilesMissing, FileNotFoundError)):
        embedder.load()
