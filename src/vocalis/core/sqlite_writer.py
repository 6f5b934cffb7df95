"""One SQLite writer at a time across the box's processes, woken at once rather than polled.

SQLite admits one writer per database file. A writer that finds the file locked waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between tries, while
the holder needs well under a millisecond: with two server processes, each with a
document-store thread and a checkpointer thread writing the same file, most of a turn's
wall time went to those sleeps. `WriterLock` is an advisory `flock` on a file beside the
database, taken around each write transaction by those threads: the kernel wakes the next
writer the moment the lock is given back. Writers that do not take it (the ORM's, the
worker's, migrations) are still served by SQLite's busy timeout, as before.

Each thread needs its own `WriterLock` (an open file of its own): `flock` locks belong to
the open file, so two threads sharing one would not exclude each other.
"""

from __future__ import annotations

import os
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: SQLite's busy timeout alone
    fcntl = None  # type: ignore[assignment]

SUFFIX = "-writer.lock"


def lock_path(database_path: str) -> str:
    """The lock file of an SQLite database file (the same for every spelling of its path)."""
    return os.path.realpath(database_path) + SUFFIX


class WriterLock:
    """An exclusive `flock` on `lock_path(database_path)`, as a (blocking) context manager;
    use it from one thread only, and never on the event loop."""

    def __init__(self, database_path: str) -> None:
        self.path = lock_path(database_path)
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        if fcntl is None:
            return self
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if fcntl is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file (it stays on disk for the other processes)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
