"""Turn document bytes into normalised text sections that keep page and heading.

Parsers are well-kept libraries: pypdf (PDF, one section per page, outline titles as
headings), python-docx (DOCX, heading styles), BeautifulSoup over lxml (HTML, h1-h6),
markdown-it-py (Markdown headings). A parser failure on untrusted bytes becomes
`CorruptDocument`, a permanent error.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import docx
from bs4 import BeautifulSoup
from bs4.element import NavigableString, PreformattedString, Tag
from docx.table import Table
from docx.text.paragraph import Paragraph
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pypdf import PdfReader

from vocalis.knowledge.errors import (
    CorruptDocument,
    DocumentRejected,
    DocumentTooLarge,
    EmptyDocument,
)
from vocalis.knowledge.sniff import DocumentType, decode_text


@dataclass(frozen=True)
class Section:
    """A run of text under one heading on one page (page is None where pages don't exist)."""

    text: str
    page: int | None = None
    heading: str | None = None
    heading_path: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExtractedDocument:
    """The text of a document as ordered sections."""

    type: DocumentType
    sections: list[Section]
    title: str | None = None
    page_count: int | None = None

    @property
    def text(self) -> str:
        """The whole extracted text (what goes to the object store as extracted text)."""
        return "\n\n".join(s.text for s in self.sections)


@dataclass(frozen=True)
class ExtractionLimits:
    """Bounds on work per document, so one upload cannot exhaust a worker."""

    max_pages: int = 2_000
    max_chars: int = 5_000_000


def extract(
    data: bytes, doc_type: DocumentType, *, limits: ExtractionLimits | None = None
) -> ExtractedDocument:
    """Extract sections from `data` of a sniffed type; raise a `DocumentRejected` on failure."""
    limits = limits or ExtractionLimits()
    extractor = _EXTRACTORS[doc_type]
    document = extractor(data, limits)
    total = sum(len(s.text) for s in document.sections)
    if total == 0:
        raise EmptyDocument("No text could be extracted from the document.")
    if total > limits.max_chars:
        raise DocumentTooLarge(
            f"The document holds {total} characters of text; the limit is {limits.max_chars}."
        )
    return document


# --- normalisation ---------------------------------------------------------------------
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200d\u2060\ufeff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalise_text(text: str) -> str:
    """NFKC, drop invisible and control characters, collapse spaces and blank lines."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub(" ", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


class _SectionBuilder:
    """Collects text between headings into sections, tracking the heading path."""

    def __init__(self, page: int | None = None) -> None:
        self.sections: list[Section] = []
        self.page = page
        self._path: list[tuple[int, str]] = []
        self._parts: list[str] = []

    def heading(self, level: int, title: str) -> None:
        title = normalise_text(title).replace("\n", " ")
        if not title:
            return
        self.flush()
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self._path.append((level, title))

    def text(self, text: str) -> None:
        self._parts.append(text)

    def block_break(self) -> None:
        self._parts.append("\n\n")

    def flush(self) -> None:
        text = normalise_text("".join(self._parts))
        self._parts = []
        if text:
            path = tuple(title for _, title in self._path)
            self.sections.append(
                Section(text, page=self.page, heading=path[-1] if path else None, heading_path=path)
            )


Extractor = Callable[[bytes, ExtractionLimits], ExtractedDocument]


def _guard(kind: str) -> Callable[[Extractor], Extractor]:
    """Turn any parser exception into CorruptDocument (parsers raise many types on junk)."""

    def wrap(fn: Extractor) -> Extractor:
        def guarded(data: bytes, limits: ExtractionLimits) -> ExtractedDocument:
            try:
                return fn(data, limits)
            except DocumentRejected:
                raise
            # Third-party parsers on untrusted bytes raise arbitrary exception types
            # (KeyError, struct.error, zlib.error, RecursionError…): all mean "corrupt".
            except Exception as exc:
                raise CorruptDocument(f"The {kind} could not be parsed: {exc}") from exc

        return guarded

    return wrap


# --- PDF -------------------------------------------------------------------------------
@_guard("PDF")
def _extract_pdf(data: bytes, limits: ExtractionLimits) -> ExtractedDocument:
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted and not reader.decrypt(""):
        raise CorruptDocument("The PDF is password-protected.")
    page_count = len(reader.pages)
    if page_count == 0:
        raise CorruptDocument("The PDF has no pages.")
    if page_count > limits.max_pages:
        raise DocumentTooLarge(f"The PDF has {page_count} pages; the limit is {limits.max_pages}.")
    headings = _pdf_page_headings(reader, page_count)
    sections = []
    for number, page in enumerate(reader.pages, start=1):
        text = normalise_text(page.extract_text() or "")
        if text:
            heading = headings.get(number)
            sections.append(
                Section(
                    text, page=number, heading=heading, heading_path=(heading,) if heading else ()
                )
            )
    title = reader.metadata.title if reader.metadata else None
    return ExtractedDocument(DocumentType.PDF, sections, title=title or None, page_count=page_count)


def _pdf_page_headings(reader: PdfReader, page_count: int) -> dict[int, str]:
    """Map each page to the title of the last outline entry starting on or before it."""
    starts: list[tuple[int, str]] = []

    def walk(items: list[object]) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
                continue
            page_index = reader.get_destination_page_number(item)  # type: ignore[arg-type]
            title = getattr(item, "title", None)
            if page_index is not None and page_index >= 0 and title:
                starts.append((page_index + 1, normalise_text(str(title))))

    try:
        walk(list(reader.outline))
    except Exception:  # a broken outline must not sink a readable document
        return {}
    starts.sort(key=lambda s: s[0])
    headings: dict[int, str] = {}
    current: str | None = None
    index = 0
    for page in range(1, page_count + 1):
        while index < len(starts) and starts[index][0] <= page:
            current = starts[index][1]
            index += 1
        if current:
            headings[page] = current
    return headings


# --- DOCX ------------------------------------------------------------------------------
_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.I)


@_guard("DOCX")
def _extract_docx(data: bytes, limits: ExtractionLimits) -> ExtractedDocument:
    document = docx.Document(io.BytesIO(data))
    builder = _SectionBuilder()
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            level = _docx_heading_level(block)
            if level is not None:
                builder.heading(level, block.text)
            else:
                builder.text(block.text)
                builder.block_break()
        elif isinstance(block, Table):
            for row_text in _docx_table_rows(block):
                builder.text(row_text)
                builder.text("\n")
            builder.block_break()
    builder.flush()
    title = document.core_properties.title or None
    return ExtractedDocument(DocumentType.DOCX, builder.sections, title=title)


def _docx_heading_level(paragraph: Paragraph) -> int | None:
    name = ((paragraph.style.name if paragraph.style else None) or "").strip()
    if name.lower() == "title":
        return 0
    match = _HEADING_STYLE.match(name)
    return int(match.group(1)) if match else None


def _docx_table_rows(table: Table) -> Iterator[str]:
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = cell.text.strip()
            # Merged cells repeat the same cell object once per grid column.
            if text and (not cells or cells[-1] != text):
                cells.append(text)
        if cells:
            yield " | ".join(cells)


# --- HTML ------------------------------------------------------------------------------
_SKIPPED_TAGS = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "svg",
        "math",
        "head",
        "iframe",
        "object",
        "canvas",
        "nav",
        "button",
        "select",
        "form",
    }
)
_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "main",
        "aside",
        "header",
        "footer",
        "li",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "table",
        "thead",
        "tbody",
        "tr",
        "pre",
        "blockquote",
        "figure",
        "figcaption",
        "caption",
        "address",
        "hr",
        "br",
        "details",
        "summary",
    }
)
_CELL_TAGS = frozenset({"td", "th"})
_HEADING_TAGS = {f"h{n}": n for n in range(1, 7)}


@_guard("HTML")
def _extract_html(data: bytes, limits: ExtractionLimits) -> ExtractedDocument:
    return html_to_document(decode_text(data))


def html_to_document(markup: str) -> ExtractedDocument:
    """Sections of an HTML page, split at h1-h6, without scripts, styles or navigation."""
    soup = BeautifulSoup(markup, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    root = soup.body or soup
    builder = _SectionBuilder()
    # An explicit stack instead of recursion: hostile pages nest deeply.
    stack: list[object] = list(reversed(list(root.children)))
    while stack:
        node = stack.pop()
        if node is _BLOCK_END:
            builder.block_break()
        elif isinstance(node, Tag):
            name = node.name.lower()
            if name in _SKIPPED_TAGS:
                continue
            if name in _HEADING_TAGS:
                builder.heading(_HEADING_TAGS[name], node.get_text(" ", strip=True))
                continue
            if name in _CELL_TAGS:
                builder.text(" | ")
            elif name in _BLOCK_TAGS:
                builder.block_break()
                stack.append(_BLOCK_END)
            stack.extend(reversed(list(node.children)))
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            builder.text(str(node))
    builder.flush()
    return ExtractedDocument(DocumentType.HTML, builder.sections, title=title or None)


_BLOCK_END = object()


# --- Markdown --------------------------------------------------------------------------
@_guard("Markdown")
def _extract_markdown(data: bytes, limits: ExtractionLimits) -> ExtractedDocument:
    tokens = MarkdownIt("commonmark").enable("table").parse(decode_text(data))
    builder = _SectionBuilder()
    title: str | None = None
    heading_level: int | None = None
    for token in tokens:
        kind = token.type
        if kind == "heading_open":
            heading_level = int(token.tag[1:])
        elif kind == "heading_close":
            heading_level = None
        elif kind == "inline":
            text = _markdown_inline_text(token.children or [])
            if heading_level is None:
                builder.text(text)
                continue
            builder.heading(heading_level, text)
            if title is None and heading_level == 1:
                title = normalise_text(text)
        elif kind in ("fence", "code_block"):
            builder.text(token.content)
            builder.block_break()
        elif kind == "html_block":
            builder.text(html_to_document(token.content).text)
            builder.block_break()
        elif kind in ("th_open", "td_open"):
            builder.text(" | ")
        elif kind == "tr_close":
            builder.text("\n")
        elif kind.endswith("_close") and kind not in ("th_close", "td_close"):
            builder.block_break()
    builder.flush()
    return ExtractedDocument(DocumentType.MARKDOWN, builder.sections, title=title)


def _markdown_inline_text(children: Sequence[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline", "image"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
    return "".join(parts)


# --- plain text ------------------------------------------------------------------------
@_guard("text file")
def _extract_text(data: bytes, limits: ExtractionLimits) -> ExtractedDocument:
    text = decode_text(data)
    # Form feeds separate pages in text exported from printers and PDF tools.
    pages = text.split("\f") if "\f" in text else [text]
    numbered = len(pages) > 1
    sections = [
        Section(normalise_text(page), page=number if numbered else None)
        for number, page in enumerate(pages, start=1)
        if normalise_text(page)
    ]
    return ExtractedDocument(
        DocumentType.TEXT, sections, page_count=len(pages) if numbered else None
    )


_EXTRACTORS: dict[DocumentType, Extractor] = {
    DocumentType.PDF: _extract_pdf,
    DocumentType.DOCX: _extract_docx,
    DocumentType.HTML: _extract_html,
    DocumentType.MARKDOWN: _extract_markdown,
    DocumentType.TEXT: _extract_text,
}


__all__ = [
    "ExtractedDocument",
    "ExtractionLimits",
    "Section",
    "extract",
    "normalise_text",
]
