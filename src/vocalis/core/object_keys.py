"""The one registry of object-store key layouts; the docs' object-key table comes from it.

Every key starts with `orgs/{org_id}/`, so one organisation's objects are one prefix
(listed, exported or deleted together). Build keys only with the functions below; the
adapters take any key that `validate_key` accepts and never interpret it further.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_KEY_BYTES = 1024  # S3's limit, applied to every adapter so keys stay portable
MAX_FILENAME_BYTES = 200  # leaves room under the usual 255-byte file-name limit
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class KeyLayout:
    """A key pattern and what the object under it holds."""

    name: str
    pattern: str
    description: str

    def format(self, **parts: str) -> str:
        """The concrete key; every part must be one safe path segment."""
        for label, value in parts.items():
            _check_segment(value, label)
        return self.pattern.format(**parts)


LAYOUTS: list[KeyLayout] = []


def declare(name: str, pattern: str, description: str) -> KeyLayout:
    """Declare a key layout once."""
    if any(layout.name == name for layout in LAYOUTS):
        raise ValueError(f"object key layout {name!r} declared twice")
    if not pattern.startswith("orgs/{org_id}/"):
        raise ValueError(f"object key layout {name!r} must start with 'orgs/{{org_id}}/'")
    layout = KeyLayout(name, pattern, description)
    LAYOUTS.append(layout)
    return layout


DOCUMENT_ORIGINAL = declare(
    "document_original",
    "orgs/{org_id}/knowledge-bases/{kb_id}/documents/{doc_id}/v{version}/original/{filename}",
    "The uploaded file of one document version, byte for byte, under its sanitised name.",
)
DOCUMENT_TEXT = declare(
    "document_text",
    "orgs/{org_id}/knowledge-bases/{kb_id}/documents/{doc_id}/v{version}/text.txt",
    "UTF-8 text extracted from that version, the input to chunking and re-indexing.",
)
RECORDING = declare(
    "recording",
    "orgs/{org_id}/conversations/{conversation_id}/recordings/{turn}-{speaker}.wav",
    "Audio of one voice turn (WAV); `turn` is zero-padded to 6 digits so keys sort in "
    "turn order; `speaker` is `user` or `agent`.",
)
EXPORT = declare(
    "export",
    "orgs/{org_id}/exports/{export_id}",
    "A generated data export of the organisation; its format is in the content type.",
)


def document_original(org_id: str, kb_id: str, doc_id: str, version: int, filename: str) -> str:
    """Key of an uploaded document version's original file."""
    return DOCUMENT_ORIGINAL.format(
        org_id=org_id,
        kb_id=kb_id,
        doc_id=doc_id,
        version=_version(version),
        filename=safe_filename(filename),
    )


def document_text(org_id: str, kb_id: str, doc_id: str, version: int) -> str:
    """Key of the text extracted from a document version."""
    return DOCUMENT_TEXT.format(
        org_id=org_id, kb_id=kb_id, doc_id=doc_id, version=_version(version)
    )


def recording(org_id: str, conversation_id: str, turn: int, speaker: str) -> str:
    """Key of the audio of one conversation turn."""
    if turn < 0:
        raise ValueError(f"turn must be >= 0, got {turn}")
    return RECORDING.format(
        org_id=org_id, conversation_id=conversation_id, turn=f"{turn:06d}", speaker=speaker
    )


def export(org_id: str, export_id: str) -> str:
    """Key of one data export."""
    return EXPORT.format(org_id=org_id, export_id=export_id)


def org_prefix(org_id: str) -> str:
    """Prefix of every object of an organisation (for export or deletion)."""
    _check_segment(org_id, "org_id")
    return f"orgs/{org_id}/"


def document_prefix(org_id: str, kb_id: str, doc_id: str) -> str:
    """Prefix of every version of one document."""
    for label, value in (("org_id", org_id), ("kb_id", kb_id), ("doc_id", doc_id)):
        _check_segment(value, label)
    return f"orgs/{org_id}/knowledge-bases/{kb_id}/documents/{doc_id}/"


def knowledge_base_prefix(org_id: str, kb_id: str) -> str:
    """Prefix of every document of one knowledge base."""
    _check_segment(org_id, "org_id")
    _check_segment(kb_id, "kb_id")
    return f"orgs/{org_id}/knowledge-bases/{kb_id}/"


def conversation_prefix(org_id: str, conversation_id: str) -> str:
    """Prefix of every recording of one conversation."""
    _check_segment(org_id, "org_id")
    _check_segment(conversation_id, "conversation_id")
    return f"orgs/{org_id}/conversations/{conversation_id}/"


def safe_filename(filename: str) -> str:
    """A user-supplied file name made into one key segment (never rejected)."""
    # Clients send paths ("C:\\docs\\a.pdf", "../../a.pdf"): keep the last component only.
    name = re.split(r"[\\/]", filename)[-1]
    name = _CONTROL.sub("_", unicodedata.normalize("NFC", name)).strip()
    if name in ("", ".", ".."):
        return "file"
    encoded = name.encode()
    if len(encoded) <= MAX_FILENAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    suffix = f"{dot}{ext}" if dot and stem and len(ext.encode()) <= 16 else ""
    keep = MAX_FILENAME_BYTES - len(suffix.encode())
    return encoded[:keep].decode(errors="ignore") + suffix


def validate_key(key: str) -> str:
    """Return `key` if every adapter can store it; else raise `ValueError`."""
    if not key:
        raise ValueError("object key must not be empty")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"object key longer than {MAX_KEY_BYTES} bytes")
    # A leading '/', '//', '.' or '..' would escape the local root or be rewritten by S3
    # servers that normalise paths, so the same key could name different objects.
    for segment in key.split("/"):
        _check_segment(segment, "object key segment", whole=key)
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is the start of a valid key (or empty); else raise `ValueError`."""
    if prefix:
        validate_key(prefix.removesuffix("/"))
    return prefix


def _check_segment(value: str, label: str, *, whole: str | None = None) -> None:
    shown = repr(whole if whole is not None else value)
    if value in ("", ".", ".."):
        raise ValueError(f"{label} must not be empty, '.' or '..': {shown}")
    if "/" in value:
        raise ValueError(f"{label} must not contain '/': {shown}")
    if _CONTROL.search(value):
        raise ValueError(f"{label} must not contain control characters: {shown}")


def _version(version: int) -> str:
    if version < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    return str(version)
