"""Across processes, as the components run: a subscriber process, and the stand-in as a process."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import awsiot.greengrasscoreipc
import pytest
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

from tests.devkit.nucleus.conftest import COMPONENTS, FEATURES
from tests.support.waiting import wait_until

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
T = 10


def start(args: list[str], **kwargs) -> subprocess.Popen:
    """A process whose stdout lines are read by a thread, so waiting on them can time out."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, **kwargs)
    proc.lines = queue.Queue()
    threading.Thread(target=lambda: [proc.lines.put(line) for line in proc.stdout], daemon=True).start()
    return proc


def read_line(proc: subprocess.Popen, timeout: float = T) -> str:
    try:
        return proc.lines.get(timeout=timeout).strip()
    except queue.Empty:
        raise TimeoutError(f"no output from {proc.args} within {timeout}s") from None


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(T)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(T)


def test_subscriber_in_another_process_receives(nucleus, connect):
    env = {**os.environ, **nucleus.component_env("com.example.LocalSearch")}
    proc = start([sys.executable, str(HERE / "subscriber_process.py"), FEATURES], env=env)
    try:
        assert read_line(proc) == "READY"
        connect("com.example.Featurizer").publish_to_topic_async(
            topic=FEATURES, publish_message=PublishMessage(json_message=JsonMessage(message={"id": "f-9"}))
        ).result(T)
        assert json.loads(read_line(proc)) == {"topic": FEATURES, "message": {"id": "f-9"}}
        assert proc.wait(T) == 0
    finally:
        stop(proc)
    wait_until(lambda: nucleus.subscriptions() == [], what="no subscription left")


@pytest.fixture
def short_dir():
    path = tempfile.mkdtemp(prefix="ggipc-test-", dir="/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_stand_in_runs_as_its_own_process(short_dir):
    config = short_dir / "nucleus.json"
    config.write_text(json.dumps({"thingName": "proc-thing", "components": COMPONENTS}))
    socket_path, iot_log = short_dir / "ipc.sock", short_dir / "iot.jsonl"
    proc = start(
        [
            sys.executable,
            "-m",
            "devkit.nucleus",
            "--socket",
            str(socket_path),
            "--config",
            str(config),
            "--iot-log",
            str(iot_log),
        ],
        cwd=REPO,
    )
    try:
        ready = json.loads(read_line(proc))
        env = ready["env"]["com.example.LocalSearch"]
        assert (
            ready["socket"] == str(socket_path) == env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"]
        )
        assert env["SVCUID"] == "local-search-token" and env["AWS_IOT_THING_NAME"] == "proc-thing"
        client = GreengrassCoreIPCClientV2(
            client=awsiot.greengrasscoreipc.connect(
                ipc_socket=env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"], authtoken=env["SVCUID"]
            )
        )
        try:
            assert client.get_configuration_async(key_path=["topK"]).result(T).value == {"topK": 5}
            client.publish_to_iot_core_async(
                topic_name="visualsearch/proc-thing/telemetry", qos="1", payload=b"{}"
            ).result(T)
        finally:
            client.close()
        wait_until(lambda: iot_log.exists() and iot_log.read_text().strip() != "", what="the IoT Core log")
        assert json.loads(iot_log.read_text())["topic"] == "visualsearch/proc-thing/telemetry"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(T) == 0
        assert not socket_path.exists()
    finally:
        stop(proc)


def test_bad_config_file_is_reported(short_dir):
    config = short_dir / "bad.json"
    config.write_text(json.dumps({"components": {"x": {"tokn": "typo"}}}))
    result = subprocess.run(
        [sys.executable, "-m", "devkit.nucleus", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=T,
    )
    assert result.returncode == 2 and "unknown keys ['tokn']" in result.stderr
