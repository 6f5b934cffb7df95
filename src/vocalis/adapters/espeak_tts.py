"""Offline text-to-speech with espeak-ng, loaded from PyPI `espeakng-loader` (no system package).

Licence: espeak-ng (library and voice data) is GPL-3.0-or-later. It is an optional component
of Vocalis, loaded at run time through ctypes; distributions that must avoid GPL code leave
`espeakng-loader` out and configure another TTS adapter.

espeak-ng is one global C library: it is initialised once per process in synchronous mode
(audio handed to a callback in ~100 ms buffers) and every synthesis is serialised by a lock
in a dedicated worker thread; chunks are passed to the event loop as they are produced.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SAMPLE_RATE = 22050
BUFFER_MS = 100
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_WORDGAP = 7  # pause between words, in units of 10 ms
_EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakError(RuntimeError):
    """The espeak-ng library could not be loaded or refused a request."""


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


class _Library:
    """The process-wide espeak-ng instance; use only while holding `lock`."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lock = threading.Lock()
        self.sink: Callable[[bytes], bool] | None = None
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._declare()
        data_path = espeakng_loader.get_data_path().encode()
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, data_path, 0)
        if rate != SAMPLE_RATE:
            raise EspeakError(f"espeak_Initialize returned {rate}, expected {SAMPLE_RATE} Hz")
        # Keep a reference: ctypes frees the trampoline when the Python object dies.
        self._callback = _SynthCallback(self._on_audio)
        self._lib.espeak_SetSynthCallback(self._callback)
        self.voices = self._list_voices()

    def _declare(self) -> None:
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]

    def _list_voices(self) -> dict[str, str]:
        """Language tag (`en-us`, `en-gb`…) → voice identifier (`gmw/en-US`, `gmw/en`…)."""
        table = self._lib.espeak_ListVoices(None)
        voices: dict[str, str] = {}
        index = 0
        while table[index]:
            entry = table[index].contents
            languages = entry.languages or b""
            # `languages` is <priority byte><language>\0...; the first one names the voice.
            if len(languages) > 1 and entry.identifier:
                tag = languages[1:].decode("ascii", "replace").lower()
                voices.setdefault(tag, entry.identifier.decode("ascii", "replace"))
            index += 1
        return dict(sorted(voices.items()))

    def _on_audio(self, wav: Any, samples: int, _events: Any) -> int:
        sink = self.sink
        if sink is None:
            return 1
        if wav and samples > 0 and not sink(ctypes.string_at(wav, samples * 2)):
            return 1  # non-zero tells espeak to abort this synthesis
        return 0

    def synthesize(
        self,
        text: str,
        voice: str,
        sink: Callable[[bytes], bool],
        *,
        rate_wpm: int,
        word_gap_ms: int,
    ) -> None:
        """Speak `text` into `sink` (returns False to stop); caller holds `lock`."""
        if self._lib.espeak_SetVoiceByName(self.voices[voice].encode()) != _EE_OK:
            raise EspeakError(f"espeak-ng rejected voice {voice!r}")
        self._lib.espeak_SetParameter(_ESPEAK_RATE, rate_wpm, 0)
        self._lib.espeak_SetParameter(_ESPEAK_WORDGAP, round(word_gap_ms / 10), 0)
        encoded = text.replace("\x00", " ").encode("utf-8")
        self.sink = sink
        try:
            code = self._lib.espeak_Synth(
                encoded, len(encoded) + 1, 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            self._lib.espeak_Synchronize()
        finally:
            self.sink = None
        if code not in (_EE_OK, 1):  # 1 is EE_BUFFER_FULL, which follows an abort
            raise EspeakError(f"espeak_Synth failed with code {code}")


_library: _Library | None = None
_library_guard = threading.Lock()
# One thread: the library is global, so syntheses cannot run in parallel anyway.
_executor = ThreadPoolExecutor(1, thread_name_prefix="espeak")


def _get_library() -> _Library:
    global _library
    with _library_guard:
        if _library is None:
            _library = _Library()
        return _library


class EspeakTTS:
    """espeak-ng voices at 22.05 kHz; implements `TextToSpeech`."""

    name = "espeak-ng"
    sample_rate = SAMPLE_RATE

    def __init__(
        self, default_voice: str = "en-us", *, rate_wpm: int = 175, word_gap_ms: int = 20
    ) -> None:
        self._library = _get_library()
        if default_voice.lower() not in self._library.voices:
            raise EspeakError(f"unknown default voice {default_voice!r}")
        self.default_voice = default_voice.lower()
        self.rate_wpm = rate_wpm
        # espeak runs words together; a short gap made whisper tiny.en's word error rate on
        # its speech drop from ~13% to ~8% (bench/voice_engines.py), and it is easier to follow.
        self.word_gap_ms = word_gap_ms

    @property
    def voices(self) -> Sequence[str]:
        """Language-tagged voice names such as `en-us`, `en-gb`, `fr-fr`."""
        return tuple(self._library.voices)

    def resolve_voice(self, voice: str | None) -> str:
        """The voice that will speak: `voice` if known, else the default."""
        if voice and voice.lower() in self._library.voices:
            return voice.lower()
        return self.default_voice

    async def synthesize_stream(
        self, text: str, voice: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """PCM16 chunks (~100 ms each) as espeak-ng produces them."""
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        stop = threading.Event()

        def deliver(item: bytes | None) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening
                return False
            return True

        def sink(chunk: bytes) -> bool:
            return not stop.is_set() and deliver(chunk)

        def run() -> None:
            try:
                if not stop.is_set():
                    with self._library.lock:
                        self._library.synthesize(
                            text,
                            self.resolve_voice(voice),
                            sink,
                            rate_wpm=self.rate_wpm,
                            word_gap_ms=self.word_gap_ms,
                        )
            finally:
                deliver(None)

        done = loop.run_in_executor(_executor, run)
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
            await done  # re-raises an engine error
        finally:
            stop.set()  # the consumer went away: make espeak abort at its next buffer
