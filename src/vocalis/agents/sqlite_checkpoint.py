"""LangGraph checkpoints in SQLite with one thread hop per operation (the embedded default).

LangGraph's `AsyncSqliteSaver` goes through aiosqlite, which hops to its connection thread
and back for every cursor call: a checkpoint read is four hops, a write two to four, and
each hop waits for the event loop to give up the GIL. `ThreadedSqliteSaver` is LangGraph's
synchronous `SqliteSaver` (the same tables, serializer and versions, so databases written
by either read back in the other) whose async methods run the synchronous method whole on
one dedicated thread: one hop per operation, nothing blocking on the event loop, and the
operations of a process queued on that thread rather than in SQLite's busy handler. Its
writes take the box's SQLite writer lock (`core/sqlite_writer.py`) as the document
store's do, so the processes' writers hand the file over without the busy handler's sleeps.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, nullcontext
from functools import partial
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    SerializerProtocol,
)
from langgraph.checkpoint.sqlite import SqliteSaver

from vocalis.core.sqlite_writer import WriterLock

T = TypeVar("T")

# The same file as the app's engine: WAL, one fsync per checkpoint not per commit, and a
# busy timeout so that several server processes share it (see core/db.py).
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=30000")


class ThreadedSqliteSaver(SqliteSaver):
    """`SqliteSaver` whose async methods each run the sync method in one hop to `executor`.

    The executor must have one thread: SQLite admits one writer, and the saver's connection
    is used from that thread only (its lock stays, for any sync caller)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        *,
        writer: WriterLock | None = None,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(conn, serde=serde)
        self._executor = executor
        self._writer = writer

    @contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
        """`SqliteSaver.cursor`, holding the writer lock around a transaction."""
        with (
            self._writer if transaction and self._writer is not None else nullcontext(),
            super().cursor(transaction) as cur,
        ):
            yield cur

    async def _hop(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    async def asetup(self) -> None:
        """Create the tables (and migrate old ones) on the saver's thread."""
        await self._hop(self.setup)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint of `config` (the thread's latest without an id), with its writes."""
        return await self._hop(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints, newest first; read whole in one hop (the sync generator holds the
        saver's lock while it runs, so it cannot be resumed across hops)."""

        def read() -> list[CheckpointTuple]:
            return list(self.list(config, filter=filter, before=before, limit=limit))

        for item in await self._hop(read):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint; returns its config."""
        return await self._hop(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes on a checkpoint."""
        await self._hop(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete a thread's checkpoints and writes."""
        await self._hop(self.delete_thread, thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """LangGraph's delta-channel read, in one hop."""
        return await self._hop(self.get_delta_channel_history, config=config, channels=channels)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        for pragma in PRAGMAS:
            conn.execute(pragma)
    except BaseException:
        conn.close()
        raise
    return conn


@asynccontextmanager
async def open_sqlite_saver(path: str) -> AsyncIterator[ThreadedSqliteSaver]:
    """A saver on the SQLite file `path` (or `:memory:`), tables created; closed on exit."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vocalis-checkpoints")
    writer = None if path == ":memory:" or path.startswith("file::memory:") else WriterLock(path)
    loop = asyncio.get_running_loop()
    try:
        conn = await loop.run_in_executor(executor, _connect, path)
        try:
            saver = ThreadedSqliteSaver(conn, executor, writer=writer)
            await saver.asetup()
            yield saver
        finally:
            await loop.run_in_executor(executor, conn.close)
    finally:
        if writer is not None:
            await loop.run_in_executor(executor, writer.close)
        executor.shutdown(wait=False)
