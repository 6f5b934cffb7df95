"""Object store in a local directory: the embedded default, same key layout as S3.

An object `a/b.txt` is the file `<root>/a/b.txt`, so the tree can be browsed and backed
up as is. Its content type lives in a JSON sidecar under `<root>/.vocalis/meta/`, and
writes go to `<root>/.vocalis/tmp/` first and are moved into place with `os.replace`, so
readers see the old object or the new one, never half of one. All file I/O runs in worker
threads. Unlike S3, a key cannot be both an object and a folder (`a` and `a/b`).
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from vocalis.core.object_keys import validate_key, validate_prefix
from vocalis.ports.object_store import ObjectInfo, ObjectNotFound

DEFAULT_CONTENT_TYPE = "application/octet-stream"
INTERNAL_DIR = ".vocalis"  # sidecars and temp files; never a key
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
_CONFLICT = (FileExistsError, NotADirectoryError, IsADirectoryError)


class LocalObjectStore:
    """`ObjectStore` over a directory."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._meta_root = self.root / INTERNAL_DIR / "meta"
        self._tmp_root = self.root / INTERNAL_DIR / "tmp"

    async def put(
        self, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> ObjectInfo:
        """Store `data` under `key`, replacing any previous object."""
        self._check(key)
        return await asyncio.to_thread(self._put_bytes, key, data, content_type)

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        """Store a stream of unknown length; nothing is stored if the stream fails."""
        self._check(key)
        temp, handle = await asyncio.to_thread(self._open_temp)
        try:
            async for chunk in chunks:
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(_sync_close, handle)
            return await asyncio.to_thread(self._commit, key, temp, content_type)
        except BaseException:
            # Runs on cancellation too, so it stays synchronous: a close and an unlink.
            handle.close()
            temp.unlink(missing_ok=True)
            raise

    async def get(self, key: str) -> bytes:
        """The whole object; raises `ObjectNotFound`."""
        self._check(key)
        try:
            return await asyncio.to_thread(self._data_path(key).read_bytes)
        except _MISSING:
            raise ObjectNotFound(key) from None

    async def stream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The object in chunks of `chunk_size` bytes; raises `ObjectNotFound`."""
        self._check(key)
        try:
            handle = await asyncio.to_thread(self._data_path(key).open, "rb")
        except _MISSING:
            raise ObjectNotFound(key) from None
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def head(self, key: str) -> ObjectInfo:
        """Metadata only; raises `ObjectNotFound`."""
        self._check(key)
        return await asyncio.to_thread(self._head, key)

    async def exists(self, key: str) -> bool:
        """Whether the key exists."""
        self._check(key)
        return await asyncio.to_thread(self._data_path(key).is_file)

    async def delete(self, key: str) -> None:
        """Delete one object; deleting a missing key is not an error."""
        self._check(key)
        await asyncio.to_thread(self._delete, key)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under a non-empty prefix; returns how many were deleted."""
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix")
        self._check_prefix(prefix)
        return await asyncio.to_thread(self._delete_prefix, prefix)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order (no content type)."""
        self._check_prefix(prefix)
        for info in await asyncio.to_thread(self._list, prefix):
            yield info

    async def ping(self) -> None:
        """Raise if the root directory cannot be created or written."""
        await asyncio.to_thread(self._ping)

    async def close(self) -> None:
        """Nothing to release."""

    # --- paths -------------------------------------------------------------------------
    def _check(self, key: str) -> None:
        validate_key(key)
        if key.split("/", 1)[0] == INTERNAL_DIR:
            raise ValueError(f"object key must not start with {INTERNAL_DIR!r}: {key!r}")

    def _check_prefix(self, prefix: str) -> None:
        validate_prefix(prefix)
        if prefix.split("/", 1)[0] == INTERNAL_DIR and "/" in prefix:
            raise ValueError(f"prefix must not start with {INTERNAL_DIR!r}/: {prefix!r}")

    def _data_path(self, key: str) -> Path:
        # validate_key has ruled out '', '.', '..' and absolute keys, so this stays in root.
        return self.root.joinpath(*key.split("/"))

    def _meta_path(self, key: str) -> Path:
        return self._meta_root / f"{key}.json"

    # --- blocking work (always called in a worker thread) ----------------------------
    def _open_temp(self) -> tuple[Path, BinaryIO]:
        self._tmp_root.mkdir(parents=True, exist_ok=True)
        temp = self._tmp_root / uuid.uuid4().hex
        return temp, temp.open("wb")

    def _put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        temp, handle = self._open_temp()
        try:
            handle.write(data)
            _sync_close(handle)
            return self._commit(key, temp, content_type)
        except BaseException:
            handle.close()
            temp.unlink(missing_ok=True)
            raise

    def _commit(self, key: str, temp: Path, content_type: str) -> ObjectInfo:
        """Move a complete temp file into place, sidecar first so a new key never lacks one."""
        data_path, meta_path = self._data_path(key), self._meta_path(key)
        if data_path.is_dir():
            raise ValueError(f"key {key!r} collides with a folder of other objects")
        for attempt in range(3):
            try:
                data_path.parent.mkdir(parents=True, exist_ok=True)
                meta_path.parent.mkdir(parents=True, exist_ok=True)
                self._write_meta(meta_path, content_type)
                os.replace(temp, data_path)
                break
            except FileNotFoundError:
                # A concurrent delete pruned an emptied parent folder: make it again.
                if attempt == 2:
                    raise
            except _CONFLICT as exc:
                raise ValueError(f"key {key!r} collides with another object") from exc
        return self._info(key, data_path, content_type)

    def _write_meta(self, meta_path: Path, content_type: str) -> None:
        temp = self._tmp_root / f"{uuid.uuid4().hex}.json"
        temp.write_text(json.dumps({"content_type": content_type}))
        os.replace(temp, meta_path)

    def _read_content_type(self, key: str) -> str:
        try:
            meta = json.loads(self._meta_path(key).read_text())
        except (*_MISSING, ValueError):
            return DEFAULT_CONTENT_TYPE  # a sidecar lost in a crash must not hide the object
        return str(meta.get("content_type") or DEFAULT_CONTENT_TYPE)

    def _head(self, key: str) -> ObjectInfo:
        path = self._data_path(key)
        if not path.is_file():
            raise ObjectNotFound(key)
        return self._info(key, path, self._read_content_type(key))

    def _info(self, key: str, path: Path, content_type: str) -> ObjectInfo:
        try:
            stat = path.stat()
        except _MISSING:
            raise ObjectNotFound(key) from None
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        return ObjectInfo(key, stat.st_size, content_type, modified)

    def _delete(self, key: str) -> bool:
        """Remove one object and its sidecar; whether it existed."""
        data_path = self._data_path(key)
        try:
            data_path.unlink()
        except (*_MISSING, PermissionError):
            # unlink on a folder raises EISDIR on Linux and EPERM on macOS: not an object.
            if data_path.is_file():
                raise
            return False
        meta_path = self._meta_path(key)
        meta_path.unlink(missing_ok=True)
        self._prune(data_path.parent, self.root)
        self._prune(meta_path.parent, self._meta_root)
        return True

    def _prune(self, folder: Path, stop: Path) -> None:
        """Remove emptied folders up to (not including) `stop`."""
        while folder != stop and stop in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): the folders above are in use too
                return
            folder = folder.parent

    def _delete_prefix(self, prefix: str) -> int:
        return sum(self._delete(info.key) for info in self._list(prefix))

    def _list(self, prefix: str) -> builtins.list[ObjectInfo]:
        folder, _, _ = prefix.rpartition("/")
        start = self._data_path(folder) if folder else self.root
        keys = sorted(key for key in self._walk(start) if key.startswith(prefix))
        found: builtins.list[ObjectInfo] = []
        for key in keys:
            with suppress(ObjectNotFound):  # deleted while we listed
                found.append(self._info(key, self._data_path(key), ""))
        return found

    def _walk(self, start: Path) -> Iterator[str]:
        for folder, subfolders, files in os.walk(start):
            here = Path(folder)
            if here == self.root and INTERNAL_DIR in subfolders:
                subfolders.remove(INTERNAL_DIR)
            for file in files:
                yield (here / file).relative_to(self.root).as_posix()

    def _ping(self) -> None:
        self._tmp_root.mkdir(parents=True, exist_ok=True)
        probe = self._tmp_root / f"ping-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()


def _sync_close(handle: BinaryIO) -> None:
    """Flush to disk before the rename, so a crash cannot leave an empty object behind."""
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
