"""End of turn with Smart Turn v3.2 (Pipecat's open end-of-turn model) on onnxruntime.

The model hears the last 8 s of the user's turn (16 kHz mono) as Whisper-style log-mel
features (80 mel bands, 25 ms windows every 10 ms, 800 frames) and gives the probability
that the speaker has finished: a falling intonation after a complete sentence scores high,
a hanging "I'd like to cancel…" scores low. About 8 MB, tens of milliseconds per decision
on one CPU core.

Weights: `smart-turn-v3.2-cpu.onnx` (BSD-2-Clause, Daily) as shipped inside the PyPI wheel
`pipecat-ai==1.14.0` (`pipecat/audio/turn/smart_turn/data/`). Only the file is used: no
pipecat code is imported, and the wheel is installed without its dependencies
(`scripts/install-model-packages.sh`). The file is a third-party repackaging, so its
SHA-256 is checked before onnxruntime reads it.

The features are computed here with numpy, following OpenAI Whisper's log-mel recipe
(periodic Hann window, power spectrum, Slaney mel filter bank, log10, clamp to 8 below the
peak, (x + 4) / 4) after zero-mean, unit-variance normalisation of the waveform, which is
how the model was trained.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vocalis.core.audio import check_pcm16, pcm16_to_float32

SAMPLE_RATE = 16000
WINDOW_SECONDS = 8
N_FFT = 400
HOP = 160
N_MELS = 80
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
MODEL_PACKAGE = "pipecat-ai==1.14.0"
# pipecat-ai==1.14.0, pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx.
DEFAULT_MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]


class TurnModelError(RuntimeError):
    """The end-of-turn model file is missing or does not match its checksum."""


def default_model_path() -> Path:
    """Where the installed `pipecat-ai` wheel keeps the model (found without importing it)."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise TurnModelError(
            f"the Smart Turn model ships in the PyPI package {MODEL_PACKAGE!r}, which is not "
            f"installed: `pip install --no-deps '{MODEL_PACKAGE}'` (make run does it), or "
            "set VOCALIS_VOICE_TURN_DETECTOR=silence"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "audio" / "turn" / "smart_turn" / "data" / MODEL_FILE


def _hz_to_mel(freq: Float64Array) -> Float64Array:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    mel = 3.0 * freq / 200.0
    above = freq >= 1000.0
    mel[above] = 15.0 + np.log(freq[above] / 1000.0) * (27.0 / np.log(6.4))
    return mel


def _mel_to_hz(mel: Float64Array) -> Float64Array:
    freq = 200.0 * mel / 3.0
    above = mel >= 15.0
    freq[above] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[above] - 15.0))
    return freq


def _mel_filter_bank() -> Float64Array:
    """(N_MELS, N_FFT // 2 + 1) Slaney-normalised triangular filters from 0 Hz to 8 kHz."""
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array([SAMPLE_RATE / 2.0]))[0], N_MELS + 2))
    bins = np.linspace(0.0, SAMPLE_RATE / 2.0, N_FFT // 2 + 1)
    rising = (bins[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    falling = (edges[2:, None] - bins[None, :]) / np.diff(edges)[1:, None]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return filters


_FILTERS = _mel_filter_bank()
_HANN = np.hanning(N_FFT + 1)[:-1]  # periodic


def log_mel_features(samples: Float32Array) -> Float32Array:
    """(80, 800) log-mel features of the last 8 s of 16 kHz audio (zero-padded in front)."""
    size = SAMPLE_RATE * WINDOW_SECONDS
    x = np.asarray(samples, dtype=np.float32)[-size:]
    x = np.pad(x, (size - x.size, 0))
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2
    log_spec = np.log10(np.maximum(1e-10, _FILTERS @ power.T))[:, :-1]
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


class SmartTurnDetector:
    """Smart Turn v3.2 on onnxruntime, one intra-op thread; implements `TurnDetector`.

    Decisions run on a one-thread pool of their own, so the model never competes with
    itself and the event loop never waits for it. Loaded and warmed (one decision on
    silence) when built, so the first caller pays no start-up cost.
    """

    name = "smart-turn"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        sha256: str | None = DEFAULT_MODEL_SHA256,
        threads: int = 1,
    ) -> None:
        import onnxruntime

        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_file():
            raise TurnModelError(f"Smart Turn model not found at {path}")
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is None or digest != sha256:
            raise TurnModelError(f"{path} has SHA-256 {digest}, expected {sha256}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            data, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")
        self.warm_up_seconds = self._warm_up()

    def _warm_up(self) -> float:
        started = time.perf_counter()
        self.predict(np.zeros(SAMPLE_RATE, dtype=np.float32))
        return time.perf_counter() - started

    def predict(self, samples: Float32Array) -> float:
        """Blocking: probability that the 16 kHz float audio ends a finished turn."""
        features = log_mel_features(samples)[None, :, :]
        with self._lock:
            outputs: list[Any] = self._session.run(None, {"input_features": features})
        return float(np.clip(np.asarray(outputs[0]).ravel()[0], 0.0, 1.0))

    async def end_of_turn_probability(self, pcm16: bytes) -> float:
        """Probability in [0, 1] that the turn in `pcm16` (mono, 16 kHz) is over."""
        check_pcm16(pcm16)
        samples = pcm16_to_float32(pcm16)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.predict, samples)
