"""The object-key registry: every key is built from a declared layout and is portable."""

from __future__ import annotations

import pytest

from vocalis.core import object_keys
from vocalis.core.object_keys import LAYOUTS, declare, safe_filename, validate_key


def test_every_layout_is_org_scoped_and_described() -> None:
    assert LAYOUTS
    for layout in LAYOUTS:
        assert layout.pattern.startswith("orgs/{org_id}/")
        assert layout.description.strip()


def test_a_layout_name_can_be_declared_only_once() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        declare("recording", "orgs/{org_id}/x", "again")


def test_a_layout_outside_the_org_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="orgs/"):
        declare("global_thing", "shared/{name}", "not org-scoped")


def test_document_keys_share_the_document_prefix() -> None:
    original = object_keys.document_original("org_1", "kb_1", "doc_1", 2, "Report.pdf")
    text = object_keys.document_text("org_1", "kb_1", "doc_1", 2)
    prefix = object_keys.document_prefix("org_1", "kb_1", "doc_1")
    assert original == f"{prefix}v2/original/Report.pdf"
    assert text == f"{prefix}v2/text.txt"
    assert prefix.startswith(object_keys.knowledge_base_prefix("org_1", "kb_1"))
    assert prefix.startswith(object_keys.org_prefix("org_1"))


def test_recording_keys_sort_in_turn_order() -> None:
    keys = [object_keys.recording("org_1", "conv_1", turn, "user") for turn in (10, 2, 1)]
    assert sorted(keys) == [object_keys.recording("org_1", "conv_1", t, "user") for t in (1, 2, 10)]
    assert keys[0] == "orgs/org_1/conversations/conv_1/recordings/000010-user.wav"
    assert keys[0].startswith(object_keys.conversation_prefix("org_1", "conv_1"))


def test_export_key() -> None:
    assert object_keys.export("org_1", "exp_1") == "orgs/org_1/exports/exp_1"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\nb"])
def test_an_id_that_is_not_one_path_segment_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        object_keys.export("org_1", bad)
    with pytest.raises(ValueError):
        object_keys.org_prefix(bad)


def test_versions_and_turns_must_be_in_range() -> None:
    with pytest.raises(ValueError):
        object_keys.document_text("org_1", "kb_1", "doc_1", 0)
    with pytest.raises(ValueError):
        object_keys.recording("org_1", "conv_1", -1, "agent")


@pytest.mark.parametrize(
    ("uploaded", "stored"),
    [
        ("notes.txt", "notes.txt"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("..", "file"),
        ("dir/", "file"),
        ("  spaced name.md  ", "spaced name.md"),
        ("tab\there.txt", "tab_here.txt"),
    ],
)
def test_uploaded_file_names_become_one_safe_segment(uploaded: str, stored: str) -> None:
    assert safe_filename(uploaded) == stored


def test_long_file_names_are_cut_but_keep_their_extension() -> None:
    name = safe_filename("é" * 300 + ".pdf")
    assert name.endswith(".pdf")
    assert len(name.encode()) <= object_keys.MAX_FILENAME_BYTES
    name.encode().decode()  # still valid UTF-8: no character cut in half


@pytest.mark.parametrize(
    "key", ["orgs/o/a", "orgs/o/with space/ünï 名前.pdf", "orgs/o/..hidden", "a+b=c&d"]
)
def test_portable_keys_are_accepted(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key", ["", "/abs", "../x", "a/../b", "a//b", "a/./b", "a/", "a\x00b", "a" * 1025]
)
def test_keys_that_are_not_portable_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        validate_key(key)


def test_generated_keys_are_valid() -> None:
    keys = [
        object_keys.document_original("o", "k", "d", 1, "../weird\x01name.bin"),
        object_keys.document_text("o", "k", "d", 1),
        object_keys.recording("o", "c", 0, "agent"),
        object_keys.export("o", "e"),
    ]
    for key in keys:
        assert validate_key(key) == key
