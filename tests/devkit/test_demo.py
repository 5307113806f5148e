"""`visual-search demo`: the whole kiosk, as separate processes over real IPC."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devkit import demo as kiosk
from tests.kiosk_helpers import DISPLAY, FEATURIZER, LOCAL_SEARCH, REPO
from tests.support.network import free_port
from tests.support.waiting import wait_until


@pytest.mark.timeout(600)  # the demo's first run builds its bundle; the run itself is bounded below
def test_headless_demo_writes_every_match_and_scores_the_held_items(tmp_path):
    out = tmp_path / "m.jsonl"
    command = [
        str(Path(sys.executable).with_name("visual-search")),
        "demo",
        "--headless",
        "--duration",
        "25",
        "--out",
        str(out),
        "--port",
        str(free_port()),
        "--work-dir",
        str(tmp_path / "work"),
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    camera = [r for r in records if r["source"] == "camera"]
    assert camera, result.stdout[-2000:]
    for record in camera:
        assert record["query_id"] and record["capture_time"] <= record["publish_time"]
        assert all(set(m) >= {"item_id", "score"} for m in record["matches"])
        assert [m["score"] for m in record["matches"]] == sorted(
            (m["score"] for m in record["matches"]), reverse=True
        )
    assert "right category at rank 1 for" in result.stdout
    assert f"{len(records)} match messages written to {out}" in result.stdout


def test_killing_one_component_does_not_stop_the_others(tmp_path):
    options = kiosk.DemoOptions(source=str(kiosk.DEMO_VIDEO), port=free_port(), work_dir=tmp_path)
    runner, recorder = kiosk.start_kiosk(options, None, print, show_logs=False)
    try:
        runner.wait_until_running(timeout=180)
        runner.kill(DISPLAY)
        before = len(recorder.records)
        # featurizer -> local_search kept working
        wait_until(lambda: len(recorder.records) > before + 1, 60, "matches while the display restarts")
        states = runner.states()
        assert states[FEATURIZER]["restarts"] == 0 and states[LOCAL_SEARCH]["restarts"] == 0
        assert states[DISPLAY]["restarts"] == 1 and states[DISPLAY]["state"] == "RUNNING"
    finally:
        runner.stop()
        recorder.close()


def test_an_upload_is_answered_across_the_processes_with_the_default_upload_dir(tmp_path):
    """The featurizer reads only its upload_dir (issue 14, item 7); its default must be the folder
    where the display saves, in the work layout the nucleus gives each component."""
    import io
    import urllib.request
    import uuid

    from tests.conftest import demo_image

    options = kiosk.DemoOptions(source=str(kiosk.DEMO_VIDEO), port=free_port(), work_dir=tmp_path)
    runner, recorder = kiosk.start_kiosk(options, None, print, show_logs=False)
    try:
        runner.wait_until_running(timeout=180)
        boundary = uuid.uuid4().hex
        body = io.BytesIO()
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n".encode()
        )
        body.write(demo_image("hat", 1).read_bytes())
        body.write(f"\r\n--{boundary}--\r\n".encode())
        request = urllib.request.Request(
            f"http://127.0.0.1:{options.port}/api/search",
            data=body.getvalue(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            result = json.load(response)
        assert result["matches"] and result["query"]["kind"] == "image"
    finally:
        runner.stop()
        recorder.close()
