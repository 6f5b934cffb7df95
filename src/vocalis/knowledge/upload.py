"""Reading a multipart document upload as it streams in, with the size limit applied early.

The body is parsed incrementally (python-multipart), so a file over the per-document limit
is refused as soon as its bytes pass the limit, without reading or spooling the rest; at
most `limit` bytes of one upload are ever held. The checksum is computed on the fly.
Fields: `file` (required, exactly one) and `name` (optional: the document name, defaulting
to the file name); other fields are ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from vocalis.core.errors import RequestError, UnsupportedMediaType, ValidationFailed
from vocalis.knowledge.service import DocumentFileTooLarge, Upload

FILE_FIELD = "file"
NAME_FIELD = "name"
_MAX_FIELD_BYTES = 1024  # other fields are small; a large one is not ours


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


class _Collector:
    """Parser callbacks: keeps the `file` and `name` parts, refuses oversized ones."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.files: list[_Part] = []
        self.name: str | None = None
        self.too_large = False
        self._part = _Part()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._hasher = hashlib.sha256()
        self.sha256 = ""

    def part_begin(self) -> None:
        self._part = _Part()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def header_end(self) -> None:
        self._part.headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def headers_finished(self) -> None:
        _, options = parse_options_header(self._part.headers.get(b"content-disposition", b""))
        self._part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._part.filename = filename.decode("utf-8", "replace") if filename is not None else None
        if self._part.name == FILE_FIELD:
            self._hasher = hashlib.sha256()

    def part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        chunk = data[start:end]
        if part.name == FILE_FIELD:
            if len(part.data) + len(chunk) > self.limit:
                self.too_large = True
                return
            self._hasher.update(chunk)
            part.data += chunk
        elif part.name == NAME_FIELD and len(part.data) + len(chunk) <= _MAX_FIELD_BYTES:
            part.data += chunk

    def part_end(self) -> None:
        part = self._part
        if part.name == FILE_FIELD:
            self.files.append(part)
            self.sha256 = self._hasher.hexdigest()
        elif part.name == NAME_FIELD:
            self.name = part.data.decode("utf-8", "replace").strip() or None


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a Content-Type, or 415 when it is not multipart/form-data."""
    media, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if media != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType(
            "Upload the document as multipart/form-data with the file in the field `file`."
        )
    return boundary


@dataclass(frozen=True)
class ReceivedUpload:
    """The file of an upload, and the document name asked for (if any)."""

    upload: Upload
    name: str | None


async def read_upload(
    content_type: str | None, body: AsyncIterator[bytes], *, limit: int, too_large: str
) -> ReceivedUpload:
    """Parse a multipart body; `DocumentFileTooLarge(too_large)` once the file passes `limit`."""
    collector = _Collector(limit)
    parser = MultipartParser(
        boundary_of(content_type),
        {
            "on_part_begin": collector.part_begin,
            "on_header_field": collector.header_field,
            "on_header_value": collector.header_value,
            "on_header_end": collector.header_end,
            "on_headers_finished": collector.headers_finished,
            "on_part_data": collector.part_data,
            "on_part_end": collector.part_end,
        },
    )
    try:
        async for chunk in body:
            parser.write(chunk)
            if collector.too_large:
                raise DocumentFileTooLarge(too_large)
        parser.finalize()
    except MultipartParseError as exc:
        raise RequestError(f"The multipart body is malformed: {exc}") from exc
    if len(collector.files) != 1:
        raise ValidationFailed(
            "Send exactly one file in the multipart field `file`."
            if collector.files
            else "The multipart field `file` is required."
        )
    [part] = collector.files
    upload = Upload(part.filename or "", bytes(part.data), collector.sha256)
    return ReceivedUpload(upload, collector.name)
