"""The featurizer as it runs on a device: real IPC client against the local nucleus stand-in.

The component runs in-process on the committed demo video (realtime off: 100 s of video in
about a second) with the tiny test model; a test-only observer reads what it publishes.
One test starts it as a process from its recipe, as the nucleus would.
"""

from __future__ import annotations

import base64
import json
import os
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from components.common import messages
from components.common.ipc import Ipc
from components.common.messages import FeatureMessage, QueryMessage
from components.common.settings import defaults, parse_settings
from components.featurizer import camera
from components.featurizer.component import FeaturizerComponent, FeaturizerSettings
from components.featurizer.frames import crop_to_box, distinct_frames
from components.featurizer.model import Featurizer
from components.featurizer.preprocess import read_image
from devkit.nucleus import ComponentSpec, LocalNucleus
from devkit.nucleus.runner import KioskRunner
from tests.conftest import REPO, demo_image
from tests.kiosk_helpers import DISPLAY, FEATURIZER, RECIPES, recipe
from tests.support.images import big_clip, png_bomb
from tests.support.inbox import Inbox
from tests.support.waiting import wait_until

DEMO_VIDEO = REPO / "demo" / "video" / "demo.mp4"
TIMELINE = json.loads((REPO / "demo" / "video" / "timeline.json").read_text())
OBSERVER = "com.visualsearch.FeatureObserver"
FEATURIZER_STATUS = messages.status_topic("featurizer")


def feature_observer_spec() -> ComponentSpec:
    """A test-only component allowed to read feature vectors and the featurizer's status."""
    return ComponentSpec(
        OBSERVER,
        {
            "accessControl": {
                "aws.greengrass.ipc.pubsub": {
                    f"{OBSERVER}:pubsub:1": {
                        "policyDescription": "observe the featurizer",
                        "resources": [messages.FEATURES, FEATURIZER_STATUS],
                        "operations": ["aws.greengrass#SubscribeToTopic"],
                    }
                }
            }
        },
    )


@pytest.fixture(scope="module")
def model(tiny_model) -> Featurizer:
    return Featurizer(tiny_model)


@pytest.fixture
def start_kiosk(model, tmp_path):
    """start_kiosk(open_source=..., **settings) -> the running component, its inboxes and the display's IPC.
    Its upload folder is `kiosk.uploads` (put files there with `uploaded`)."""
    started = []

    def start(open_source=camera.open_source, **settings):
        nucleus = LocalNucleus(
            components=[
                ComponentSpec.from_recipe(recipe(FEATURIZER)),
                ComponentSpec.from_recipe(recipe(DISPLAY)),
                feature_observer_spec(),
            ]
        )
        nucleus.start()
        kiosk = types.SimpleNamespace(
            nucleus=nucleus,
            features=Inbox.subscribe(nucleus, OBSERVER, messages.FEATURES),
            status=Inbox.subscribe(nucleus, OBSERVER, FEATURIZER_STATUS),
            display=Ipc(nucleus.connect(DISPLAY)),
        )
        kiosk.uploads = tmp_path / "display-work" / "uploads"
        kiosk.uploads.mkdir(parents=True, exist_ok=True)
        options = {
            "camera": str(DEMO_VIDEO),
            "realtime": False,
            "status_interval_s": 0.5,
            "upload_dir": str(kiosk.uploads),
            **settings,
        }
        kiosk.component = FeaturizerComponent(
            Ipc(nucleus.connect(FEATURIZER)), FeaturizerSettings(**options), model, open_source=open_source
        )
        kiosk.component.start()
        started.append(kiosk)
        return kiosk

    yield start
    for kiosk in started:
        kiosk.component.stop()
        for closable in (kiosk.features, kiosk.status, kiosk.display, kiosk.component.ipc):
            closable.close()
        kiosk.nucleus.stop()


def ask(kiosk, **query) -> None:
    kiosk.display.publish_json(messages.QUERIES, QueryMessage(**query).to_json())


def uploaded(kiosk, source, name: str | None = None) -> str:
    """Copy `source` into the kiosk's upload folder, as the display saves an upload; its path."""
    target = kiosk.uploads / (name or Path(source).name)
    target.write_bytes(Path(source).read_bytes())
    return str(target)


