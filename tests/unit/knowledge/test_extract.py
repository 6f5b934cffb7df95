"""Extraction: sections with page and heading metadata from real documents."""

from __future__ import annotations

import pytest

from tests.fixtures.documents import make_docx, make_html, make_pdf
from vocalis.knowledge.errors import CorruptDocument, DocumentTooLarge, EmptyDocument, is_permanent
from vocalis.knowledge.extract import ExtractionLimits, extract, normalise_text
from vocalis.knowledge.sniff import DocumentType


def test_pdf_sections_carry_their_page_numbers() -> None:
    data = make_pdf([["Refunds take five days."], ["Shipping is free over 50 euros."]])
    document = extract(data, DocumentType.PDF)
    assert [(s.page, s.text) for s in document.sections] == [
        (1, "Refunds take five days."),
        (2, "Shipping is free over 50 euros."),
    ]
    assert document.page_count == 2


def test_pdf_outline_titles_become_page_headings() -> None:
    data = make_pdf(
        [["Intro text."], ["More intro."], ["Billing text."]],
        outline=[("Introduction", 1), ("Billing", 3)],
    )
    headings = [(s.page, s.heading) for s in extract(data, DocumentType.PDF).sections]
    assert headings == [(1, "Introduction"), (2, "Introduction"), (3, "Billing")]


def test_pdf_title_comes_from_its_metadata() -> None:
    data = make_pdf([["x y z"]], title="Price List")
    assert extract(data, DocumentType.PDF).title == "Price List"


def test_corrupt_pdf_is_a_permanent_corrupt_document_error() -> None:
    data = make_pdf([["hello"]])
    with pytest.raises(CorruptDocument) as caught:
        extract(data[:60], DocumentType.PDF)
    assert is_permanent(caught.value)
    assert caught.value.code == "document_corrupt"


def test_pdf_without_text_is_empty() -> None:
    with pytest.raises(EmptyDocument):
        extract(make_pdf([[], []]), DocumentType.PDF)


def test_pdf_over_the_page_limit_is_too_large() -> None:
    data = make_pdf([["a"], ["b"], ["c"]])
    with pytest.raises(DocumentTooLarge):
        extract(data, DocumentType.PDF, limits=ExtractionLimits(max_pages=2))


def test_docx_headings_split_sections_and_nest_into_a_path() -> None:
    data = make_docx(
        [
            ("h1", "Installation"),
            ("p", "Download the installer."),
            ("h2", "On Linux"),
            ("p", "Use the package manager."),
            ("h1", "Usage"),
            ("p", "Run the program."),
        ]
    )
    sections = extract(data, DocumentType.DOCX).sections
    assert [(s.heading_path, s.text) for s in sections] == [
        (("Installation",), "Download the installer."),
        (("Installation", "On Linux"), "Use the package manager."),
        (("Usage",), "Run the program."),
    ]
    assert all(s.page is None for s in sections)


def test_docx_tables_become_rows_of_cells() -> None:
    data = make_docx([("p", "Prices:")], table=[["Plan", "Price"], ["Pro", "20 EUR"]])
    text = extract(data, DocumentType.DOCX).text
    assert "Plan | Price\nPro | 20 EUR" in text


def test_corrupt_docx_is_a_corrupt_document_error() -> None:
    data = bytearray(make_docx([("p", "hello")]))
    index = data.find(b"word/document.xml", 40)  # damage the compressed part behind it
    data[index + 60 : index + 400] = b"\xff" * 340
    with pytest.raises(CorruptDocument):
        extract(bytes(data), DocumentType.DOCX)


def test_html_headings_split_sections_and_scripts_are_dropped() -> None:
    body = (
        "<nav>Home | About</nav><h1>Returns</h1><p>Items may be returned within "
        "<b>30 days</b>.</p><h2>Exceptions</h2><ul><li>Gift cards</li><li>Food</li></ul>"
    )
    document = extract(make_html("Shop policy", body), DocumentType.HTML)
    assert document.title == "Shop policy"
    assert [(s.heading_path, s.text) for s in document.sections] == [
        (("Returns",), "Items may be returned within 30 days."),
        (("Returns", "Exceptions"), "Gift cards\n\nFood"),
    ]
    assert "secret" not in document.text and "Home" not in document.text


def test_deeply_nested_html_does_not_overflow_the_stack() -> None:
    markup = "<html><body>" + "<div>" * 5000 + "deep text" + "</div>" * 5000 + "</body></html>"
    assert "deep text" in extract(markup.encode(), DocumentType.HTML).text


def test_markdown_headings_become_section_headings() -> None:
    data = b"# Guide\n\nIntro with **bold** and `code`.\n\n## Setup\n\n- step one\n- step two\n"
    document = extract(data, DocumentType.MARKDOWN)
    assert document.title == "Guide"
    assert [(s.heading, s.text) for s in document.sections] == [
        ("Guide", "Intro with bold and code."),
        ("Setup", "step one\n\nstep two"),
    ]


def test_plain_text_form_feeds_separate_pages() -> None:
    sections = extract(b"first page\fsecond page", DocumentType.TEXT).sections
    assert [(s.page, s.text) for s in sections] == [(1, "first page"), (2, "second page")]


def test_plain_text_without_form_feeds_has_no_pages() -> None:
    sections = extract(b"just text", DocumentType.TEXT).sections
    assert [(s.page, s.text) for s in sections] == [(None, "just text")]


def test_text_over_the_character_limit_is_too_large() -> None:
    with pytest.raises(DocumentTooLarge):
        extract(b"word " * 100, DocumentType.TEXT, limits=ExtractionLimits(max_chars=50))


def test_normalise_text_folds_compatibility_forms_and_whitespace() -> None:
    raw = "\ufb01nal\u00a0\u00a0answer\u200b \r\n\r\n\r\n\tnext\x07 line  "
    assert normalise_text(raw) == "final answer\n\nnext line"
