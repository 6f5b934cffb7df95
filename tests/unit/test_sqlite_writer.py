"""The box-wide SQLite writer lock: writers exclude each other, across threads and processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from vocalis.core.sqlite_writer import WriterLock, lock_path


def test_the_lock_file_is_the_same_for_every_spelling_of_the_path(tmp_path: Path) -> None:
    db = tmp_path / "vocalis.db"
    assert lock_path(str(db)) == lock_path(str(tmp_path / "." / "vocalis.db"))
    assert lock_path(str(db)).endswith("vocalis.db-writer.lock")


def test_two_threads_writers_take_turns(tmp_path: Path) -> None:
    db = str(tmp_path / "vocalis.db")
    first, second = WriterLock(db), WriterLock(db)
    order: list[str] = []
    held = threading.Event()

    def other() -> None:
        held.wait()
        with second:
            order.append("second")

    thread = threading.Thread(target=other)
    thread.start()
    with first:
        held.set()
        time.sleep(0.2)  # the other thread is blocked meanwhile
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]
    first.close()
    second.close()


def test_another_process_waits_for_the_holder(tmp_path: Path) -> None:
    db = str(tmp_path / "vocalis.db")
    code = (
        "import sys, time\n"
        "from vocalis.core.sqlite_writer import WriterLock\n"
        "with WriterLock(sys.argv[1]):\n"
        "    print(time.time())\n"
    )
    lock = WriterLock(db)
    with lock:
        child = subprocess.Popen(
            [sys.executable, "-c", code, db], stdout=subprocess.PIPE, text=True
        )
        time.sleep(1.0)
        assert child.poll() is None  # still waiting for the lock
        released = time.time()
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    assert float(out) >= released
    lock.close()