def held_item(source_time: float) -> dict | None:
    return next((i for i in TIMELINE["items"] if i["hold_start_s"] <= source_time <= i["hold_end_s"]), None)


def test_held_items_of_the_demo_video_come_out_as_feature_messages(start_kiosk, model):
    kiosk = start_kiosk()
    ended = kiosk.status.next(timeout=30, where=lambda m: m["state"] == "camera_ended")
    assert ended["frames"] == TIMELINE["frames"] and ended["searches"] >= len(TIMELINE["items"]) - 2
    found = [FeatureMessage.from_json(m) for m in kiosk.features.drain()]
    assert len(found) >= 5  # only the newest search waits for the CNN: a few may be skipped
    assert len(found) == kiosk.component.counts["published"]
    for message in found:
        assert message.source == "camera" and message.model_fingerprint == model.fingerprint
        assert message.vector.shape == (model.dim,) and np.linalg.norm(message.vector) == pytest.approx(
            1, abs=1e-4
        )
        assert held_item(message.source_time), message.source_time
        assert message.track_id and message.featurize_ms > 0 and (message.part, message.parts) == (1, 1)
        thumbnail = cv2.imdecode(
            np.frombuffer(base64.b64decode(message.thumbnail), np.uint8), cv2.IMREAD_COLOR
        )
        assert max(thumbnail.shape[:2]) == 96
    items = [held_item(m.source_time)["index"] for m in found]
    assert len({m.track_id for m in found}) == len(set(items))  # one track per held item


def test_a_folder_of_photos_searches_each_photo_once(start_kiosk, tmp_path):
    for n, category in enumerate(("hat", "shoes", "dress")):
        (tmp_path / f"{n}.jpg").write_bytes(demo_image(category, 0).read_bytes())
    kiosk = start_kiosk(camera=str(tmp_path), image_s=0.6, realtime=True)
    kiosk.status.next(timeout=30, where=lambda m: m["state"] == "camera_ended")
    found = [FeatureMessage.from_json(m) for m in kiosk.features.drain()]
    assert len(found) == 3 and len({m.track_id for m in found}) == 3
    assert {m.source for m in found} == {"camera"} and {m.source_time for m in found} == {-1.0}


def test_an_uploaded_photo_is_answered_with_its_query_id(start_kiosk, model):
    kiosk = start_kiosk(realtime=True)
    photo = demo_image("hat", 2)
    ask(kiosk, query_id="photo-1", image_path=uploaded(kiosk, photo))
    answer = FeatureMessage.from_json(kiosk.features.next(where=lambda m: m["query_id"] == "photo-1"))
    assert answer.source == "upload" and (answer.part, answer.parts) == (1, 1) and answer.source_time == -1
    assert answer.vector == pytest.approx(model.featurize([read_image(photo)])[0], abs=1e-5)
    small = cv2.imencode(".jpg", cv2.resize(read_image(photo), (80, 100)))[1].tobytes()
    ask(kiosk, query_id="photo-2", image_b64=base64.b64encode(small).decode())
    assert kiosk.features.next(where=lambda m: m["query_id"] == "photo-2")["source"] == "upload"


def write_clip(path, photos_per_second, fps: int = 5) -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (160, 160))
    for photo in photos_per_second:
        frame = cv2.resize(read_image(photo), (160, 160))
        for _ in range(fps):
            writer.write(frame)
    writer.release()
    return str(path)


def test_a_clip_is_answered_in_parts_one_per_distinct_second(start_kiosk, tmp_path):
    # random-init test weights put any two photos above 0.96 cosine; the same photo stays above 0.99
    kiosk = start_kiosk(realtime=True, clip_duplicate_similarity=0.99)
    hat, shoes = demo_image("hat", 0), demo_image("shoes", 0)
    clip = write_clip(kiosk.uploads / "clip.mp4", [hat, hat, shoes, shoes, shoes, hat])
    ask(kiosk, query_id="clip-1", image_path=clip, kind="video")
    # callbacks run on a thread pool: any order
    parts = sorted(
        (kiosk.features.next(where=lambda m: m["query_id"] == "clip-1") for _ in range(3)),
        key=lambda m: m["part"],
    )
    assert [(p["part"], p["parts"]) for p in parts] == [(1, 3), (2, 3), (3, 3)]
    assert [p["source_time"] for p in parts] == [0.0, 2.0, 5.0] and {p["source"] for p in parts} == {"upload"}
    assert not [m for m in kiosk.features.drain(0.5) if m["query_id"] == "clip-1"]


