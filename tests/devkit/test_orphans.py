"""Components exit when their nucleus goes away (issue 14, item 13): orphans of a crashed
runner kept the display's port for 76 s. The runner runs as its own process here and is
killed with SIGKILL, as a crash would end it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kiosk_helpers import DISPLAY, REPO
from tests.support.network import free_port
from tests.support.waiting import wait_until

RUNNER = """
import json, sys, time
from pathlib import Path
from devkit.nucleus.runner import KioskRunner
runner = KioskRunner(Path("recipes"), Path("."), Path(sys.argv[1]), only=[sys.argv[2]],
                     overrides={sys.argv[2]: {"port": int(sys.argv[3])}})
runner.start()
runner.wait_until_running(timeout=120)
print(json.dumps({"pid": runner.states()[sys.argv[2]]["pid"]}), flush=True)
time.sleep(600)
"""


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped yet counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.timeout(300)
def test_a_component_exits_when_its_runner_is_killed(tmp_path):
    port = free_port()
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(tmp_path / "gg"), DISPLAY, str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    display_pid = None
    try:
        line = runner.stdout.readline()
        assert line, "the runner did not start the display"
        display_pid = json.loads(line)["pid"]
        assert not gone(display_pid) and not port_free(port)
        runner.send_signal(signal.SIGKILL)  # the nucleus crashes: no chance to stop its components
        runner.wait(timeout=30)
        wait_until(lambda: gone(display_pid), 30, "the display to exit after its nucleus went away")
        wait_until(lambda: port_free(port), 30, "the display's port to be free again")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(timeout=30)
        if display_pid is not None and not gone(display_pid):
            os.kill(display_pid, signal.SIGKILL)  # the orphan this test is about
