"""The SQLite checkpointer with one thread hop per operation, on real database files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import aiosqlite
from langgraph.checkpoint.base import Checkpoint, create_checkpoint, empty_checkpoint
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from vocalis.agents.graph import (
    build_agent_graph,
    conversation_messages,
    open_checkpointer,
    run_turn,
)
from vocalis.agents.sqlite_checkpoint import ThreadedSqliteSaver, open_sqlite_saver

from .conftest import ScriptedChatModel, make_context, say


def _config(thread: str, checkpoint_id: str | None = None) -> Any:
    configurable: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _checkpoint(previous: Checkpoint | None, step: int, messages: list[str]) -> Checkpoint:
    checkpoint = create_checkpoint(previous or empty_checkpoint(), None, step)
    checkpoint["channel_values"] = {"messages": messages}
    checkpoint["channel_versions"] = {"messages": f"{step + 1:032}.0"}
    return checkpoint


async def test_put_get_list_writes_and_delete_round_trip(tmp_path: Path) -> None:
    async with open_sqlite_saver(str(tmp_path / "vocalis.db")) as saver:
        assert isinstance(saver, ThreadedSqliteSaver)
        assert await saver.aget_tuple(_config("t1")) is None
        first = _checkpoint(None, 0, ["hello"])
        stored = await saver.aput(_config("t1"), first, {"source": "input", "step": 0}, {})
        assert stored["configurable"]["checkpoint_id"] == first["id"]
        second = _checkpoint(first, 1, ["hello", "hi there"])
        latest = await saver.aput(stored, second, {"source": "loop", "step": 1}, {})
        await saver.aput_writes(latest, [("messages", ["pending"]), ("turn", 3)], "task-1", "~a")
        await saver.aput(_config("t2"), _checkpoint(None, 0, ["other"]), {"step": 0}, {})

        got = await saver.aget_tuple(_config("t1"))
        assert got is not None
        assert got.checkpoint["id"] == second["id"]
        assert got.checkpoint["channel_values"] == {"messages": ["hello", "hi there"]}
        assert got.metadata == {"source": "loop", "step": 1}
        assert got.parent_config == _config("t1", first["id"])
        assert got.pending_writes == [
            ("task-1", "messages", ["pending"]),
            ("task-1", "turn", 3),
        ]
        older = await saver.aget_tuple(_config("t1", first["id"]))
        assert older is not None and older.checkpoint["channel_values"]["messages"] == ["hello"]

        listed = [t.checkpoint["id"] async for t in saver.alist(_config("t1"))]
        assert listed == [second["id"], first["id"]]
        assert [t.checkpoint["id"] async for t in saver.alist(_config("t1"), limit=1)] == [
            second["id"]
        ]
        before = [t.metadata async for t in saver.alist(None, before=_config("t1", second["id"]))]
        assert {"source": "input", "step": 0} in before
        assert [t.metadata async for t in saver.alist(None, filter={"source": "loop"})] == [
            {"source": "loop", "step": 1}
        ]

        await saver.adelete_thread("t1")
        assert await saver.aget_tuple(_config("t1")) is None
        assert [t async for t in saver.alist(_config("t1"))] == []
        assert await saver.aget_tuple(_config("t2")) is not None


async def test_each_operation_runs_on_the_saver_thread_not_the_event_loop(
    tmp_path: Path,
) -> None:
    threads: list[str] = []

    class Recording(ThreadedSqliteSaver):
        def get_tuple(self, config: Any) -> Any:
            threads.append(threading.current_thread().name)
            return super().get_tuple(config)

    async with open_sqlite_saver(str(tmp_path / "vocalis.db")) as saver:
        recording = Recording(saver.conn, saver._executor)
        await recording.aget_tuple(_config("t1"))
    assert threads and threads[0].startswith("vocalis-checkpoints")
    assert threads[0] != threading.current_thread().name


async def test_concurrent_turns_all_land(tmp_path: Path) -> None:
    async with open_sqlite_saver(str(tmp_path / "vocalis.db")) as saver:

        async def turns(thread: str) -> None:
            previous = None
            config = _config(thread)
            for step in range(5):
                checkpoint = _checkpoint(previous, step, [f"{thread}-{step}"])
                config = await saver.aput(config, checkpoint, {"step": step}, {})
                previous = checkpoint

        await asyncio.gather(*(turns(f"t{i}") for i in range(8)))
        for i in range(8):
            got = await saver.aget_tuple(_config(f"t{i}"))
            assert got is not None and got.checkpoint["channel_values"]["messages"] == [f"t{i}-4"]
            assert len([t async for t in saver.alist(_config(f"t{i}"))]) == 5


async def test_reads_and_writes_the_databases_of_langgraphs_async_saver(tmp_path: Path) -> None:
    """Databases written before (AsyncSqliteSaver over aiosqlite) keep working, both ways."""
    path = str(tmp_path / "vocalis.db")
    first = _checkpoint(None, 0, ["from the old saver"])
    async with aiosqlite.connect(path) as conn:
        old = AsyncSqliteSaver(conn)
        await old.setup()
        stored = await old.aput(_config("t1"), first, {"step": 0}, {})
        await old.aput_writes(stored, [("messages", ["old write"])], "task-old")

    second = _checkpoint(first, 1, ["from the new saver"])
    async with open_sqlite_saver(path) as saver:
        got = await saver.aget_tuple(_config("t1"))
        assert got is not None
        assert got.checkpoint["channel_values"] == {"messages": ["from the old saver"]}
        assert got.pending_writes == [("task-old", "messages", ["old write"])]
        await saver.aput(got.config, second, {"step": 1}, {})

    async with aiosqlite.connect(path) as conn:
        back = await AsyncSqliteSaver(conn).aget_tuple(_config("t1"))
    assert back is not None
    assert back.checkpoint["channel_values"] == {"messages": ["from the new saver"]}
    assert back.parent_config == _config("t1", first["id"])


async def test_opens_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "vocalis.db"
    async with open_sqlite_saver(str(path)) as saver:
        busy = saver.conn.execute("PRAGMA busy_timeout").fetchone()
    assert busy == (30000,)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_conversation_resumes_from_an_aiosqlite_database(tmp_path: Path) -> None:
    """A conversation checkpointed by the previous saver goes on after an upgrade."""
    path = tmp_path / "vocalis.db"
    first = ScriptedChatModel([say("Your order is 42.")])
    async with aiosqlite.connect(path) as conn:
        old = AsyncSqliteSaver(conn)
        await old.setup()
        await run_turn(build_agent_graph(old), make_context(first), "My order number?")

    second = ScriptedChatModel([say("It ships tomorrow.")])
    async with open_checkpointer(f"sqlite+aiosqlite:///{path}") as saver:
        assert isinstance(saver, ThreadedSqliteSaver)
        graph = build_agent_graph(saver)
        await run_turn(graph, make_context(second), "When does it ship?")
        stored = await conversation_messages(graph, "cnv_test")
    assert [m.content for m in second.requests[0].messages[1:]] == [
        "My order number?",
        "Your order is 42.",
        "When does it ship?",
    ]
    assert [m["content"] for m in stored][-1] == "It ships tomorrow."
