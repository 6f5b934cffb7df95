"""Detect a document's type from its bytes; the file name is never trusted.

Supported: PDF, DOCX, HTML, Markdown and plain text. Everything else is rejected with a
message naming what the content looks like. A DOCX is a ZIP archive, so its central
directory is checked against zip-bomb limits before any parser touches it.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

from vocalis.knowledge.errors import (
    CorruptDocument,
    DocumentTypeMismatch,
    EmptyDocument,
    UnsafeArchive,
    UnsupportedDocumentType,
)


class DocumentType(StrEnum):
    """The document types ingestion understands."""

    PDF = "pdf"
    DOCX = "docx"
    HTML = "html"
    MARKDOWN = "markdown"
    TEXT = "text"


MEDIA_TYPES: dict[DocumentType, str] = {
    DocumentType.PDF: "application/pdf",
    DocumentType.DOCX: ("application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    DocumentType.HTML: "text/html",
    DocumentType.MARKDOWN: "text/markdown",
    DocumentType.TEXT: "text/plain",
}

# Extensions that name an unambiguous binary format: content of another type behind one
# of them is a mistake or a disguise, so it is refused. Textual extensions are
# interchangeable (a `.txt` holding Markdown is fine); the content decides.
_BINARY_EXTENSIONS: dict[str, DocumentType] = {
    ".pdf": DocumentType.PDF,
    ".docx": DocumentType.DOCX,
}

# Magic numbers of common binary formats we refuse, so the error can say what it is.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage (legacy .doc/.xls)"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"BZh", "application/x-bzip2"),
    (0, b"\xfd7zXZ\x00", "application/x-xz"),
    (0, b"(\xb5/\xfd", "application/zstd"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"Rar!\x1a\x07", "application/vnd.rar"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"MZ", "a Windows executable (application/x-msdownload)"),
    (0, b"SQLite format 3\x00", "application/vnd.sqlite3"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
    (0, b"RIFF", "audio/wav or image/webp (RIFF)"),
    (0, b"fLaC", "audio/flac"),
    (4, b"ftyp", "video/mp4"),
    (257, b"ustar", "application/x-tar"),
)


@dataclass(frozen=True)
class ArchiveLimits:
    """Zip-bomb guard for DOCX: limits read from the central directory before parsing."""

    max_entries: int = 1_000
    max_uncompressed_bytes: int = 100 * 1024 * 1024
    max_ratio: float = 100.0
    # Small archives may compress absurdly well (an empty-ish document); the ratio check
    # only matters once the expanded size could hurt.
    ratio_applies_above_bytes: int = 2 * 1024 * 1024


@dataclass(frozen=True)
class SniffResult:
    """The detected type of a document."""

    type: DocumentType
    media_type: str


def sniff(
    data: bytes, filename: str | None = None, *, limits: ArchiveLimits | None = None
) -> SniffResult:
    """Detect the type of `data`; raise a `DocumentRejected` subclass if unsupported."""
    if not data.strip():
        raise EmptyDocument("The file is empty.")
    detected = _detect(data, limits or ArchiveLimits())
    _check_name(detected, filename)
    return SniffResult(detected, MEDIA_TYPES[detected])


def _detect(data: bytes, limits: ArchiveLimits) -> DocumentType:
    # The PDF header may be preceded by junk within the first 1024 bytes (PDF 1.7, 7.5.2).
    if b"%PDF-" in data[:1024]:
        return DocumentType.PDF
    if data.startswith(b"PK\x03\x04"):
        check_docx_archive(data, limits)
        return DocumentType.DOCX
    if data.lstrip()[:5] == b"{\\rtf":
        raise UnsupportedDocumentType("Unsupported file type: the content is application/rtf.")
    try:
        text = decode_text(data)
    except UnsupportedDocumentType:
        raise UnsupportedDocumentType(
            f"Unsupported file type: the content is {_binary_kind(data)}."
        ) from None
    return classify_text(text)


def _binary_kind(data: bytes) -> str:
    for offset, magic, media_type in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return media_type
    return "binary (application/octet-stream)"


def _check_name(detected: DocumentType, filename: str | None) -> None:
    if not filename:
        return
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    claimed = _BINARY_EXTENSIONS.get(suffix)
    if claimed is not None and claimed is not detected:
        raise DocumentTypeMismatch(
            f"The file is named {suffix} but its content is {MEDIA_TYPES[detected]}."
        )


def check_docx_archive(data: bytes, limits: ArchiveLimits) -> None:
    """Accept only a well-formed, reasonably sized ZIP that holds a Word document."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CorruptDocument(f"The ZIP container is corrupt: {exc}") from exc
    if len(infos) > limits.max_entries:
        raise UnsafeArchive(
            f"The archive has {len(infos)} entries; the limit is {limits.max_entries}."
        )
    # Declared sizes are safe to trust as upper bounds: zipfile never inflates an entry
    # past its declared size and checks the CRC, so a lying header only fails later.
    uncompressed = sum(info.file_size for info in infos)
    compressed = sum(info.compress_size for info in infos)
    if uncompressed > limits.max_uncompressed_bytes:
        raise UnsafeArchive(
            f"The archive expands to {uncompressed} bytes; the limit is "
            f"{limits.max_uncompressed_bytes}."
        )
    ratio = uncompressed / max(compressed, 1)
    if uncompressed > limits.ratio_applies_above_bytes and ratio > limits.max_ratio:
        raise UnsafeArchive(
            f"The archive's compression ratio is {ratio:.0f}:1; the limit is "
            f"{limits.max_ratio:.0f}:1."
        )
    names = {info.filename for info in infos}
    if "word/document.xml" not in names or "[Content_Types].xml" not in names:
        raise UnsupportedDocumentType(_zip_kind(names))


