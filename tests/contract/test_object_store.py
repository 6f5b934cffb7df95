"""The object-store contract: the local directory and S3 behave the same.

Every contract test runs on `LocalObjectStore` (a temp folder) and on `S3ObjectStore`
against a real S3 server (SeaweedFS, with signature checking), in a fresh bucket each.
The S3 store runs with S3's smallest part size and a small listing page, so multipart
uploads and paging happen with small test data.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.seaweedfs import S3Server
from vocalis.adapters.local_object_store import INTERNAL_DIR, LocalObjectStore
from vocalis.adapters.s3_object_store import MIN_PART_SIZE, S3ObjectStore
from vocalis.ports.object_store import ObjectInfo, ObjectNotFound, ObjectStore

BACKENDS = ["local", "s3"]
PAGE_SIZE = 10
MIB = 1 << 20
INVALID_KEYS = ["", "/abs", "../x", "a/../../x", "a//b", "a/./b", "a/", ".", "a\x00b", "a\nb"]


def _s3_store(server: S3Server, bucket: str, **options: int) -> S3ObjectStore:
    return S3ObjectStore(
        bucket,
        endpoint_url=server.endpoint_url,
        region=server.region,
        access_key=server.access_key,
        secret_key=server.secret_key,
        **options,
    )


@pytest.fixture(params=BACKENDS)
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """One adapter, built outside the event loop (the S3 fixtures block while they start)."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return _s3_store(server, bucket, part_size=MIN_PART_SIZE, page_size=PAGE_SIZE)


@pytest.fixture
async def store(adapter: ObjectStore) -> AsyncIterator[ObjectStore]:
    """The adapter under test, closed afterwards."""
    yield adapter
    await adapter.close()


@pytest.fixture
async def s3_store(s3_server: S3Server, s3_bucket: str) -> AsyncIterator[S3ObjectStore]:
    """The S3 adapter alone, for behaviour only S3 has."""
    store = _s3_store(s3_server, s3_bucket, part_size=MIN_PART_SIZE, page_size=PAGE_SIZE)
    yield store
    await store.close()


