"""Document type detection: from the bytes, never from the name."""

from __future__ import annotations

import pytest

from tests.fixtures.documents import add_zip_entries, make_docx, make_html, make_pdf
from vocalis.knowledge.errors import (
    CorruptDocument,
    DocumentTypeMismatch,
    EmptyDocument,
    UnsafeArchive,
    UnsupportedDocumentType,
    is_permanent,
)
from vocalis.knowledge.sniff import ArchiveLimits, DocumentType, sniff

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"


def test_pdf_is_detected_by_its_header() -> None:
    result = sniff(make_pdf([["hello"]]), "notes.pdf")
    assert result.type is DocumentType.PDF
    assert result.media_type == "application/pdf"


def test_docx_is_detected_by_its_word_document_part() -> None:
    assert sniff(make_docx([("p", "hello")]), "a.docx").type is DocumentType.DOCX


def test_html_is_detected_from_markup() -> None:
    assert sniff(make_html("t", "<p>hi</p>"), "page.html").type is DocumentType.HTML


def test_html_fragment_without_doctype_is_still_html() -> None:
    assert sniff(b"<div><h1>Title</h1><p>Body</p></div>").type is DocumentType.HTML


def test_markdown_is_detected_from_headings() -> None:
    assert sniff(b"# Title\n\nSome text.\n").type is DocumentType.MARKDOWN


def test_plain_prose_is_text() -> None:
    assert sniff(b"Just a sentence. And another one.\n").type is DocumentType.TEXT


def test_the_name_does_not_decide_between_text_formats() -> None:
    assert sniff(b"# Heading\n\nbody", "readme.txt").type is DocumentType.MARKDOWN


def test_utf16_text_with_bom_is_text() -> None:
    assert sniff("Grüße aus Köln.".encode("utf-16")).type is DocumentType.TEXT


def test_latin1_text_falls_back_to_windows_1252() -> None:
    assert sniff("Caf\xe9 cr\xe8me.".encode("latin-1")).type is DocumentType.TEXT


def test_empty_file_is_rejected_as_empty() -> None:
    with pytest.raises(EmptyDocument):
        sniff(b"", "empty.pdf")


def test_whitespace_only_file_is_rejected_as_empty() -> None:
    with pytest.raises(EmptyDocument):
        sniff(b" \n\t\n ")


def test_image_behind_a_pdf_extension_is_rejected_and_named() -> None:
    with pytest.raises(UnsupportedDocumentType, match="image/png"):
        sniff(PNG, "report.pdf")


def test_text_behind_a_pdf_extension_is_a_mismatch() -> None:
    with pytest.raises(DocumentTypeMismatch, match=r"named \.pdf"):
        sniff(b"This is not a PDF at all.", "report.pdf")


def test_pdf_behind_a_docx_extension_is_a_mismatch() -> None:
    with pytest.raises(DocumentTypeMismatch, match=r"named \.docx"):
        sniff(make_pdf([["x"]]), "letter.docx")


def test_binary_junk_is_unsupported() -> None:
    with pytest.raises(UnsupportedDocumentType, match="octet-stream"):
        sniff(bytes(range(256)) * 4)


def test_executable_is_unsupported() -> None:
    with pytest.raises(UnsupportedDocumentType, match="executable"):
        sniff(b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "run.txt")


def test_rtf_is_unsupported() -> None:
    with pytest.raises(UnsupportedDocumentType, match="rtf"):
        sniff(b"{\\rtf1\\ansi Hello}")


def test_plain_xml_is_unsupported() -> None:
    with pytest.raises(UnsupportedDocumentType, match="XML"):
        sniff(b'<?xml version="1.0"?><feed><entry/></feed>')


def test_zip_that_is_not_a_word_document_is_unsupported() -> None:
    archive = add_zip_entries(b"", {"xl/workbook.xml": b"<workbook/>"})
    with pytest.raises(UnsupportedDocumentType, match="XLSX"):
        sniff(archive, "sheet.docx")


def test_truncated_zip_is_corrupt() -> None:
    data = make_docx([("p", "hello")])
    with pytest.raises(CorruptDocument):
        sniff(data[: len(data) // 2], "a.docx")


def test_docx_expanding_past_the_size_limit_is_unsafe() -> None:
    data = add_zip_entries(make_docx([("p", "x")]), {"word/media/pad.bin": b"\x00" * 3_000_000})
    limits = ArchiveLimits(max_uncompressed_bytes=2_000_000)
    with pytest.raises(UnsafeArchive, match="expands to"):
        sniff(data, "a.docx", limits=limits)


def test_docx_with_a_bomb_like_compression_ratio_is_unsafe() -> None:
    data = add_zip_entries(make_docx([("p", "x")]), {"word/bomb.xml": b"\x00" * 20_000_000})
    with pytest.raises(UnsafeArchive, match="compression ratio"):
        sniff(data, "a.docx")


def test_docx_with_too_many_entries_is_unsafe() -> None:
    entries = {f"word/media/{i}.bin": b"x" for i in range(1_001)}
    data = add_zip_entries(make_docx([("p", "x")]), entries)
    with pytest.raises(UnsafeArchive, match="entries"):
        sniff(data, "a.docx")


def test_rejections_are_permanent_and_carry_catalogued_codes() -> None:
    with pytest.raises(UnsupportedDocumentType) as caught:
        sniff(PNG)
    assert is_permanent(caught.value)
    assert caught.value.code == "document_type_unsupported"
    assert caught.value.status == 415