def video_frame(second: float) -> np.ndarray:
    capture = cv2.VideoCapture(str(DEMO_VIDEO))
    capture.set(cv2.CAP_PROP_POS_MSEC, 1000 * second)
    ok, frame = capture.read()
    capture.release()
    assert ok, f"no frame at {second} s of {DEMO_VIDEO}"
    return cv2.resize(frame, (320, 240))


def test_a_clip_that_starts_and_ends_on_the_empty_scene_reports_only_the_frames_with_the_item(
    start_kiosk, tmp_path
):
    """Issue 13: 3 of 6 'distinct frames' of a clip were the empty counter, merged into the results."""
    kiosk = start_kiosk(realtime=True, clip_every_s=1.0, clip_duplicate_similarity=0.9999)
    empty, item, other = video_frame(0.5), video_frame(4.0), video_frame(9.0)  # demo video: empty, then items
    path = kiosk.uploads / "counter.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (320, 240))
    for frame in (empty, empty, item, other, empty, empty):
        for _ in range(5):
            writer.write(frame)
    writer.release()
    ask(kiosk, query_id="counter", image_path=str(path), kind="video", labels="category=hat")
    parts = sorted(
        (kiosk.features.next(where=lambda m: m["query_id"] == "counter") for _ in range(2)),
        key=lambda m: m["part"],
    )
    assert [(p["part"], p["parts"], p["source_time"]) for p in parts] == [(1, 2, 2.0), (2, 2, 3.0)]
    assert {p["clip_frames"] for p in parts} == {6} and {p["labels"] for p in parts} == {"category=hat"}
    assert not [m for m in kiosk.features.drain(0.5) if m["query_id"] == "counter"]


def test_clip_frames_are_all_kept_when_the_empty_scene_is_not_known():
    from components.featurizer.frames import frames_with_item

    settings = FeaturizerSettings()
    empty, item = video_frame(0.5), video_frame(4.0)
    assert frames_with_item([empty, item, item, empty], settings) == [1, 2]
    assert frames_with_item([item, empty, empty], settings) == [0, 1, 2]  # starts on an item: scene unknown
    assert frames_with_item([empty, empty, empty], settings) == [
        0,
        1,
        2,
    ]  # nothing came in: min_score decides
    hat, shoes = (cv2.resize(read_image(demo_image(c)), (320, 240)) for c in ("hat", "shoes"))
    assert frames_with_item([hat, shoes, hat], settings) == [0, 1, 2]  # cuts between photos, no empty scene


def test_a_clip_with_no_decodable_frame_is_reported_by_name(start_kiosk, tmp_path):
    kiosk = start_kiosk(realtime=True)
    (kiosk.uploads / "broken.mp4").write_bytes(b"\x00" * 2048)
    ask(kiosk, query_id="clip-bad", image_path=str(kiosk.uploads / "broken.mp4"), kind="video")
    report = kiosk.status.next(where=lambda m: m.get("query_id") == "clip-bad")
    assert "clip-bad" in report["detail"] and "broken.mp4" in report["query_error"]
    ask(kiosk, query_id="after", image_path=uploaded(kiosk, demo_image("dress", 1)))
    assert kiosk.features.next(where=lambda m: m["query_id"] == "after")["source"] == "upload"


def test_a_bomb_photo_or_an_8k_clip_is_refused_by_its_size_and_the_next_query_answered(start_kiosk, tmp_path):
    """Issue 14, item 3: the sizes are checked before decoding; the refusal names the limit."""
    kiosk = start_kiosk(realtime=True)
    (kiosk.uploads / "bomb.png").write_bytes(png_bomb(20000, 20000))
    ask(kiosk, query_id="bomb", image_path=str(kiosk.uploads / "bomb.png"))
    report = kiosk.status.next(where=lambda m: m.get("query_id") == "bomb")
    assert "20000x20000 pixels" in report["query_error"] and "limit is 50 megapixels" in report["query_error"]
    ask(kiosk, query_id="8k", image_path=str(big_clip(kiosk.uploads / "8k.mp4")), kind="video")
    report = kiosk.status.next(where=lambda m: m.get("query_id") == "8k")
    assert "7680x4320" in report["query_error"] and "megapixels" in report["query_error"]
    ask(kiosk, query_id="after", image_path=uploaded(kiosk, demo_image("dress", 1)))
    assert kiosk.features.next(where=lambda m: m["query_id"] == "after")["source"] == "upload"