@pytest.fixture
def local_store(tmp_path: Path) -> LocalObjectStore:
    """The local adapter alone, for behaviour only a directory has."""
    return LocalObjectStore(tmp_path / "objects")


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    """`data` as an async stream of `size`-byte chunks."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def breaking_stream(good_bytes: int, chunk: int = MIB) -> AsyncIterator[bytes]:
    """A stream that delivers `good_bytes`, then fails."""
    sent = 0
    while sent < good_bytes:
        yield os.urandom(min(chunk, good_bytes - sent))
        sent += chunk
    raise ConnectionResetError("upload stream broke")


async def collect(items: AsyncIterator[Any]) -> list[Any]:
    """Everything an async iterator yields."""
    return [item async for item in items]


async def keys_under(store: ObjectStore, prefix: str = "") -> list[str]:
    """The keys `list` yields, in the order it yields them."""
    return [info.key for info in await collect(store.list(prefix))]


# --- the contract, on every adapter ----------------------------------------------------


async def test_adapter_implements_the_port(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)


async def test_ping_succeeds_on_a_reachable_store(store: ObjectStore) -> None:
    await store.ping()


async def test_get_returns_the_bytes_put(store: ObjectStore) -> None:
    data = os.urandom(1000)
    await store.put("orgs/o1/a.bin", data)
    assert await store.get("orgs/o1/a.bin") == data


async def test_put_reports_size_and_content_type(store: ObjectStore) -> None:
    info = await store.put("orgs/o1/a.txt", b"hello", content_type="text/plain")
    assert (info.key, info.size, info.content_type) == ("orgs/o1/a.txt", 5, "text/plain")


async def test_head_reports_size_content_type_and_modification_time(store: ObjectStore) -> None:
    await store.put("orgs/o1/a.json", b"{}", content_type="application/json")
    info = await store.head("orgs/o1/a.json")
    assert (info.size, info.content_type) == (2, "application/json")
    assert info.last_modified is not None
    assert abs(info.last_modified - datetime.now(UTC)) < timedelta(minutes=1)


async def test_content_type_defaults_to_octet_stream(store: ObjectStore) -> None:
    await store.put("orgs/o1/blob", b"x")
    assert (await store.head("orgs/o1/blob")).content_type == "application/octet-stream"


async def test_put_replaces_the_object_and_its_content_type(store: ObjectStore) -> None:
    await store.put("orgs/o1/a", b"first version", content_type="text/plain")
    await store.put("orgs/o1/a", b"second", content_type="text/markdown")
    assert await store.get("orgs/o1/a") == b"second"
    assert (await store.head("orgs/o1/a")).content_type == "text/markdown"


async def test_get_of_a_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await store.get("orgs/o1/missing")


async def test_head_of_a_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await store.head("orgs/o1/missing")


async def test_stream_of_a_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await collect(store.stream("orgs/o1/missing"))


async def test_a_prefix_of_stored_keys_is_not_an_object(store: ObjectStore) -> None:
    await store.put("orgs/o1/docs/a", b"x")
    assert not await store.exists("orgs/o1/docs")
    with pytest.raises(ObjectNotFound):
        await store.head("orgs/o1/docs")


async def test_exists_only_for_stored_keys(store: ObjectStore) -> None:
    await store.put("orgs/o1/a", b"x")
    assert await store.exists("orgs/o1/a")
    assert not await store.exists("orgs/o1/b")


async def test_delete_removes_the_object(store: ObjectStore) -> None:
    await store.put("orgs/o1/a", b"x")
    await store.delete("orgs/o1/a")
    assert not await store.exists("orgs/o1/a")
    assert await keys_under(store) == []


async def test_deleting_a_missing_key_is_not_an_error(store: ObjectStore) -> None:
    await store.delete("orgs/o1/never-stored")
    await store.put("orgs/o1/a", b"x")
    await store.delete("orgs/o1/a")
    await store.delete("orgs/o1/a")


async def test_list_yields_every_key_under_the_prefix_in_key_order(store: ObjectStore) -> None:
    # Letters, digits and '/' only: SeaweedFS walks folders depth-first, which differs from
    # S3's byte order for keys holding characters that sort below '/' (space, '-', '.').
    keys = ["orgs/o1/c", "orgs/o1/a/2", "orgs/o1/b", "orgs/o1/a/10", "orgs/o1/a/1"]
    for key in keys:
        await store.put(key, b"x")
    assert await keys_under(store, "orgs/o1/") == sorted(keys)


async def test_list_stops_at_the_prefix(store: ObjectStore) -> None:
    for key in ["orgs/o1/a", "orgs/o10/a", "orgs/o2/a", "orgs/o1x"]:
        await store.put(key, b"x")
    assert await keys_under(store, "orgs/o1/") == ["orgs/o1/a"]
    assert await keys_under(store, "orgs/o1") == ["orgs/o1/a", "orgs/o10/a", "orgs/o1x"]
    assert await keys_under(store, "orgs/o3/") == []


async def test_list_reports_sizes_and_leaves_content_type_to_head(store: ObjectStore) -> None:
    await store.put("orgs/o1/a", b"12345", content_type="text/plain")
    [info] = await collect(store.list("orgs/o1/"))
    assert (info.key, info.size, info.content_type) == ("orgs/o1/a", 5, "")
    assert info.last_modified is not None


async def test_list_pages_through_more_keys_than_one_page(store: ObjectStore) -> None:
    keys = [f"orgs/o1/k{i:03d}" for i in range(3 * PAGE_SIZE + 3)]
    await asyncio.gather(*(store.put(key, b"x") for key in keys))
    assert await keys_under(store, "orgs/o1/") == keys


async def test_delete_prefix_removes_everything_under_it_and_nothing_else(
    store: ObjectStore,
) -> None:
    doomed = [f"orgs/o1/docs/d{i:02d}/v1/text.txt" for i in range(2 * PAGE_SIZE + 5)]
    kept = ["orgs/o10/a", "orgs/o2/a"]
    await asyncio.gather(*(store.put(key, b"x") for key in doomed + kept))
    assert await store.delete_prefix("orgs/o1/") == len(doomed)
    assert await keys_under(store) == kept
    assert await store.delete_prefix("orgs/o1/") == 0


async def test_delete_prefix_refuses_the_empty_prefix(store: ObjectStore) -> None:
    await store.put("orgs/o1/a", b"x")
    with pytest.raises(ValueError):
        await store.delete_prefix("")
    assert await store.exists("orgs/o1/a")


async def test_put_stream_round_trips_a_large_object_byte_exact(store: ObjectStore) -> None:
    data = os.urandom(12 * MIB + 12345)
    # Odd-sized chunks, so parts are cut across chunk boundaries.
    info = await store.put_stream("orgs/o1/big.bin", chunks_of(data, MIB + 7))
    assert info.size == len(data)
    assert await store.get("orgs/o1/big.bin") == data
    assert (await store.head("orgs/o1/big.bin")).size == len(data)


async def test_put_stream_keeps_the_content_type(store: ObjectStore) -> None:
    data = os.urandom(6 * MIB)
    await store.put_stream("orgs/o1/a.wav", chunks_of(data, MIB), content_type="audio/wav")
    assert (await store.head("orgs/o1/a.wav")).content_type == "audio/wav"


async def test_put_stream_stores_a_short_stream(store: ObjectStore) -> None:
    info = await store.put_stream("orgs/o1/short", chunks_of(b"abcdefgh", 3))
    assert info.size == 8
    assert await store.get("orgs/o1/short") == b"abcdefgh"


async def test_put_stream_of_an_empty_stream_stores_an_empty_object(store: ObjectStore) -> None:
    await store.put_stream("orgs/o1/empty", chunks_of(b"", 1))
    assert await store.get("orgs/o1/empty") == b""
    assert (await store.head("orgs/o1/empty")).size == 0


async def test_a_failed_put_stream_stores_nothing(store: ObjectStore) -> None:
    with pytest.raises(ConnectionResetError):
        await store.put_stream("orgs/o1/broken", breaking_stream(MIN_PART_SIZE + MIB))
    assert not await store.exists("orgs/o1/broken")
    assert await keys_under(store) == []


async def test_a_failed_put_stream_keeps_the_previous_object(store: ObjectStore) -> None:
    await store.put("orgs/o1/a", b"previous", content_type="text/plain")
    with pytest.raises(ConnectionResetError):
        await store.put_stream("orgs/o1/a", breaking_stream(MIN_PART_SIZE + MIB))
    assert await store.get("orgs/o1/a") == b"previous"


async def test_stream_yields_chunks_of_the_requested_size(store: ObjectStore) -> None:
    data = os.urandom(200 * 1024)
    await store.put("orgs/o1/a", data)
    chunks = await collect(store.stream("orgs/o1/a", chunk_size=64 * 1024))
    assert [len(chunk) for chunk in chunks] == [65536, 65536, 65536, 8192]
    assert b"".join(chunks) == data


async def test_stream_of_an_empty_object_yields_nothing(store: ObjectStore) -> None:
    await store.put("orgs/o1/empty", b"")
    assert await collect(store.stream("orgs/o1/empty")) == []


@pytest.mark.parametrize(
    "key",
    [
        "orgs/o1/with space.txt",
        "orgs/o1/ünïcødé/名前.pdf",
        "orgs/o1/emoji 🎙️.wav",
        "orgs/o1/a+b=c&d",
    ],
)
async def test_keys_with_spaces_and_unicode_round_trip(store: ObjectStore, key: str) -> None:
    await store.put(key, key.encode(), content_type="text/plain")
    assert await store.get(key) == key.encode()
    assert await keys_under(store, "orgs/o1/") == [key]
    await store.delete(key)
    assert not await store.exists(key)


@pytest.mark.parametrize("key", INVALID_KEYS)
async def test_keys_that_are_not_portable_are_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        await store.put(key, b"x")


@pytest.mark.parametrize("prefix", ["/", "../", "orgs/../../", "orgs//"])
async def test_prefixes_that_are_not_portable_are_rejected(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ValueError):
        await keys_under(store, prefix)


# --- S3 only -----------------------------------------------------------------------------


async def test_s3_sends_a_large_stream_as_a_multipart_upload(
    s3_store: S3ObjectStore, s3_server: S3Server
) -> None:
    await s3_store.put_stream("orgs/o1/big", chunks_of(os.urandom(12 * MIB), MIB))
    head = s3_server.client().head_object(Bucket=s3_store.bucket, Key="orgs/o1/big")
    # A multipart object's ETag is "<md5 of part md5s>-<number of parts>": 5 + 5 + 2 MiB.
    assert head["ETag"].strip('"').endswith("-3")


async def test_s3_a_failed_put_stream_leaves_no_multipart_upload(
    s3_store: S3ObjectStore, s3_server: S3Server
) -> None:
    client = s3_server.client()

    async def stream_that_breaks_mid_upload() -> AsyncIterator[bytes]:
        yield os.urandom(MIN_PART_SIZE + MIB)  # the first part goes out now
        yield os.urandom(MIB)
        uploads = await asyncio.to_thread(client.list_multipart_uploads, Bucket=s3_store.bucket)
        assert len(uploads.get("Uploads", [])) == 1, "the upload should be in progress here"
        raise ConnectionResetError("upload stream broke")

    with pytest.raises(ConnectionResetError):
        await s3_store.put_stream("orgs/o1/broken", stream_that_breaks_mid_upload())
    uploads = client.list_multipart_uploads(Bucket=s3_store.bucket)
    assert uploads.get("Uploads", []) == []
    assert not await s3_store.exists("orgs/o1/broken")


async def test_s3_lists_and_deletes_more_than_a_thousand_keys_at_the_default_page_size(
    s3_server: S3Server, s3_bucket: str
) -> None:
    store = _s3_store(s3_server, s3_bucket)  # pages and delete batches of S3's maximum, 1000
    keys = [f"orgs/o1/k{i:04d}" for i in range(1005)]
    gate = asyncio.Semaphore(16)

    async def put(key: str) -> None:
        async with gate:
            await store.put(key, b"")

    await asyncio.gather(*(put(key) for key in keys))
    assert await keys_under(store, "orgs/o1/") == keys
    assert await store.delete_prefix("orgs/o1/") == len(keys)
    assert await keys_under(store) == []
    await store.close()


async def test_s3_ping_fails_for_a_missing_bucket(s3_server: S3Server) -> None:
    store = _s3_store(s3_server, "no-such-bucket-here")
    with pytest.raises(ConnectionError, match="no-such-bucket-here"):
        await store.ping()
    await store.close()


async def test_s3_ping_fails_with_a_wrong_secret(s3_server: S3Server, s3_bucket: str) -> None:
    store = S3ObjectStore(
        s3_bucket,
        endpoint_url=s3_server.endpoint_url,
        access_key=s3_server.access_key,
        secret_key="not-the-secret",
    )
    with pytest.raises(ConnectionError, match="access denied"):
        await store.ping()
    await store.close()


async def test_s3_ensure_bucket_creates_a_missing_bucket_once(s3_server: S3Server) -> None:
    bucket = f"ensure-{os.urandom(6).hex()}"
    store = _s3_store(s3_server, bucket)
    try:
        assert await store.ensure_bucket() is True
        assert await store.ensure_bucket() is False
        await store.ping()
    finally:
        await store.close()
        s3_server.client().delete_bucket(Bucket=bucket)


async def test_s3_rejects_a_part_size_below_the_s3_minimum(s3_server: S3Server) -> None:
    with pytest.raises(ValueError):
        _s3_store(s3_server, "any", part_size=MIN_PART_SIZE - 1)


# --- local directory only ----------------------------------------------------------------


async def test_local_keys_are_files_under_the_root(local_store: LocalObjectStore) -> None:
    await local_store.put("orgs/o1/kb/a.txt", b"hello")
    assert (local_store.root / "orgs" / "o1" / "kb" / "a.txt").read_bytes() == b"hello"


@pytest.mark.parametrize("key", ["../escape", "orgs/../../escape", "orgs/o1/../../../escape"])
async def test_local_store_refuses_relative_paths_that_escape_its_root(
    local_store: LocalObjectStore, key: str
) -> None:
    with pytest.raises(ValueError):
        await local_store.put(key, b"x")
    assert not (local_store.root.parent / "escape").exists()


async def test_local_store_refuses_absolute_paths(
    local_store: LocalObjectStore, tmp_path: Path
) -> None:
    outside = tmp_path / "escape"
    with pytest.raises(ValueError):
        await local_store.put(str(outside), b"x")
    with pytest.raises(ValueError):
        await local_store.get(str(outside))
    assert not outside.exists()


async def test_local_store_refuses_keys_in_its_internal_folder(
    local_store: LocalObjectStore,
) -> None:
    with pytest.raises(ValueError):
        await local_store.put(f"{INTERNAL_DIR}/meta/x", b"x")


async def test_local_failed_put_stream_leaves_no_temp_file(local_store: LocalObjectStore) -> None:
    with pytest.raises(ConnectionResetError):
        await local_store.put_stream("orgs/o1/broken", breaking_stream(3 * MIB))
    leftovers = [p for p in local_store.root.rglob("*") if p.is_file()]
    assert leftovers == []


async def test_local_delete_prunes_emptied_folders(local_store: LocalObjectStore) -> None:
    await local_store.put("orgs/o1/kb/docs/a.txt", b"x")
    await local_store.put("orgs/o1/other.txt", b"x")
    await local_store.delete_prefix("orgs/o1/kb/")
    assert not (local_store.root / "orgs" / "o1" / "kb").exists()
    assert (local_store.root / "orgs" / "o1" / "other.txt").exists()


async def test_local_object_without_a_sidecar_is_octet_stream(
    local_store: LocalObjectStore,
) -> None:
    (local_store.root / "orgs" / "o1").mkdir(parents=True)
    (local_store.root / "orgs" / "o1" / "copied-in.bin").write_bytes(b"abc")
    info: ObjectInfo = await local_store.head("orgs/o1/copied-in.bin")
    assert (info.size, info.content_type) == (3, "application/octet-stream")
