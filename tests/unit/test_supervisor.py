"""The supervisor of `vocalis run` (core/processes.py), on small stand-in children.

It runs in a subprocess of its own: a supervisor becomes a child subreaper and reaps every
child, which must never happen to the pytest process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from vocalis.core.processes import descendants_of

# A child that notes when it got SIGTERM, then exits (or ignores it: "stubborn"), and may
# leave an orphan behind (a grandchild re-parented to the supervisor when it exits).
CHILD = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    name, log, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    def stop(*_):
        with open(log, "a") as f:
            f.write(f"{name} {time.monotonic()}\\n")
        if mode != "stubborn":
            sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    if mode == "orphaning":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                         start_new_session=True)
    while True:
        time.sleep(0.05)
    """
)

SUPERVISOR = textwrap.dedent(
    """
    import json, sys, time
    from vocalis.core.processes import Supervisor, descendants_of
    child, log, out = sys.argv[1], sys.argv[2], sys.argv[3]
    supervisor = Supervisor(stop_timeout_s=1.0)
    supervisor.install_signal_handlers()
    for name, mode in (("api", "orphaning"), ("worker", "plain"), ("beat", "stubborn"),
                       ("redis", "plain")):
        supervisor.start(name, [sys.executable, child, name, log, mode])
    time.sleep(1.0)
    with open(out, "w") as f:
        json.dump(descendants_of(__import__("os").getpid()), f)
    code = supervisor.wait()
    supervisor.stop(order=[["api"], ["worker", "beat"], ["redis"]])
    sys.exit(code)
    """
)


def test_children_stop_in_order_stubborn_ones_are_killed_and_orphans_reaped(
    tmp_path: Path,
) -> None:
    child, supervisor = tmp_path / "child.py", tmp_path / "supervisor.py"
    child.write_text(CHILD)
    supervisor.write_text(SUPERVISOR)
    log, out = tmp_path / "stops.log", tmp_path / "started.json"
    proc = subprocess.Popen(
        [sys.executable, str(supervisor), str(child), str(log), str(out)],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not out.exists() or not out.read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        started = json.loads(out.read_text())
        assert len(started) >= 5  # four children and the api's orphan-to-be
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stops = [line.split() for line in log.read_text().splitlines()]
    order = [name for name, _ in sorted(stops, key=lambda s: float(s[1]))]
    assert order[0] == "api" and order[-1] == "redis"
    assert set(order[1:3]) == {"worker", "beat"}
    left = [pid for pid in started if Path(f"/proc/{pid}").exists()]
    states = {pid: Path(f"/proc/{pid}/stat").read_text().split()[2] for pid in left}
    assert all(state == "Z" for state in states.values()), states  # the stubborn beat too
    assert descendants_of(proc.pid) == []


def test_a_child_that_dies_stops_the_others(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from vocalis.core.processes import Supervisor
        supervisor = Supervisor(stop_timeout_s=5.0)
        supervisor.install_signal_handlers()
        supervisor.start("api", [sys.executable, "-c", "import sys; sys.exit(3)"])
        supervisor.start("worker", [sys.executable, "-c", "import time; time.sleep(300)"])
        code = supervisor.wait()
        supervisor.stop(order=[["api"], ["worker"]])
        print(code, [c.process.returncode for c in supervisor.children])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip().splitlines()[-1] == f"1 [3, {-signal.SIGTERM}]", done.stderr
