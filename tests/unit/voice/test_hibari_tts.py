"""The hibari text-to-speech adapter: pinned assets, streaming, one voice, no downloads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vocalis.adapters.hibari_tts import (
    ASSET_SHA256,
    HibariModelError,
    HibariTTS,
    default_assets_dir,
    verify_assets,
)
from vocalis.core.audio import duration_seconds


@pytest.fixture(scope="module")
def hibari() -> HibariTTS:
    return HibariTTS()


def test_the_installed_assets_match_their_pins() -> None:
    verify_assets(default_assets_dir())


def test_a_tampered_asset_is_refused(tmp_path: Path) -> None:
    for name in ASSET_SHA256:
        shutil.copy(default_assets_dir() / name, tmp_path / name)
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(HibariModelError, match=r"vocab\.json has SHA-256"):
        verify_assets(tmp_path)


def test_a_missing_asset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HibariModelError, match="asset missing"):
        verify_assets(tmp_path)


def test_only_the_bundled_voice_is_offered(hibari: HibariTTS) -> None:
    # hibari downloads its other voices from a model hub; Vocalis never asks for them.
    assert list(hibari.voices) == ["heart"]
    assert hibari.resolve_voice("emma") == "heart"


async def test_each_sentence_is_streamed_in_100_ms_chunks(hibari: HibariTTS) -> None:
    chunks = [c async for c in hibari.synthesize_stream("Hello there. How can I help?", "emma")]
    assert all(len(c) <= 2400 * 2 and len(c) % 2 == 0 for c in chunks)
    assert 1.0 < duration_seconds(b"".join(chunks), hibari.sample_rate) < 5.0


async def test_the_same_text_gives_the_same_audio(hibari: HibariTTS) -> None:
    first = b"".join([c async for c in hibari.synthesize_stream("Your refund is on its way.")])
    second = b"".join([c async for c in hibari.synthesize_stream("Your refund is on its way.")])
    assert first == second
