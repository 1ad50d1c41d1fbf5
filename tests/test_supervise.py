"""scripts/supervise.sh, which keeps make run's Redis up: it restarts what dies, gives up on what cannot
start, and stops (with its child) on TERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

SUPERVISE = Path(__file__).resolve().parent.parent / "scripts" / "supervise.sh"
pytestmark = pytest.mark.slow


def test_a_command_that_keeps_dying_at_once_is_given_up_on() -> None:
    done = subprocess.run([str(SUPERVISE), "false"], capture_output=True, text=True, timeout=60)  # noqa: S603
    assert done.returncode == 1
    assert done.stderr.count("starting it again") == 4 and "giving up" in done.stderr


def test_a_killed_child_is_started_again_and_term_stops_both(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    script = f"echo $$ >> {starts}; exec sleep 300"
    proc = subprocess.Popen(  # noqa: S603
        [str(SUPERVISE), "bash", "-c", script], stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:

        def children() -> list[int]:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if starts.exists() and (pids := [int(p) for p in starts.read_text().split()]):
                    return pids
                time.sleep(0.05)
            pytest.fail("the child never started")

        first = children()[-1]
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(children()) < 2:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        second = children()[-1]
        assert second != first
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(second, 0)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
