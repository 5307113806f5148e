"""A real Ray cluster on 127.0.0.1 for tests: a head and a worker node, each a `ray start
--block` process in its own process group, on free ports, stopped by the test itself.

`ray stop` is never used: it stops every Ray process on the machine, other people's too."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from cloud_sync.indexing.ray_engine import quiet_ray_environment
from tests.support.network import free_port
from tests.support.waiting import wait_until

RAY = str(Path(sys.executable).with_name("ray"))
START_DEADLINE_S = 120
STOP_DEADLINE_S = 30


def _node_ports() -> list[str]:
    """Ports Ray would otherwise take from fixed defaults (and collide with another cluster)."""
    return [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    with open(log, "wb") as out:
        return subprocess.Popen(
            [RAY, "start", *common, *_node_ports(), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: raylet, GCS and workers stop with it
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pass
    try:  # whatever the group still holds (workers that outlived their raylet)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_for_nodes(address: str, count: int, started: list, folder: Path) -> None:
    import ray

    ray.init(address=address, log_to_driver=False, logging_level="error")
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while sum(1 for node in ray.nodes() if node["Alive"]) < count:
            assert all(p.poll() is None for p in started), _logs(folder)
            assert time.monotonic() < deadline, f"{count} Ray nodes did not join: {_logs(folder)}"
            time.sleep(0.5)
    finally:
        ray.shutdown()


def _logs(folder: Path) -> str:
    return " | ".join(f"{log.name}: {log.read_text()[-1500:]}" for log in sorted(folder.glob("*.log")))


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def ray_cluster():
    """Yields the head's address once both nodes have joined. Ray's session folder is a short
    one under /tmp: its Unix socket paths must stay under 108 bytes."""
    quiet_ray_environment()  # this process is a Ray driver too
    port = free_port()
    address = f"127.0.0.1:{port}"
    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    started = []
    try:
        head_args = ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={folder / 'ray'}"]
        started.append(_start(head_args, folder / "head.log"))
        wait_until(lambda: _accepts(port) or started[0].poll() is not None, timeout=START_DEADLINE_S)
        assert started[0].poll() is None, _logs(folder)
        started.append(_start([f"--address={address}"], folder / "worker.log"))
        _wait_for_nodes(address, 2, started, folder)
        yield address
    finally:
        for process in reversed(started):
            _stop(process)
        shutil.rmtree(folder, ignore_errors=True)
