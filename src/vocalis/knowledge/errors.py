"""Why a document is rejected: catalogued codes for sniffing and extraction failures.

Every error here is *permanent*: retrying the same bytes gives the same answer, so the
ingest task fails the document at once instead of retrying (`is_permanent`).
"""

from __future__ import annotations

from vocalis.core.errors import VocalisError, register

DOCUMENT_EMPTY = register(
    "document_empty",
    422,
    "Empty document",
    "The uploaded file has no bytes, or no text could be extracted from it "
    "(for example a scanned PDF without a text layer).",
)
DOCUMENT_TYPE_UNSUPPORTED = register(
    "document_type_unsupported",
    415,
    "Unsupported document type",
    "The file's content is not PDF, DOCX, HTML, Markdown or plain text; the type is "
    "detected from the bytes, never from the name.",
)
DOCUMENT_TYPE_MISMATCH = register(
    "document_type_mismatch",
    415,
    "Document content does not match its name",
    "The file is named as a PDF or DOCX but its content is something else.",
)
DOCUMENT_CORRUPT = register(
    "document_corrupt",
    422,
    "Corrupt document",
    "The parser could not read the file (truncated, malformed or password-protected).",
)
DOCUMENT_UNSAFE_ARCHIVE = register(
    "document_unsafe_archive",
    422,
    "Unsafe archive",
    "A DOCX (ZIP) file exceeds the entry-count, uncompressed-size or compression-ratio "
    "limits that guard against zip bombs.",
)
DOCUMENT_TOO_LARGE = register(
    "document_too_large",
    413,
    "Document too large to process",
    "The extracted content exceeds the page or character limits for one document.",
)


class DocumentRejected(VocalisError):
    """A document that can never be ingested as it is; retrying does not help."""

    code = DOCUMENT_CORRUPT
    permanent = True


class EmptyDocument(DocumentRejected):
    code = DOCUMENT_EMPTY


class UnsupportedDocumentType(DocumentRejected):
    code = DOCUMENT_TYPE_UNSUPPORTED


class DocumentTypeMismatch(DocumentRejected):
    code = DOCUMENT_TYPE_MISMATCH


class CorruptDocument(DocumentRejected):
    code = DOCUMENT_CORRUPT


class UnsafeArchive(DocumentRejected):
    code = DOCUMENT_UNSAFE_ARCHIVE


class DocumentTooLarge(DocumentRejected):
    code = DOCUMENT_TOO_LARGE


def is_permanent(exc: BaseException) -> bool:
    """Whether an ingestion failure should fail the document without a retry."""
    return bool(getattr(exc, "permanent", False))
