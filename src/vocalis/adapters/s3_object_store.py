"""Object store on S3 or an S3-compatible server (MinIO, SeaweedFS, ...) via aioboto3.

One client (one connection pool) is opened on first use and kept until `close()`.
Streams of unknown length are sent as multipart uploads in `part_size` parts; a failed or
cancelled stream aborts its upload, so no parts are left behind to be billed.

Listing order is the server's: UTF-8 byte order on AWS S3 and MinIO; SeaweedFS walks
folders depth-first, so it differs only for keys with characters below `/` (space, `-`, `.`)
right where a folder name ends. The key layouts never depend on that difference.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import aioboto3
import structlog
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from vocalis.core.object_keys import validate_key, validate_prefix
from vocalis.ports.object_store import ObjectInfo, ObjectNotFound

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MIB = 1 << 20
MIN_PART_SIZE = 5 * MIB  # S3 rejects smaller parts, except the last one
MAX_PAGE_SIZE = 1000  # S3's cap for one listing page and one DeleteObjects call
_NOT_FOUND = {"NoSuchKey", "NotFound", "404"}
_NO_BUCKET = {"NoSuchBucket", "NotFound", "404"}

log = structlog.get_logger("vocalis.objects")


class S3ObjectStore:
    """`ObjectStore` over one S3 bucket."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        part_size: int = 8 * MIB,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.part_size = part_size
        self.page_size = page_size
        # Without keys the default AWS chain applies (environment, profile, instance role).
        self._session = aioboto3.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
        )
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def put(
        self, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> ObjectInfo:
        """Store `data` under `key`, replacing any previous object."""
        validate_key(key)
        client = await self._s3()
        await client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        return ObjectInfo(key, len(data), content_type)

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        """Store a stream of unknown length: one PUT if it fits a part, else a multipart upload."""
        validate_key(key)
        client = await self._s3()
        buffer = bytearray()
        upload: _MultipartUpload | None = None
        try:
            async for chunk in chunks:
                buffer += chunk
                while len(buffer) >= self.part_size:
                    if upload is None:
                        upload = await _MultipartUpload.start(
                            client, self.bucket, key, content_type
                        )
                    await upload.send(bytes(buffer[: self.part_size]))
                    del buffer[: self.part_size]
            if upload is None:  # shorter than one part: a plain PUT is one request, not three
                return await self.put(key, bytes(buffer), content_type=content_type)
            if buffer:
                await upload.send(bytes(buffer))
            await upload.complete()
        except BaseException:
            if upload is not None:
                await upload.abort()
            raise
        return ObjectInfo(key, upload.size, content_type)

    async def get(self, key: str) -> bytes:
        """The whole object; raises `ObjectNotFound`."""
        body = (await self._get_object(key))["Body"]
        async with body:  # releases the connection even if reading fails
            data: bytes = await body.read()
        return data

    async def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The object in chunks of `chunk_size` bytes (the last may be shorter)."""
        body = (await self._get_object(key))["Body"]
        buffer = bytearray()
        async with body:
            # The network hands over whatever has arrived; re-cut it to the promised size.
            while data := await body.read(chunk_size):
                buffer += data
                while len(buffer) >= chunk_size:
                    yield bytes(buffer[:chunk_size])
                    del buffer[:chunk_size]
        if buffer:
            yield bytes(buffer)

    async def head(self, key: str) -> ObjectInfo:
        """Metadata only; raises `ObjectNotFound`."""
        validate_key(key)
        client = await self._s3()
        try:
            meta = await client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                raise ObjectNotFound(key) from None
            raise
        content_type = meta.get("ContentType") or DEFAULT_CONTENT_TYPE
        return ObjectInfo(key, meta["ContentLength"], content_type, _utc(meta["LastModified"]))

    async def exists(self, key: str) -> bool:
        """Whether the key exists."""
        try:
            await self.head(key)
        except ObjectNotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        """Delete one object; deleting a missing key is not an error."""
        validate_key(key)
        client = await self._s3()
        await client.delete_object(Bucket=self.bucket, Key=key)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under a non-empty prefix; returns how many were deleted."""
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix")
        deleted = 0
        batch: builtins.list[str] = []
        async for info in self.list(prefix):
            batch.append(info.key)
            if len(batch) == self.page_size:
                deleted += await self._delete_batch(batch)
                batch = []
        if batch:
            deleted += await self._delete_batch(batch)
        return deleted

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order (no content type)."""
        validate_prefix(prefix)
        client = await self._s3()
        paginator = client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.page_size}
        )
        async for page in pages:
            for item in page.get("Contents", ()):
                yield ObjectInfo(item["Key"], item["Size"], "", _utc(item["LastModified"]))

    async def ping(self) -> None:
        """Raise if the bucket cannot be reached with these credentials."""
        client = await self._s3()
        try:
            await client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            # HEAD answers carry no message; say which bucket and what the status means.
            raise ConnectionError(f"S3 bucket {self.bucket!r}: {_describe(exc)}") from exc

    async def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; whether it was created."""
        client = await self._s3()
        try:
            await client.head_bucket(Bucket=self.bucket)
            return False
        except ClientError as exc:
            if _error_code(exc) not in _NO_BUCKET:
                raise
        options: dict[str, Any] = {}
        if self.region != "us-east-1":  # us-east-1 rejects an explicit location constraint
            options["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await client.create_bucket(Bucket=self.bucket, **options)
        except ClientError as exc:
            if _error_code(exc) != "BucketAlreadyOwnedByYou":  # lost a race with ourselves
                raise
            return False
        return True

    async def close(self) -> None:
        """Close the client and its connection pool."""
        async with self._lock:
            if self._stack is not None:
                await self._stack.aclose()
            self._stack, self._client = None, None

    async def _s3(self) -> Any:
        """The shared client, opened on first use."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(
                    self._session.client(
                        "s3", endpoint_url=self.endpoint_url, config=self._config()
                    )
                )
                self._stack = stack
        return self._client

    def _config(self) -> AioConfig:
        return AioConfig(
            # Custom endpoints (MinIO, SeaweedFS) rarely have wildcard DNS for bucket hosts.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=60,
            # botocore >= 1.36 adds CRC checksums to every upload by default, which several
            # S3-compatible servers reject; only send them where the API requires them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )

    async def _get_object(self, key: str) -> Any:
        validate_key(key)
        client = await self._s3()
        try:
            return await client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                raise ObjectNotFound(key) from None
            raise

    async def _delete_batch(self, keys: builtins.list[str]) -> int:
        client = await self._s3()
        response = await client.delete_objects(
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
        )
        if errors := response.get("Errors"):
            first = errors[0]
            raise RuntimeError(
                f"S3 could not delete {len(errors)} of {len(keys)} objects, e.g. "
                f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message')}"
            )
        return len(keys)


class _MultipartUpload:
    """One multipart upload in progress: its id and the parts sent so far."""

    def __init__(self, client: Any, bucket: str, key: str, upload_id: str) -> None:
        self._client, self._bucket, self._key, self._id = client, bucket, key, upload_id
        self._parts: list[dict[str, Any]] = []
        self.size = 0

    @classmethod
    async def start(cls, client: Any, bucket: str, key: str, content_type: str) -> _MultipartUpload:
        """Open an upload; the content type is fixed here, not at completion."""
        created = await client.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType=content_type
        )
        return cls(client, bucket, key, created["UploadId"])

    async def send(self, data: bytes) -> None:
        """Upload the next part."""
        number = len(self._parts) + 1
        sent = await self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._id, PartNumber=number, Body=data
        )
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})
        self.size += len(data)

    async def complete(self) -> None:
        """Assemble the parts into the object."""
        await self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._id,
            MultipartUpload={"Parts": self._parts},
        )

    async def abort(self) -> None:
        """Discard the parts; failure is logged, never raised over the original error."""
        try:
            await self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._id
            )
        except Exception as exc:  # the caller is already handling the real failure
            log.warning(
                "s3.multipart_abort_failed",
                bucket=self._bucket,
                key=self._key,
                upload_id=self._id,
                error=str(exc),
            )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe(exc: ClientError) -> str:
    code = _error_code(exc)
    meaning = {"404": "not found", "403": "access denied", "400": "bad request"}
    return meaning.get(code, f"{code} {exc.response.get('Error', {}).get('Message', '')}".strip())


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
