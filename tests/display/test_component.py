"""The display as it runs on a device: real IPC client on the nucleus stand-in, real HTTP server."""

import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from components.common import messages
from components.common.settings import defaults, describe, parse_settings
from components.display.settings import DisplaySettings
from devkit.nucleus import ComponentSpec, LocalNucleus
from tests.conftest import REPO
from tests.display.app_helpers import match_message, write_clip
from tests.display.conftest import catalog_image, catalog_item
from tests.kiosk_helpers import DISPLAY, recipe
from tests.support.waiting import wait_until


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def post_file(url: str, data: bytes, name: str, **form) -> tuple[int, dict]:
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(data), filename=name), **form})
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_a_camera_match_on_ipc_reaches_the_state_twin(kiosk):
    faiss_ids = [catalog_item(kiosk.bundle, "shirt-002")["faiss_id"]]
    kiosk.local_search.ipc.publish_json(
        messages.MATCHES, match_message(kiosk.bundle, faiss_ids, query_id="cam-1")
    )

    def shown_with_its_catalog():
        # local_search's status (which names the index) may reach the display after the match
        state = get_json(kiosk.url + "/api/state")
        current = state["current"] and state["current"]["query_id"] == "cam-1"
        return state if current and state["index_version"] is not None else None

    state = wait_until(shown_with_its_catalog, timeout=30, what="the match and its catalog on /api/state")
    assert state["mode"] == "match" and state["current"]["matches"][0]["item_id"] == "shirt-002"
    assert state["index_version"] == kiosk.bundle.version and state["items"] == 200
    assert {c["name"]: c["state"] for c in state["components"]} == {
        "featurizer": "running",
        "local_search": "running",
        "display": "running",
    }
    assert state["warnings"] == []


def test_every_match_heard_on_ipc_is_counted_in_the_metrics(kiosk):
    def camera_searches() -> float:
        with urllib.request.urlopen(kiosk.url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        return float(re.search(r'^visualsearch_searches_total\{source="camera"\} (\S+)$', text, re.M)[1])

    before = camera_searches()
    faiss_ids = [catalog_item(kiosk.bundle, "hat-001")["faiss_id"]]
    kiosk.local_search.ipc.publish_json(
        messages.MATCHES, match_message(kiosk.bundle, faiss_ids, query_id="m1")
    )
    wait_until(lambda: camera_searches() == before + 1, 20, "the match counted in /metrics")


def test_a_malformed_match_on_ipc_is_dropped_and_the_next_one_shown(kiosk):
    faiss_ids = [catalog_item(kiosk.bundle, "skirt-003")["faiss_id"]]
    bad = {
        **match_message(kiosk.bundle, faiss_ids, query_id="bad"),
        "matches": [{"rank": 1, "score": "high"}],
    }
    kiosk.local_search.ipc.publish_json(messages.MATCHES, bad)
    kiosk.local_search.ipc.publish_json(
        messages.MATCHES, match_message(kiosk.bundle, faiss_ids, query_id="cam-2")
    )
    for _ in range(100):
        state = get_json(kiosk.url + "/api/state")
        if state["current"] and state["current"]["query_id"] == "cam-2":
            break
        threading.Event().wait(0.05)
    assert state["current"]["query_id"] == "cam-2"
    assert "bad" not in [entry["query_id"] for entry in state["history"]]


def test_an_uploaded_photo_travels_the_real_path(kiosk):
    before = get_json(kiosk.url + "/api/state")["current"]
    item = catalog_item(kiosk.bundle, "skirt-005")
    code, result = post_file(kiosk.url + "/api/search", catalog_image(item).read_bytes(), "skirt.jpg")
    assert code == 200 and result["matches"][0]["item_id"] == "skirt-005"  # its own catalog photo: rank 1
    assert result["matches"][0]["score"] == pytest.approx(1.0, abs=1e-3) and result["parts"] == 1
    assert get_json(kiosk.url + "/api/state")["current"] == before  # uploads do not take over the kiosk


def test_a_clip_is_answered_in_parts_and_merged(kiosk, tmp_path):
    items = [catalog_item(kiosk.bundle, item_id) for item_id in ("shoes-007", "hat-010", "dress-015")]
    clip = write_clip(tmp_path / "clip.mp4", [catalog_image(i) for i in items], fps=5)
    code, result = post_file(kiosk.url + "/api/search", clip.read_bytes(), "clip.mp4")
    assert code == 200 and result["query"]["kind"] == "video"
    assert result["parts"] == result["parts_answered"] >= 2, result["parts"]
    assert len(result["query"]["frames"]) == result["parts"]  # a thumbnail of each distinct frame
    frames = result["query"]["frames"]
    assert [f["source_time"] for f in frames] == sorted(f["source_time"] for f in frames)
    assert all(f["thumbnail"] and f["matched"] for f in frames) and "clip_frames" in result["query"]
    # the re-encoded, resized frames are not the catalog photos, so the untrained test model
    # ranks freely: what is checked is the merge (one card per item, best score first)
    ids = [m["item_id"] for m in result["matches"]]
    scores = [m["score"] for m in result["matches"]]
    assert len(set(ids)) == len(ids) >= 10 and scores == sorted(scores, reverse=True)
    assert [m["rank"] for m in result["matches"]] == list(range(1, len(ids) + 1))


def test_recipe_lists_every_setting_and_least_privilege_topics():
    configuration = recipe(DISPLAY)["ComponentConfiguration"]["DefaultConfiguration"]
    assert parse_settings(DisplaySettings, configuration, "display") == DisplaySettings()
    assert set(configuration) - {"accessControl"} == set(defaults(DisplaySettings))
    assert all(help_text for _, _, help_text in describe(DisplaySettings))
    policies = configuration["accessControl"]["aws.greengrass.ipc.pubsub"].values()
    allowed = {op: set() for op in ("aws.greengrass#SubscribeToTopic", "aws.greengrass#PublishToTopic")}
    for policy in policies:
        for operation in policy["operations"]:
            allowed[operation] |= set(policy["resources"])
    assert allowed["aws.greengrass#SubscribeToTopic"] == {messages.MATCHES} | {
        messages.status_topic(name) for name in DisplaySettings().watched()
    }
    assert allowed["aws.greengrass#PublishToTopic"] == {messages.QUERIES, messages.status_topic("display")}


def test_the_component_process_serves_and_stops_on_sigterm(demo_bundle, tmp_path):
    with LocalNucleus(components=[ComponentSpec.from_recipe(recipe(DISPLAY))]) as nucleus:
        for key, value in (("port", 0), ("work_dir", str(tmp_path)), ("bundle_dir", str(demo_bundle.path))):
            nucleus.set_configuration(DISPLAY, key, value)
        env = {**os.environ, **nucleus.component_env(DISPLAY), "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "components.display"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
        try:
            url = None
            while url is None:
                line = lines.get(timeout=30)
                found = re.search(r"serving the kiosk page on (http://\S+)/", line)
                url = found.group(1) if found else None
            nucleus.wait_for_state(DISPLAY, "RUNNING", timeout=10)
            health = get_json(url + "/healthz")
            assert health["ok"] is True and health["index_version"] == demo_bundle.version
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
