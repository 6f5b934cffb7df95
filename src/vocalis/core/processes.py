"""Child processes that stop with their parent: what `vocalis run` supervises.

`vocalis run` starts the API server, a worker, beat and (without `VOCALIS_REDIS_URL`) the
embedded `redis-server`. A `Supervisor` owns them:

- it handles SIGTERM and SIGINT itself (uvicorn re-raises SIGTERM, so an API server in the
  supervisor's own process would kill it before any cleanup ran);
- every child is started with `PR_SET_PDEATHSIG` (Linux), so the kernel sends it SIGTERM
  when the supervisor dies, even of SIGKILL;
- the supervisor is a child subreaper (`PR_SET_CHILD_SUBREAPER`): grandchildren orphaned
  by a child (uvicorn's worker processes) are re-parented to it, not to PID 1, and are
  killed and reaped before it exits;
- on a signal, or when any child exits on its own, it stops the children in order (the
  API first, so that requests and realtime sessions drain while the worker and Redis are
  still there; then the worker and beat; then the services), waits for each group, kills
  what is left and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import structlog

log = structlog.get_logger(__name__)

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
POLL_S = 0.2


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:  # pragma: no cover - every Linux has a libc
        return None


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel send `sig` to the child when its parent dies
    (Linux; None elsewhere). Call it in the thread that starts the child: the "parent" of
    `PR_SET_PDEATHSIG` is the thread that forked."""
    libc = _libc()
    if libc is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl: act as if after
            os.kill(os.getpid(), sig)

    return preexec


def become_subreaper() -> bool:
    """Adopt this process's orphaned descendants (Linux); whether it worked."""
    libc = _libc()
    return libc is not None and libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, from /proc; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1])


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None and stat[1] == pid and stat[0] != "Z":
            found.append(int(entry.name))
    return found


def descendants_of(pid: int) -> list[int]:
    """Every live process below `pid` in the process tree."""
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children_of(todo.pop())
        found.extend(kids)
        todo.extend(kids)
    return found


@dataclass
class Child:
    """One supervised process."""

    name: str
    process: subprocess.Popen[bytes]


@dataclass
class Supervisor:
    """Starts children that die with it and stops them in order (see the module doc)."""

    stop_timeout_s: float = 20.0
    children: list[Child] = field(default_factory=list)
    stopping: str | None = None  # the signal's name, or why it stops
    _previous: dict[int, object] = field(default_factory=dict)

    def install_signal_handlers(self) -> None:
        """SIGTERM, SIGINT and SIGHUP (a closed terminal) start an orderly stop instead of
        killing this process."""
        become_subreaper()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping is None:
            self.stopping = signal.Signals(signum).name

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        new_session: bool = False,
        env: dict[str, str] | None = None,
    ) -> Child:
        """Start a child that gets SIGTERM when this process dies.

        `new_session` keeps it out of this process group, so that a signal sent to the
        whole group (a terminal's Ctrl-C, `kill -- -PGID`) does not stop it before the
        processes that use it (the embedded Redis)."""
        process = subprocess.Popen(
            list(argv), preexec_fn=die_with_parent(), start_new_session=new_session, env=env
        )
        child = Child(name, process)
        self.children.append(child)
        log.info("process_started", process=name, pid=process.pid)
        return child

    def adopt(self, name: str, process: subprocess.Popen[bytes]) -> Child:
        """Supervise a child started elsewhere (it must die with this process too)."""
        child = Child(name, process)
        self.children.append(child)
        return child

    def wait(self) -> int:
        """Block until a signal arrives (0) or a child exits on its own (1)."""
        while self.stopping is None:
            for child in self.children:
                code = child.process.poll()
                if code is not None:
                    log.error("process_exited", process=child.name, code=code)
                    self.stopping = f"{child.name} exited"
                    return 1
            time.sleep(POLL_S)
        log.info("shutdown_started", reason=self.stopping)
        return 0

    def stop(self, order: Sequence[Sequence[str]]) -> None:
        """Stop the named children group by group (SIGTERM, wait, SIGKILL), then any
        child not named, then kill and reap every orphan this process adopted."""
        named = {name for group in order for name in group}
        groups = [list(group) for group in order]
        groups.append([c.name for c in self.children if c.name not in named])
        for group in groups:
            members = [c for c in self.children if c.name in group]
            for child in members:
                if child.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        child.process.terminate()
            deadline = time.monotonic() + self.stop_timeout_s
            for child in members:
                try:
                    child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("process_killed", process=child.name, pid=child.process.pid)
                    child.process.kill()
                    child.process.wait()
                log.info("process_stopped", process=child.name, code=child.process.returncode)
        self.kill_orphans()

    def kill_orphans(self) -> None:
        """Kill the descendants left behind (adopted as subreaper) and reap them."""
        for _ in range(50):
            left = descendants_of(os.getpid())
            if not left:
                break
            for pid in left:
                log.warning("orphan_killed", pid=pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
            self._reap()
        self._reap()

    @staticmethod
    def _reap() -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return


__all__ = [
    "Supervisor",
    "become_subreaper",
    "children_of",
    "descendants_of",
    "die_with_parent",
]