def test_only_regular_files_in_the_upload_folder_are_read_and_a_fifo_never_blocks(start_kiosk, tmp_path):
    """Issue 14, item 7: a query naming a file elsewhere was read and its thumbnail returned;
    a FIFO blocked the worker for good while the status said running."""
    kiosk = start_kiosk(realtime=True)
    outside = tmp_path / "private.jpg"
    outside.write_bytes(demo_image("hat", 0).read_bytes())
    os.symlink(outside, kiosk.uploads / "link.jpg")
    os.mkfifo(kiosk.uploads / "fifo.jpg")
    for query_id, path in (
        ("outside", outside),
        ("traversal", kiosk.uploads / ".." / ".." / "private.jpg"),
        ("link", kiosk.uploads / "link.jpg"),
        ("fifo", kiosk.uploads / "fifo.jpg"),
    ):
        ask(kiosk, query_id=query_id, image_path=str(path), kind="video" if query_id == "fifo" else "image")
        report = kiosk.status.next(timeout=30, where=lambda m, q=query_id: m.get("query_id") == q)
        assert "not read" in report["query_error"], report
    ask(kiosk, query_id="fifo-photo", image_path=str(kiosk.uploads / "fifo.jpg"))
    assert "FIFO" in kiosk.status.next(where=lambda m: m.get("query_id") == "fifo-photo")["query_error"]
    ask(kiosk, query_id="after", image_path=uploaded(kiosk, demo_image("dress", 1)))
    assert kiosk.features.next(where=lambda m: m["query_id"] == "after")["source"] == "upload"
    assert not [m for m in kiosk.features.drain(0.2) if m["query_id"] != "after"]


def test_a_malformed_query_is_dropped_and_the_next_one_answered(start_kiosk):
    kiosk = start_kiosk(realtime=True)
    kiosk.display.publish_json(messages.QUERIES, {"schema": "something/else", "query_id": "x"})
    kiosk.display.publish_json(
        messages.QUERIES, {**QueryMessage(query_id="no-image", image_path="x").to_json(), "image_path": ""}
    )
    ask(kiosk, query_id="not-base64", image_b64="not base64!")
    ask(kiosk, query_id="good", image_path=uploaded(kiosk, demo_image("pants", 0)))
    assert kiosk.features.next(where=lambda m: m["source"] == "upload")["query_id"] == "good"
    assert kiosk.status.next(where=lambda m: m.get("query_id") == "not-base64")["query_error"].startswith(
        "image_b64 is not base64"
    )
    wait_until(lambda: kiosk.component.counts["bad_queries"] == 2, 10, "both bad queries counted")


def test_a_missing_camera_is_reported_and_the_component_keeps_serving(start_kiosk):
    kiosk = start_kiosk(camera="/dev/video-not-plugged-in", reconnect_initial_s=0.05, reconnect_max_s=0.2)
    lost = [kiosk.status.next(where=lambda m: m["state"] == "camera_lost") for _ in range(3)]
    assert "camera device not found" in lost[0]["detail"] and "retry" in lost[0]["detail"]
    assert lost[-1]["frames"] == 0 and lost[-1]["camera_state"] == "reconnecting"
    ask(kiosk, query_id="still-here", image_path=uploaded(kiosk, demo_image("shirt", 0)))
    assert kiosk.features.next(where=lambda m: m["query_id"] == "still-here")["source"] == "upload"