def _zip_kind(names: set[str]) -> str:
    if any(n.startswith("xl/") for n in names):
        return "Unsupported file type: the content is a spreadsheet (XLSX)."
    if any(n.startswith("ppt/") for n in names):
        return "Unsupported file type: the content is a presentation (PPTX)."
    if "mimetype" in names:
        return "Unsupported file type: the content is an OpenDocument or EPUB archive."
    return "Unsupported file type: the content is a ZIP archive, not a Word document."


_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def decode_text(data: bytes) -> str:
    """Decode text bytes (UTF-8/16/32 by BOM, UTF-8, else Windows-1252) or reject as binary."""
    text: str | None = None
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = _try_decode(data, encoding)
            break
    else:
        if b"\x00" not in data:
            text = _try_decode(data, "utf-8")
            if text is None:
                text = _try_decode(data, "cp1252")
    # Text formats carry (almost) no control characters; a binary blob is full of them.
    if text is None or len(_CONTROL.findall(text)) > max(1, len(text) // 1000):
        raise UnsupportedDocumentType(
            "Unsupported file type: the content is binary (application/octet-stream)."
        )
    return text


def _try_decode(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


_HTML_START = re.compile(r"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>])", re.I | re.S)
_HTML_TAG = re.compile(r"<(html|head|body|p|div|h[1-6]|ul|ol|li|table|a\s|span|br)[\s/>]", re.I)
_XML_START = re.compile(r"^\s*<\?xml", re.I)
_MD_HEADING = re.compile(r"^#{1,6}[ \t]+\S", re.M)
_MD_FENCE = re.compile(r"^(```|~~~)", re.M)
_MD_SETEXT = re.compile(r"^\S.*\n(=+|-{3,})[ \t]*$", re.M)
_MD_LINK = re.compile(r"\[[^\]\n]+\]\([^)\s]+\)")
_MD_EMPHASIS = re.compile(r"(\*\*|__)\S[^*_\n]*\S\1")
_MD_TABLE = re.compile(r"^\|?[ \t]*:?-{3,}:?[ \t]*\|", re.M)


def classify_text(text: str) -> DocumentType:
    """Tell HTML, Markdown and plain text apart by their markup."""
    head = text[:4096]
    if _HTML_START.match(head):
        return DocumentType.HTML
    if _XML_START.match(head):
        if re.search(r"<html[\s>]", head, re.I):
            return DocumentType.HTML
        raise UnsupportedDocumentType("Unsupported file type: the content is XML.")
    if head.lstrip().startswith("<") and len({m.lower() for m in _HTML_TAG.findall(head)}) >= 2:
        return DocumentType.HTML
    if _MD_HEADING.search(text) or _MD_FENCE.search(text) or _MD_TABLE.search(text):
        return DocumentType.MARKDOWN
    signals = (
        len(_MD_SETEXT.findall(text))
        + len(_MD_LINK.findall(text))
        + len(_MD_EMPHASIS.findall(text))
    )
    return DocumentType.MARKDOWN if signals >= 2 else DocumentType.TEXT