def test_a_camera_that_comes_back_resumes(start_kiosk):
    attempts = []

    def unplugged_twice(spec, **options):
        attempts.append(spec)
        if len(attempts) <= 2:
            raise camera.CameraError(f"{spec}: cannot open camera")
        return camera.open_source(spec, **options)

    kiosk = start_kiosk(open_source=unplugged_twice, reconnect_initial_s=0.05)
    assert kiosk.status.next(where=lambda m: m["state"] == "camera_lost")["camera_state"] == "reconnecting"
    assert kiosk.status.next(where=lambda m: m["state"] == "running")["detail"].endswith("open")
    assert kiosk.features.next(timeout=30)["source"] == "camera"


def test_the_featurizer_runs_as_a_process_from_its_recipe(tiny_model, tmp_path):
    overrides = {
        FEATURIZER: {
            "camera": str(DEMO_VIDEO),
            "model_dir": str(tiny_model),
            "loop_video": True,
            "status_interval_s": 1.0,
        }
    }
    with KioskRunner(
        RECIPES,
        REPO,
        tmp_path / "gg",
        only=[FEATURIZER],
        overrides=overrides,
        extra_components=[feature_observer_spec()],
    ) as runner:
        runner.wait_until_running(timeout=120)
        status, features = (
            Inbox.subscribe(runner.nucleus, OBSERVER, topic)
            for topic in (FEATURIZER_STATUS, messages.FEATURES)
        )
        assert status.next(timeout=30)["state"] in ("running", "starting")
        assert FeatureMessage.from_json(features.next(timeout=30)).source == "camera"
        status.close(), features.close()
    assert runner.processes[FEATURIZER].process.returncode == 0  # SIGTERM: a clean stop


def test_recipe_defaults_are_the_settings_defaults_and_access_is_least_privilege():
    configuration = recipe(FEATURIZER)["ComponentConfiguration"]["DefaultConfiguration"]
    assert parse_settings(FeaturizerSettings, configuration, "featurizer") == FeaturizerSettings()
    assert set(configuration) - {"accessControl"} == set(defaults(FeaturizerSettings))
    policies = configuration["accessControl"]["aws.greengrass.ipc.pubsub"].values()
    allowed = {(op, r) for p in policies for op in p["operations"] for r in p["resources"]}
    assert allowed == {
        ("aws.greengrass#PublishToTopic", messages.FEATURES),
        ("aws.greengrass#PublishToTopic", FEATURIZER_STATUS),
        ("aws.greengrass#SubscribeToTopic", messages.QUERIES),
    }


def test_near_duplicate_clip_frames_are_compared_with_the_last_kept_one():
    a, b = np.array([1.0, 0.0]), np.array([0.96, 0.28])  # cosine 0.96
    assert distinct_frames(np.stack([a, a, b, b, a]), 0.97) == [0, 2, 4]
    assert distinct_frames(np.stack([a, b]), 0.95) == [0]


def test_the_crop_keeps_a_margin_around_the_item_and_ignores_tiny_boxes():
    frame = np.zeros((200, 400, 3), np.uint8)
    assert crop_to_box(frame, (0.25, 0.25, 0.5, 0.5)).shape[:2] == (124, 248)
    assert crop_to_box(frame, (0.5, 0.5, 0.01, 0.01)).shape == frame.shape


class SlowFeaturizer:
    fingerprint, dim = "f" * 64, 4

    def featurize(self, images):
        time.sleep(0.3)
        return np.tile(np.float32([1, 0, 0, 0]), (len(images), 1))


class RecordingIpc:
    def __init__(self):
        self.published = []

    def subscribe_json(self, topic, handler):
        pass

    def publish_json(self, topic, message):
        self.published.append((topic, message))

    def publish_json_wait(self, topic, message, timeout=None):
        self.published.append((topic, message))


def test_a_slow_featurizer_never_holds_the_camera_back():
    ipc = RecordingIpc()
    component = FeaturizerComponent(
        ipc, FeaturizerSettings(camera=str(DEMO_VIDEO), realtime=False), SlowFeaturizer()
    )
    component.start()
    try:
        wait_until(lambda: component.camera_state == "ended", 20, "the whole video read")
    finally:
        component.stop()
    counts = component.counts
    assert counts["frames"] == TIMELINE["frames"] and counts["searches"] >= len(TIMELINE["items"]) - 2
    assert counts["dropped_frames"] > 0 and counts["published"] < counts["searches"]  # only the newest waited
